"""Broken workflow files: each exits 2 with FILE:LINE:COL, no traceback, no node run, bounded cost."""

from __future__ import annotations

import concurrent.futures
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).parents[1] / "data" / "bad"
LOCATED = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): \S")
MEMORY_LIMIT = 1 << 30  # bytes of address space a single validation may use
TIME_LIMIT = 60  # seconds; a file that takes longer is a hang, not a slow parse


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_wtflow(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wtflow", "run", path.name, "--db-url", "", "--log-format", "console"],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
        preexec_fn=_limit_memory,
        check=False,
    )


def generated(folder: Path) -> list[Path]:
    """Broken files too large or odd to commit."""
    big = folder / "90-ten-megabytes.yml"
    lines = ["name: big", "root:", "  name: root", "  command: touch ran-marker", "  children:"]
    lines += [f"    - {{name: n{i}, command: 'true', tmeout: 5}}" for i in range(200_000)]
    big.write_text("\n".join(lines) + "\n")
    deep = folder / "91-deep-mappings.yml"
    deep.write_text("name: x\nroot: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")
    wide_alias = folder / "92-alias-fanout.yml"
    wide_alias.write_text(
        "name: x\nbase: &b {name: n, command: touch ran-marker}\nroot:\n  name: r\n  children: ["
        + ", ".join(["*b"] * 2000)
        + "]\n"
    )
    random_bytes = folder / "93-random-bytes.yml"
    random_bytes.write_bytes(bytes(range(256)) * 64)
    return [big, deep, wide_alias, random_bytes]


def test_corpus_has_at_least_forty_files() -> None:
    assert len(list(CORPUS.glob("*.yml"))) >= 40


def test_every_broken_file_exits_2_with_a_position_and_runs_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    shutil.copytree(CORPUS, folder)
    files = sorted(folder.glob("*.yml")) + generated(folder)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = dict(zip(files, pool.map(run_wtflow, files), strict=True))
    problems = []
    for path, done in results.items():
        first = done.stderr.splitlines()[0] if done.stderr else ""
        match = LOCATED.match(first)
        if done.returncode != 2 or "Traceback" in done.stderr or match is None or match["file"] != path.name:
            problems.append(f"{path.name}: exit {done.returncode}: {done.stderr[-300:]!r}")
    assert problems == []
    assert not (folder / "ran-marker").exists()
    assert not (folder / ".wtflow").exists()


@pytest.mark.parametrize("name", ["44-billion-laughs.yml", "51-deep-nesting.yml"])
def test_hostile_documents_fail_fast(name: str, tmp_path: Path) -> None:
    shutil.copy(CORPUS / name, tmp_path / name)
    done = run_wtflow(tmp_path / name)
    assert done.returncode == 2
