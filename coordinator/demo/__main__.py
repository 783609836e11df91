"""`python -m coordinator.demo`: run the photo-processing demo from a shell."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from coordinator import CoordinatorError
from coordinator.demo.redis_server import NoRedisError
from coordinator.demo.run import DEFAULT_PHOTOS, run_demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m coordinator.demo",
        description="The photo-processing system end to end: queues, autoscaled workers, real image "
                    "work, retries, a poison job, delayed and recurring jobs. Uses REDIS_URL when it "
                    "answers, else starts a throwaway redis-server.",
    )
    parser.add_argument("--redis-url", help="Redis to use (default: REDIS_URL, else redis://127.0.0.1:6379/0)")
    parser.add_argument("--jobs", type=int, default=DEFAULT_PHOTOS,
                        help=f"photos to upload; each gets a thumbnail and a metadata job (default {DEFAULT_PHOTOS})")
    parser.add_argument("--quick", action="store_true", help="a short run (a few photos, two cleanup runs)")
    parser.add_argument("--no-recurring", action="store_true", help="skip the recurring cleanup job")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the jobs (default 180)")
    parser.add_argument("--prefix", help="Redis key prefix (default: demo-<random>)")
    parser.add_argument("--keep", action="store_true", help="leave the demo's keys in Redis to inspect them")
    parser.add_argument("--json-out", metavar="PATH", help="also write the summary as JSON to PATH")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    try:
        summary = run_demo(args.redis_url, args.jobs, quick=args.quick, recurring=not args.no_recurring,
                           timeout_s=args.timeout, prefix=args.prefix, keep=args.keep, console=console)
    except NoRedisError as exc:
        print(exc, file=sys.stderr)
        return 3
    except CoordinatorError as exc:
        print(f"the demo failed: {exc}", file=sys.stderr)
        return 1
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as out:
            out.write(summary.model_dump_json(indent=2))
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
