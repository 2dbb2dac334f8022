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

# Where each broken file's first problem is reported: (line, column).
EXPECTED = {
    "01-syntax-unclosed-flow.yml": (3, 1),
    "02-syntax-bad-indent.yml": (4, 11),
    "03-syntax-tab-indent.yml": (3, 1),
    "04-unknown-key.yml": (4, 3),
    "05-unknown-top-key.yml": (2, 1),
    "06-name-missing.yml": (1, 1),
    "07-node-name-missing.yml": (2, 7),
    "08-name-not-string.yml": (1, 7),
    "09-command-number.yml": (2, 26),
    "10-command-empty.yml": (2, 26),
    "11-command-and-function.yml": (2, 7),
    "12-parallel-string.yml": (2, 54),
    "13-children-mapping.yml": (2, 54),
    "14-needs-number.yml": (4, 39),
    "15-duplicate-names.yml": (7, 14),
    "16-duplicate-root-child.yml": (5, 21),
    "17-unknown-needs.yml": (4, 40),
    "18-cycle-two.yml": (3, 12),
    "19-cycle-three.yml": (3, 12),
    "20-self-need.yml": (3, 12),
    "21-needs-descendant.yml": (3, 9),
    "22-both-forms.yml": (1, 1),
    "23-neither-form.yml": (1, 1),
    "24-bad-duration.yml": (2, 53),
    "25-negative-duration.yml": (2, 53),
    "26-bool-duration.yml": (2, 53),
    "27-retries-negative.yml": (2, 53),
    "28-retries-bad-key.yml": (2, 62),
    "29-backoff-below-one.yml": (2, 71),
    "30-function-unimportable.yml": (6, 27),
    "31-function-bad-form.yml": (2, 27),
    "32-function-missing-attr.yml": (5, 34),
    "33-artifact-unknown-node.yml": (5, 68),
    "34-args-without-function.yml": (2, 7),
    "35-env-not-string.yml": (2, 10),
    "36-max-parallel-zero.yml": (2, 15),
    "37-empty.yml": (1, 1),
    "38-only-comments.yml": (1, 1),
    "39-top-level-list.yml": (1, 1),
    "40-top-level-string.yml": (1, 1),
    "41-python-object-tag.yml": (2, 7),
    "42-custom-tag.yml": (1, 7),
    "43-duplicate-key.yml": (3, 1),
    "44-billion-laughs.yml": (2, 4),
    "45-alias-undefined.yml": (2, 7),
    "46-anchor-wrong-type.yml": (2, 14),
    "47-non-string-key.yml": (2, 1),
    "48-null-root.yml": (1, 1),
    "49-group-with-timeout.yml": (2, 7),
    "50-artifact-path-escapes.yml": (2, 56),
    "51-deep-nesting.yml": (2, 1006),
    "52-not-utf8.yml": (3, 1),
    "53-binary.yml": (1, 8),
    "54-bom-unknown-key.yml": (2, 44),
    "55-working-directory-escapes.yml": (5, 22),
    "56-nul-in-command.yml": (4, 20),
    "57-every-build-problem.yml": (4, 12),
    "90-ten-megabytes.yml": (6, 35),
    "91-deep-mappings.yml": (2, 4003),
    "92-alias-fanout.yml": (2, 1),
    "93-random-bytes.yml": (2, 118),
}


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


def test_every_corpus_file_has_its_expected_position() -> None:
    assert sorted(path.name for path in CORPUS.glob("*.yml")) == sorted(name for name in EXPECTED if name[:2] < "90")


def test_every_broken_file_exits_2_at_its_expected_position_and_runs_nothing(tmp_path: Path) -> None:
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
        elif (int(match["line"]), int(match["col"])) != EXPECTED.get(path.name):
            problems.append(f"{path.name}: at {match['line']}:{match['col']}, expected {EXPECTED.get(path.name)}")
    assert problems == []
    assert not (folder / "ran-marker").exists()
    assert not (folder / ".wtflow").exists()


@pytest.mark.parametrize("name", ["44-billion-laughs.yml", "51-deep-nesting.yml"])
def test_hostile_documents_fail_fast(name: str, tmp_path: Path) -> None:
    shutil.copy(CORPUS / name, tmp_path / name)
    done = run_wtflow(tmp_path / name)
    assert done.returncode == 2
