"""The import graph: nothing below the facade reaches back up to it, and the parts that run in a
worker do not pull in the health check or each other's internals."""

from __future__ import annotations

import grimp
import pytest

#: Shells over the facade: they take a `JobQueueCoordinator` and may import it.
ABOVE_FACADE = {
    "coordinator", "coordinator.facade", "coordinator.cli", "coordinator.exporter", "coordinator.flower",
    "coordinator.beat", "coordinator.runtime.worker_main", "coordinator.__main__",
}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("coordinator", include_external_packages=False)


def test_nothing_below_the_facade_imports_it(graph: grimp.ImportGraph) -> None:
    below = graph.find_upstream_modules("coordinator.facade")
    assert "coordinator.registry.registry" in below and "coordinator.workers.manager" in below  # the check sees them
    offenders = {
        (module, target) for module in below for target in ("coordinator.facade", "coordinator")
        if graph.direct_import_exists(importer=module, imported=target)
    }
    assert offenders == set(), "modules below the facade import it (even under TYPE_CHECKING)"
    assert not below & ABOVE_FACADE


def test_no_import_cycle_through_the_facade(graph: grimp.ImportGraph) -> None:
    for module in graph.find_upstream_modules("coordinator.facade"):
        assert graph.find_shortest_chain(importer=module, imported="coordinator.facade") is None, module


@pytest.mark.parametrize("worker_module", ["coordinator.runtime.task", "coordinator.runtime.maintenance",
                                           "coordinator.runtime.consumer"])
def test_worker_code_does_not_import_the_health_check(graph: grimp.ImportGraph, worker_module: str) -> None:
    assert graph.find_shortest_chain(importer=worker_module, imported="coordinator.health") is None


def test_supervisor_does_not_import_worker_maintenance(graph: grimp.ImportGraph) -> None:
    chain = graph.find_shortest_chain(importer="coordinator.workers.supervisor",
                                      imported="coordinator.runtime.maintenance")
    assert chain is None
