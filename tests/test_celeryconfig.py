"""`celeryconfig.py`: the coordinator's Celery settings load from it; safe overrides are honoured
(by the managing process and its workers), settings that would lose jobs are refused by name."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator import ConfigurationError, JobQueueCoordinator
from tests import processors
from tests.conftest import REDIS_URL


@pytest.fixture
def config_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[callable]:
    """Write a config module under a fresh name on sys.path (workers inherit the path)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names = []

    def write(text: str) -> str:
        name = f"cfg_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(text)
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


def test_the_top_level_celeryconfig_is_loaded_by_default(prefix: str) -> None:
    import celeryconfig

    with JobQueueCoordinator(REDIS_URL, prefix=prefix) as coord:
        assert coord.settings.celery_config is None
        assert coord.app._config_source is celeryconfig  # config_from_object, Celery's habit
        assert coord.app.conf.task_acks_late is True and coord.app.conf.accept_content == ["json"]


def test_safe_overrides_are_honoured_by_the_app_and_its_workers(config_module, prefix: str) -> None:
    name = config_module("worker_prefetch_multiplier = 3\nresult_expires = 600\n"
                         "broker_transport_options = {'health_check_interval': 7}\n")
    with JobQueueCoordinator(REDIS_URL, prefix=prefix, celery_config=name) as coord:
        conf = coord.app.conf
        assert conf.worker_prefetch_multiplier == 3 and conf.result_expires == 600
        assert conf.broker_transport_options["health_check_interval"] == 7
        assert conf.broker_transport_options["queue_order_strategy"] == "priority"  # ours kept
        assert conf.task_serializer == "json"  # not overridden: the coordinator's default
        coord.create_queue("cfg")
        worker = coord.register_worker("cfg", processors.echo, pool="solo")
        replies = coord.app.control.inspect(destination=[worker.node_name], timeout=5).conf() or {}
        assert replies[worker.node_name]["worker_prefetch_multiplier"] == 3


@pytest.mark.parametrize(("text", "setting"), [
    ("task_serializer = 'pickle'\n", "task_serializer"),
    ("accept_content = ['json', 'pickle']\n", "accept_content"),
    ("task_acks_late = False\n", "task_acks_late"),
    ("task_reject_on_worker_lost = False\n", "task_reject_on_worker_lost"),
    ("broker_url = 'redis://elsewhere:6379/0'\n", "broker_url"),
    ("task_always_eager = True\n", "task_always_eager"),
    ("broker_transport_options = {'visibility_timeout': 10}\n", "visibility_timeout"),
])
def test_unsafe_overrides_are_refused_naming_the_setting(config_module, prefix: str, text: str,
                                                           setting: str) -> None:
    name = config_module(text)
    with pytest.raises(ConfigurationError, match=setting):
        JobQueueCoordinator(REDIS_URL, prefix=prefix, celery_config=name)


def test_a_named_module_that_does_not_exist_is_an_error(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="celery_config"):
        JobQueueCoordinator(REDIS_URL, prefix=prefix, celery_config="no_such_config_module")
