"""The benchmark's table (coordinator next to raw Celery, with ratios) and its target checks."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

#: (label, key, unit, higher is better)
ROWS = (
    ("enqueue, 1 job per call", "enqueue_rate", "jobs/s", True),
    ("bulk enqueue (Celery: group, peers: bulk call)", "bulk_rate", "jobs/s", True),
    ("processing, prefork -c 2 (peers: their pool)", "processing_rate", "jobs/s", True),
    ("processing: worker CPU per job", "processing_cpu_ms_per_job", "ms", False),
    ("processing: Redis CPU per job", "processing_redis_cpu_ms_per_job", "ms", False),
    ("processing, threads -c 8", "threads_rate", "jobs/s", True),
    ("threads: worker CPU per job", "threads_cpu_ms_per_job", "ms", False),
    ("round trip p50", "round_trip_p50_ms", "ms", False),
    ("round trip p99", "round_trip_p99_ms", "ms", False),
    ("memory per waiting job", "memory_per_waiting_job", "bytes", False),
    ("worker RSS (main + children)", "processing_worker_rss", "MiB", False),
)
COSTS = (("enqueue", "enqueue_cost"), ("bulk", "bulk_cost"), ("processing", "processing_cost"),
         ("threads", "threads_cost"), ("round trip", "round_trip_cost"))
#: The subjects the table gives ratio columns for (coordinator / subject), where they ran.
RATIO_AGAINST = ("celery-defaults", "celery-same", "bullmq-python", "bullmq-node")


def _others(names: list[str]) -> list[str]:
    return [name for name in RATIO_AGAINST if name in names]


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
    others = _others(names)
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
    console = Console(width=280)
    console.print(table)
    for name, pool in result.get("peer_pools", {}).items():
        console.print(f"{name}: processing with {pool}")
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
    """Each target of issue 14 (ratios against peers in the same run) with the measured figure."""
    medians = result["medians"]
    coord = medians.get("coordinator")
    celery = medians.get("celery-defaults")
    bull_py = medians.get("bullmq-python")
    bull_bulk = medians.get("bullmq-node") or bull_py
    checks: list[dict[str, Any]] = []

    def check(target: str, value: float, ok: bool, text: str) -> None:
        checks.append({"target": target, "value": round(value, 3), "met": ok, "measured": text})

    def ratio(key: str, other: dict[str, Any], peer: str) -> tuple[float, str]:
        value = coord[key] / other[key]  # type: ignore[index]
        return value, f"{value:.2f}x ({_fmt(coord[key])} vs {_fmt(other[key])} {peer})"  # type: ignore[index]

    if coord and celery:
        value, text = ratio("processing_rate", celery, "jobs/s")
        check("processing, prefork -c 2 >= 1.0x Celery defaults (stretch 1.5x)", value, value >= 1.0, text)
        if "threads_rate" in coord and "threads_rate" in celery:
            value, text = ratio("threads_rate", celery, "jobs/s")
            check("processing, threads -c 8 >= 1.0x Celery threads", value, value >= 1.0, text)
        value, text = ratio("round_trip_p50_ms", celery, "ms")
        check("round trip p50 <= 1.0x Celery apply_async().get()", value, value <= 1.0, text)
    if coord and bull_bulk:
        peer = "bullmq-node" if "bullmq-node" in medians else "bullmq-python"
        value, text = ratio("bulk_rate", bull_bulk, "jobs/s")
        check(f"enqueue_bulk >= 1.0x BullMQ addBulk ({peer})", value, value >= 1.0, text)
    if coord and bull_py:
        value, text = ratio("enqueue_rate", bull_py, "jobs/s")
        check("enqueue_job >= 1.0x BullMQ Python add", value, value >= 1.0, text)
    status = result.get("queue_status")
    if status:
        check(f"get_queue_status with {status['big_jobs']:,} jobs within 1.5x of 100 jobs", status["ratio"],
              status["ratio"] <= 1.5, f"{status['ratio']:.2f}x")
    if coord:
        memory = coord["memory_per_waiting_job"]
        check("memory per waiting job <= 1 KiB (100-byte payload, default Redis)", memory, memory <= 1024,
              f"{memory:,.0f} bytes")
        retained = coord.get("retained_completed")
        if retained is not None:
            check("completed jobs trimmed to retention (1,000)", retained, retained <= 1000, f"{retained:,} kept")
    return checks


def markdown_table(result: dict[str, Any]) -> str:
    """The same table as `print_table`, as Markdown (for BENCHMARKS.md)."""
    medians = result["medians"]
    names = list(medians)
    coord = medians.get("coordinator", {})
    others = _others(names)
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
    lines += ["", *(f"- {name}: processing with {pool}" for name, pool in result.get("peer_pools", {}).items())]
    return "\n".join(lines) + "\n"
