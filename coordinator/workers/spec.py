"""What a managed worker subprocess needs to rebuild its coordinator: passed as JSON in the
environment (never on the command line, where `ps` would show the Redis password)."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from pydantic import BaseModel

from coordinator.errors import InvalidArgumentError
from coordinator.models import WorkerOptions
from coordinator.settings import Settings

SPEC_ENV = "JQC_WORKER_SPEC"


class WorkerSpec(BaseModel):
    settings: Settings
    queue: str
    worker_id: str
    node_name: str
    options: WorkerOptions
    processor: str | None = None
    """Import path ``module:qualname`` of the queue's processor."""
    app: str | None = None
    """Import path of an adopted Celery app, whose own tasks the worker must know."""
    owner_pid: int | None = None
    """pid of the managing process; the worker stops when it is gone (None: detached)."""


def import_path(obj: Any, what: str) -> str:
    """``module:qualname`` of a module-level object, so a subprocess can import it."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec else None
    if not module or not qualname or "<locals>" in qualname:
        raise InvalidArgumentError(
            f"{what}: {obj!r} must be defined at module level in an importable module "
            "(not in __main__ of a script, not inside a function), so a worker process can import it"
        )
    return f"{module}:{qualname}"


def find_import_path(obj: Any, what: str) -> str:
    """Import path of an object that is a module attribute (such as a Celery app instance)."""
    for name, module in list(sys.modules.items()):
        for attr, value in list(getattr(module, "__dict__", {}).items()):
            if value is obj and name != "__main__":
                return f"{name}:{attr}"
    raise InvalidArgumentError(f"{what}: {obj!r} is not an attribute of an importable module")


def load(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target
