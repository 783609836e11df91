"""The team's Celery app. The migration added the coordinator (2 lines) and changed the route (1 line)."""

from celery import Celery

from coordinator import JobQueueCoordinator

app = Celery("shop")
app.config_from_object("adopt_celery.celeryconfig")
app.autodiscover_tasks(["adopt_celery"])

coord = JobQueueCoordinator.from_env(app=app)
app.conf.task_routes = {"adopt_celery.tasks.*": {"queue": coord.celery_queue("emails")}}
