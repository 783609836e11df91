#!/usr/bin/env bash
# The README's second command (and CI's): set up .venv with the dev extras and run the tests.
# Redis: JQC_TEST_REDIS_URL, else 127.0.0.1:6379, else a throwaway redis-server for the run
# (tests/support/env.py). The tests run on JQC_TEST_PROCESSES pytest-xdist processes (default 4:
# most of a test's time is spent waiting on worker subprocesses, so this pays even on 2 cores);
# JQC_TEST_PROCESSES=0 runs them serially in this process, and so does `-n 0` among the arguments
# (docs/testing.md). Exits with pytest's exit code (5, "no tests ran", included). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh dev
processes="${JQC_TEST_PROCESSES:-4}"
parallel=()
[ "$processes" = 0 ] || parallel=(-n "$processes" --dist loadgroup)
exec .venv/bin/python -m pytest -q "${parallel[@]}" "$@"
