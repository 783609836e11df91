#!/usr/bin/env bash
# The README's second command (and CI's): set up .venv with the dev extras and run the tests.
# Redis: JQC_TEST_REDIS_URL, else 127.0.0.1:6379, else a throwaway redis-server for the run
# (tests/support/env.py). Exits with pytest's exit code (5, "no tests ran", included). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh dev
exec .venv/bin/python -m pytest -q "$@"
