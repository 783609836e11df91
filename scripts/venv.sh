#!/usr/bin/env bash
# Create or refresh .venv with the package installed (editable). Usage: scripts/venv.sh [dev]
# Reinstalls only when pyproject.toml is newer than the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
extras="${1:-}"
stamp=".venv/.installed${extras:+-$extras}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv || { echo "could not create .venv: install Python 3.10+ with venv (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2; exit 1; }
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing the package into .venv${extras:+ (with [$extras])} ..." >&2
  if ! .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}" > .venv/install.log 2>&1; then
    cat .venv/install.log >&2
    exit 1
  fi
  touch "$stamp"
fi
