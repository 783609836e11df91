"""Installs the peers the benchmark compares against, away from the project's own environment.

- ``bench/.peers-venv``: BullMQ's Python port and RQ (``bullmq`` pins ``croniter==2.0.7``, which
  the coordinator's own install must not be bound to, so the peers get a venv of their own).
- ``bench/node/node_modules``: BullMQ on Node (``npm install`` of ``bench/node/package.json``),
  when ``node`` and ``npm`` are on the PATH.

Each step runs once; a stamp file records what was installed. ``python -m bench.peers.setup``
runs it by hand; ``python -m bench`` runs it before its first peer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
PEERS_VENV = BENCH / ".peers-venv"
NODE_DIR = BENCH / "node"
#: What the peers' venv holds; a change here reinstalls it.
PYTHON_PEERS = ("bullmq==3.4.4", "rq==3.0.0", "hiredis")


def peers_python() -> Path:
    """The interpreter of the peers' venv, installed on first use."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    wanted = "\n".join(PYTHON_PEERS)
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(PEERS_VENV)
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"installing {', '.join(PYTHON_PEERS)} into {PEERS_VENV} ...", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PYTHON_PEERS], check=True)
        stamp.write_text(wanted)
    return python


def node_binary() -> str | None:
    """``node`` with BullMQ installed in bench/node, or None where Node or npm is absent."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None
    manifest = NODE_DIR / "package.json"
    stamp = NODE_DIR / "node_modules" / ".installed"
    if not stamp.exists() or stamp.stat().st_mtime < manifest.stat().st_mtime:
        print(f"npm install in {NODE_DIR} ...", flush=True)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True)
        stamp.touch()
    return node


def main() -> None:
    print(peers_python())
    print(node_binary() or "node or npm not found: BullMQ on Node is left out", file=sys.stderr)


if __name__ == "__main__":
    main()
