"""The benchmark's table (coordinator next to raw Celery, with ratios) and its target checks."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

#: (label, key, unit, higher is better)
ROWS = (
    ("enqueue, 1 job per call", "enqueue_rate", "jobs/s", True),
    ("bulk enqueue (Celery: group)", "bulk_rate", "jobs/s", True),
    ("processing, prefork -c 2", "processing_rate", "jobs/s", True),
    ("processing: worker CPU per job", "processing_cpu_ms_per_job", "ms", False),
    ("processing: Redis CPU per job", "processing_redis_cpu_ms_per_job", "ms", False),
    ("round trip p50", "round_trip_p50_ms", "ms", False),
    ("round trip p99", "round_trip_p99_ms", "ms", False),
    ("memory per waiting job", "memory_per_waiting_job", "bytes", False),
    ("worker RSS (main + children)", "worker_rss", "MiB", False),
)
COSTS = (("enqueue", "enqueue_cost"), ("bulk", "bulk_cost"), ("processing", "processing_cost"),
         ("round trip", "round_trip_cost"))


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "MiB":
        return f"{value / 2**20:,.0f}"
    if unit == "ms":
        return f"{value:,.3f}" if value < 1 else f"{value:,.2f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def _ratio(coord: float | None, other: float | None) -> str:
    if not coord or not other:
        return "-"
    return f"{coord / other:.2f}×"


def print_table(result: dict[str, Any]) -> None:
    medians = result["medians"]
    names = list(medians)
    coord = medians.get("coordinator", {})
    others = [name for name in names if name != "coordinator"]
    table = Table(title=f"N = {result['jobs']:,} jobs, medians of {result['runs']} run(s), payload "
                        f"{result['payload_bytes']} B, pool {result['pool']}")
    table.add_column("figure")
    table.add_column("unit")
    for name in names:
        table.add_column(name, justify="right")
    for name in others:
        table.add_column(f"coord / {name}", justify="right")
    for label, key, unit, _ in ROWS:
        table.add_row(label, unit, *(_fmt(medians[n].get(key), unit) for n in names),
                      *(_ratio(coord.get(key), medians[n].get(key)) for n in others))
    for label, key in COSTS:
        for what, unit in (("commands", "cmds/job"), ("round_trips", "reads/job")):
            values = [medians[n].get(key, {}).get(what) for n in names]
            table.add_row(f"{label}: Redis {what.replace('_', ' ')}", unit, *(_fmt(v) for v in values),
                          *(_ratio(coord.get(key, {}).get(what), medians[n].get(key, {}).get(what)) for n in others))
    console = Console(width=200)
    console.print(table)
    status = result.get("queue_status")
    if status:
        console.print(
            f"get_queue_status: {status['small']['p50_ms']:.3f} ms p50 with {status['small']['waiting']:,} waiting, "
            f"{status['big']['p50_ms']:.3f} ms p50 with {status['big']['waiting']:,} waiting "
            f"(ratio {status['ratio']:.2f}; {status['big']['cost_per_call']['commands']} commands per call); "
            f"filled at {status['fill_rate']:,.0f} jobs/s"
        )
    memory = result.get("memory_breakdown")
    if memory:
        for label, parts in memory.items():
            console.print(
                f"memory per waiting job ({label}): {parts['total_per_job']:,.0f} B = job hash "
                f"{parts['job_hash']:,} B ({parts['job_hash_encoding']}) + Celery message {parts['broker_message']:,.0f} B "
                f"({parts['message_bytes']} B of JSON) + waiting index {parts['waiting_index']:,.0f} B + event "
                f"{parts['event']:,.0f} B + key overhead"
            )
    retained = coord.get("retained_completed")
    if retained is not None:
        console.print(f"completed jobs kept after the run (retention 1,000): {retained:,}")
    console.print()
    for target in result["targets"]:
        mark = "met   " if target["met"] else "MISSED"
        console.print(f"{mark} {target['target']}: {target['measured']}")


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 8 with the measured figure and whether it is met."""
    medians = result["medians"]
    coord = medians.get("coordinator")
    celery = medians.get("celery-defaults")
    checks: list[dict[str, Any]] = []

    def check(target: str, value: float, ok: bool, text: str) -> None:
        checks.append({"target": target, "value": round(value, 3), "met": ok, "measured": text})

    if coord and celery:
        ratio = coord["enqueue_rate"] / celery["enqueue_rate"]
        check("enqueue_job >= 1.5x apply_async", ratio, ratio >= 1.5, f"{ratio:.2f}x")
        bulk = coord["bulk_rate"]
        ratio = bulk / celery["enqueue_rate"]
        check("enqueue_bulk >= 30,000 jobs/s", bulk, bulk >= 30_000, f"{bulk:,.0f} jobs/s")
        check("enqueue_bulk >= 10x apply_async", ratio, ratio >= 10, f"{ratio:.1f}x")
        ratio = coord["processing_rate"] / celery["processing_rate"]
        check("processing >= 1.0x Celery defaults, prefork -c 2", ratio, ratio >= 1.0, f"{ratio:.2f}x")
        ratio = coord["round_trip_p50_ms"] / celery["round_trip_p50_ms"]
        check("round trip p50 <= 1.2x Celery", ratio, ratio <= 1.2, f"{ratio:.2f}x")
    status = result.get("queue_status")
    if status:
        check(f"get_queue_status with {status['big_jobs']:,} jobs within 1.5x of 100 jobs", status["ratio"],
              status["ratio"] <= 1.5, f"{status['ratio']:.2f}x")
    if coord:
        memory = coord["memory_per_waiting_job"]
        check("memory per waiting job <= 1 KiB (100-byte payload)", memory, memory <= 1024, f"{memory:,.0f} bytes")
        retained = coord.get("retained_completed")
        if retained is not None:
            check("completed jobs trimmed to retention (1,000)", retained, retained <= 1000, f"{retained:,} kept")
    return checks


def markdown_table(result: dict[str, Any]) -> str:
    """The same table as `print_table`, as Markdown (for BENCHMARKS.md)."""
    medians = result["medians"]
    names = list(medians)
    coord = medians.get("coordinator", {})
    others = [name for name in names if name != "coordinator"]
    head = ["figure", "unit", *names, *(f"coord / {name}" for name in others)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for label, key, unit, _ in ROWS:
        cells = [_fmt(medians[n].get(key), unit) for n in names]
        cells += [_ratio(coord.get(key), medians[n].get(key)) for n in others]
        lines.append("| " + " | ".join([label, unit, *cells]) + " |")
    for label, key in COSTS:
        for what, unit in (("commands", "cmds/job"), ("round_trips", "reads/job")):
            values = [medians[n].get(key, {}).get(what) for n in names]
            cells = [_fmt(v) for v in values]
            cells += [_ratio(coord.get(key, {}).get(what), medians[n].get(key, {}).get(what)) for n in others]
            lines.append("| " + " | ".join([f"{label}: Redis {what.replace('_', ' ')}", unit, *cells]) + " |")
    return "\n".join(lines) + "\n"
