#!/usr/bin/env bash
# The README's first command: set up .venv and run the photo-processing demo.
# Uses the Redis at REDIS_URL when it answers, else starts a throwaway redis-server.
# Arguments go to the demo (try --help, --quick, --jobs N).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
exec .venv/bin/python -m coordinator.demo "$@"
