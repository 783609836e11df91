"""Every ```python block of README.md and docs/*.md runs, against the real Redis, each with its own
key prefix.

A block whose first line is ``# file: NAME.py`` is a module: it is written to NAME.py beside the
other blocks (so they, and the worker processes they start, can import it) instead of being run.
The docs' blocks may import the README's modules (the quick start's ``photos.py``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from coordinator.demo.cleanup import delete_prefix_keys
from tests.support.env import REDIS_URL
from tests.support.processes import wait_until_gone

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
FILE_MARK = re.compile(r"\A# file: ([A-Za-z_][A-Za-z0-9_]*\.py)\n")


@dataclass(frozen=True)
class Block:
    line: int
    code: str
    source: str = "README.md"

    @property
    def module_file(self) -> str | None:
        match = FILE_MARK.match(self.code)
        return match[1] if match else None


def python_blocks(text: str, source: str = "README.md") -> list[Block]:
    return [Block(text.count("\n", 0, match.start()) + 1, match[1], source) for match in FENCE.finditer(text)]


BLOCKS = python_blocks(README.read_text()) + [
    block for doc in DOCS for block in python_blocks(doc.read_text(), f"docs/{doc.name}")]
MODULES = [block for block in BLOCKS if block.module_file]
SCRIPTS = [block for block in BLOCKS if not block.module_file]


def test_the_readme_has_code_to_run() -> None:
    assert len(SCRIPTS) >= 4 and MODULES, "the README lost its examples"
    assert {block.source for block in SCRIPTS} > {"README.md"}, "the docs' examples are not collected"


@pytest.mark.parametrize("block", SCRIPTS, ids=[f"{block.source}:{block.line}" for block in SCRIPTS])
def test_readme_block_runs(block: Block, prefix: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    for module in MODULES:
        (tmp_path / module.module_file).write_text(module.code)  # type: ignore[operator]
    script = tmp_path / f"{block.source.replace('/', '_').replace('.md', '')}_line_{block.line}.py"
    script.write_text(block.code)
    env = {**os.environ, "REDIS_URL": REDIS_URL, "JQC_PREFIX": prefix, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=180)
        assert proc.returncode == 0, f"{block.source} line {block.line}:\n{proc.stdout}\n{proc.stderr}"
        assert not wait_until_gone(prefix), "the block left worker processes running"
    finally:
        delete_prefix_keys(redis_client, prefix)


#: Environment variables the library sets for its own processes, not for users.
INTERNAL_VARIABLES = {"JQC_WORKER_SPEC"}


def test_every_environment_variable_is_documented() -> None:
    """Each variable the library reads (settings, CLI, logging) is in the README's configuration table."""
    names: set[str] = set()
    for path in (ROOT / "coordinator").rglob("*.py"):
        names |= set(re.findall(r'"((?:REDIS|LOG|WORKER|MAX|JQC|BROKER|FLOWER)_[A-Z_]+)"', path.read_text()))
    assert {"REDIS_URL", "REDIS_PASSWORD", "JQC_PREFIX", "BROKER_URL", "MAX_JOB_RETRIES"} <= names
    table = {row.split("|")[1].strip(" `") for row in README.read_text().splitlines() if row.startswith("| `")}
    assert names - INTERNAL_VARIABLES - table == set()


def test_the_first_two_commands_are_demo_and_test() -> None:
    first_shell = re.search(r"^```sh\n(.*?)^```", README.read_text(), re.S | re.M)[1]
    commands = [line.split("#")[0].strip() for line in first_shell.splitlines()]
    assert commands[:2] == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert "\tscripts/demo.sh" in makefile and "\tscripts/test.sh" in makefile


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda path: path.name)
def test_every_relative_link_points_to_a_file_in_the_repository(doc: Path) -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text())
    missing = [link for link in links if "://" not in link and not (doc.parent / link).exists()]
    assert missing == []
