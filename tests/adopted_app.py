"""A team's existing Celery app with its own tasks, adopted by a coordinator in the tests."""

from celery import Celery

from tests.support.env import REDIS_URL

app = Celery("legacy", broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)
app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")


@app.task(name="legacy.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="legacy.explode")
def explode() -> None:
    raise ValueError("legacy failure")
