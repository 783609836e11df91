#!/usr/bin/env bash
# The lowest dependency versions pyproject.toml allows (uv's lowest-direct resolution), installed
# once into .venv-lowest, then a smoke subset of the tests that touches every direct dependency.
# Needs .venv (scripts/venv.sh dev) for uv. Exits with pytest's exit code.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q uv
stamp=".venv-lowest/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  rm -rf .venv-lowest
  .venv/bin/uv venv -q --python "$(.venv/bin/python -c 'import sys; print(sys.executable)')" .venv-lowest
  VIRTUAL_ENV=.venv-lowest .venv/bin/uv pip install -q --resolution lowest-direct -e ".[dev]"
  touch "$stamp"
fi
VIRTUAL_ENV=.venv-lowest .venv/bin/uv pip list 2>/dev/null | grep -iE '^(celery|kombu|redis|hiredis|pydantic|flower|click|celery-redbeat|croniter|prometheus.client|rich|pillow|psutil|pytest|pytest-timeout|pytest-xdist|pyyaml|grimp|ruff|mypy) ' || true
# Lint (tests/test_lint.py) is left to the main run: its findings depend on the tools' and the
# libraries' versions (type stubs), not on whether the code works with them.
processes="${JQC_TEST_PROCESSES:-4}"  # as in scripts/test.sh (pytest-xdist at its lowest version too)
parallel=()
[ "$processes" = 0 ] || parallel=(-n "$processes" --dist loadgroup)
exec .venv-lowest/bin/python -m pytest -q "${parallel[@]}" \
  tests/test_exports.py tests/test_settings.py tests/test_jobs.py tests/test_recurring_ticks.py \
  tests/test_error_paths.py tests/test_exporter.py tests/test_compose.py tests/test_testing_plugin.py \
  tests/test_flower.py tests/test_architecture.py tests/test_dashboard_http.py tests/test_cli.py::test_status_table_and_json \
  tests/test_cli.py::test_demo_command_runs_the_demo_and_passes_its_exit_code "$@"
