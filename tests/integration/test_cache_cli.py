"""`wtflow cache ls|prune` as a user types them, on a cache filled through :class:`wtflow.cache.CacheStore`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli
from wtflow.cache import CacheStore, Entry, cache_key
from wtflow.cli.cache import human_size

DEFAULT = Path(".wtflow/cache")


@pytest.fixture
def project(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("WTFLOW_CACHE_DIR", raising=False)
    (workdir / "out").mkdir()
    (workdir / "out" / "stdout.log").write_text("x" * 2000)
    (workdir / "out" / "stderr.log").write_text("")
    return workdir


def fill(root: Path, node: str, *, hours_ago: float = 0, duration: float = 83.2) -> Entry:
    """An entry of ``node`` put in the cache at ``root``, last used ``hours_ago``."""
    out = Path("out")
    entry = CacheStore(root).put(
        cache_key({"node": node}, [], []),
        node=node,
        stdout=out / "stdout.log",
        stderr=out / "stderr.log",
        result=None,
        outputs={},
        cwd=Path(),
        files=(),
        duration=duration,
    )
    when = time.time() - hours_ago * 3600
    os.utime(entry.path, (when, when))
    return entry


def table(stdout: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in stdout.splitlines()]


def test_cache_ls_says_when_there_are_no_entries(project: Path) -> None:
    result = cli("cache", "ls")
    assert result.exit_code == 0, result.output
    assert result.stdout == "no cache entries in .wtflow/cache\n"
    assert result.stderr == ""


def test_cache_ls_shows_each_entry_with_its_size_age_and_the_time_it_saves(project: Path) -> None:
    build = fill(DEFAULT, "build", duration=83.2)
    time.sleep(0.01)  # distinct creation times, so the order below is the newest first
    unit = fill(DEFAULT, "unit", duration=4.25)
    result = cli("cache", "ls")
    assert result.exit_code == 0, result.output
    rows = table(result.stdout)
    assert rows[0] == ["KEY", "NODE", "SIZE", "AGE", "SAVES"]
    assert rows[1] == [unit.key[:12], "unit", human_size(unit.size), "0s", "4.2s"]
    assert rows[2] == [build.key[:12], "build", human_size(build.size), "0s", "1m23.2s"]
    assert rows[3] == [f"2 entries, {human_size(unit.size + build.size)} in .wtflow/cache"]
    assert result.stderr == ""


def test_cache_ls_reads_the_directory_from_wtflow_cache_dir(project: Path) -> None:
    fill(project / "elsewhere", "build")
    result = cli("cache", "ls", env={"WTFLOW_CACHE_DIR": str(project / "elsewhere")})
    assert result.exit_code == 0, result.output
    assert table(result.stdout)[1][1] == "build"


def test_cache_ls_option_wins_over_the_environment(project: Path) -> None:
    fill(project / "flag", "build")
    result = cli("cache", "ls", "--cache-dir", "flag", env={"WTFLOW_CACHE_DIR": str(project / "elsewhere")})
    assert result.exit_code == 0, result.output
    assert table(result.stdout)[1][1] == "build"


def test_cache_ls_warns_on_stderr_of_a_damaged_entry(project: Path) -> None:
    fill(DEFAULT, "build")
    bad = fill(DEFAULT, "unit")
    bad.stdout.chmod(0o644)  # read-only in the cache (root writes anyway)
    bad.stdout.write_text("cut")
    result = cli("cache", "ls")
    assert result.exit_code == 0, result.output
    assert [row[1] for row in table(result.stdout)[1:-1]] == ["build"]
    assert result.stderr.startswith(f"warning: cache entry {bad.key[:12]} is unusable")
    assert "stdout.log holds 3 bytes, not 2000" in result.stderr


def test_cache_prune_max_size_removes_the_least_recently_used(project: Path) -> None:
    old = fill(DEFAULT, "old", hours_ago=5)
    recent = fill(DEFAULT, "recent", hours_ago=1)
    result = cli("cache", "prune", "--max-size", "3KiB")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"removed 1 entry, {human_size(old.size)} freed in .wtflow/cache\n"
    assert result.stderr == ""
    assert not old.path.exists()
    assert recent.path.exists()


def test_cache_prune_older_than_removes_entries_unused_for_longer(project: Path) -> None:
    a = fill(DEFAULT, "a", hours_ago=8 * 24)
    b = fill(DEFAULT, "b", hours_ago=9 * 24)
    kept = fill(DEFAULT, "c", hours_ago=6 * 24)
    result = cli("cache", "prune", "--older-than", "7d")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"removed 2 entries, {human_size(a.size + b.size)} freed in .wtflow/cache\n"
    assert [entry.key for entry in CacheStore(DEFAULT).entries()] == [kept.key]


def test_cache_prune_says_when_there_is_nothing_to_remove(project: Path) -> None:
    fill(DEFAULT, "build")
    result = cli("cache", "prune", "--max-size", "1GB", "--older-than", "30d")
    assert result.exit_code == 0, result.output
    assert result.stdout == "nothing to remove in .wtflow/cache\n"


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * 2**30, "5.0 GiB"),
        (3 * 2**50, "3072.0 TiB"),
    ],
)
def test_sizes_are_shown_in_binary_units(size: int, shown: str) -> None:
    assert human_size(size) == shown


@pytest.mark.parametrize("value", ["2XB", "lots", "-1", ""])
def test_a_bad_max_size_is_a_usage_error(project: Path, value: str) -> None:
    entry = fill(DEFAULT, "build")
    result = cli("cache", "prune", "--max-size", value)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"Error: Invalid value for '--max-size': {value!r} is not a size" in result.stderr
    assert "Traceback" not in result.stderr
    assert entry.path.exists()


def test_a_bad_older_than_is_a_usage_error(project: Path) -> None:
    result = cli("cache", "prune", "--older-than", "a week")
    assert result.exit_code == 2
    assert "Error: Invalid value for '--older-than': 'a week' is not a duration" in result.stderr


def test_a_bad_max_size_exits_2_from_the_installed_command(project: Path) -> None:
    """The real process, through ``wtflow.entry``: a message and no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "wtflow", "cache", "prune", "--max-size", "2 parsecs"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Error: Invalid value for '--max-size': '2 parsecs' is not a size" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_cache_directory_that_cannot_be_written_fails_cleanly(project: Path) -> None:
    fill(DEFAULT, "build")
    shutil.rmtree(DEFAULT / "tmp")
    (DEFAULT / "tmp").write_text("in the way")
    result = cli("cache", "prune", "--max-size", "0")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == "Error: the cache directory .wtflow/cache cannot be used: File exists\n"
