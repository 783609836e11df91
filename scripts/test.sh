#!/usr/bin/env bash
# The README's second command (and CI's): set up .venv with the dev extras and run the tests.
# Needs the Redis at 127.0.0.1:6379 (or JQC_TEST_REDIS_URL); starts nothing itself.
# Exits with pytest's exit code. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh dev
exec .venv/bin/python -m pytest -q "$@"
