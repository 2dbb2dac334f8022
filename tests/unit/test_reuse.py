"""A cached node checked from what is known alone: cheap enough for the event loop, or it says it must read."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import wtflow.cache
from wtflow import reuse
from wtflow.cache import MustRead
from wtflow.executors.base import Job
from wtflow.model import Command, Node

DAY_NS = 86_400 * 10**9
# Sources are settled by setting their mtime back (see the fixture).
pytestmark = pytest.mark.usefixtures("trusted_stats")


def settled(path: Path) -> Path:
    """``path`` written a day ago: old enough for the stat cache to trust its stat."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(path.name)
    old = time.time_ns() - DAY_NS
    os.utime(path, ns=(old, old))
    return path


def check(cache: reuse.NodeCache, work: Path, sources: list[str], *, quick: bool) -> str:
    node = Node("build", executable=Command("make", cwd=work), sources=sources)
    assert node.executable is not None
    job = Job("run", "build", node.executable, {}, work, work / "node", 1.0)
    key, _earlier = cache.check(job, node, [], base=work, read=[], result=None, quick=quick)
    return key


@pytest.fixture
def cache(tmp_path: Path) -> reuse.NodeCache:
    return reuse.NodeCache(tmp_path / "cache")


def test_sources_known_by_their_stat_give_the_key_without_reading(
    tmp_path: Path, cache: reuse.NodeCache, reads: list[str]
) -> None:
    for name in ("a.c", "b.c"):
        settled(tmp_path / "src" / name)
    key = check(cache, tmp_path, ["src/*.c"], quick=False)
    reads.clear()
    assert check(cache, tmp_path, ["src/*.c"], quick=True) == key
    assert reads == []


def test_a_small_source_never_read_is_read_by_the_quick_check(tmp_path: Path, cache: reuse.NodeCache) -> None:
    settled(tmp_path / "src" / "a.c")
    key = check(cache, tmp_path, ["src/*.c"], quick=True)
    assert check(cache, tmp_path, ["src/*.c"], quick=False) == key


def test_a_large_source_never_read_is_left_to_a_full_check(
    tmp_path: Path, cache: reuse.NodeCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled(tmp_path / "src" / "a.c")
    monkeypatch.setattr(wtflow.cache, "QUICK_READ", 2)  # "a.c" holds three bytes
    with pytest.raises(MustRead):
        check(cache, tmp_path, ["src/*.c"], quick=True)


def test_a_double_star_walk_is_left_to_a_full_check(tmp_path: Path, cache: reuse.NodeCache) -> None:
    """A walk of a whole tree can be long: not a check for the event loop, however well the files are known."""
    settled(tmp_path / "src" / "deep" / "a.c")
    check(cache, tmp_path, ["src/**"], quick=False)
    with pytest.raises(MustRead):
        check(cache, tmp_path, ["src/**"], quick=True)


def test_more_sources_than_the_quick_limit_are_left_to_a_full_check(
    tmp_path: Path, cache: reuse.NodeCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reuse, "QUICK_FILES", 2)
    for name in ("a.c", "b.c", "c.c"):
        settled(tmp_path / "src" / name)
    check(cache, tmp_path, ["src/*.c"], quick=False)
    with pytest.raises(MustRead):
        check(cache, tmp_path, ["src/*.c"], quick=True)


def test_a_check_that_must_read_the_entry_hands_over_the_key_it_found(
    tmp_path: Path, cache: reuse.NodeCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled(tmp_path / "src" / "a.c")
    key = check(cache, tmp_path, ["src/*.c"], quick=False)
    monkeypatch.setattr(wtflow.cache, "QUICK_READ", 2)  # the entry's streams are larger
    node_dir = tmp_path / "node"
    (node_dir).mkdir()
    for stream in ("stdout.log", "stderr.log"):
        (node_dir / stream).write_text(stream)  # written just now: the entry cannot be known by its stat
    cache.fill(key, node="build", streams=(node_dir / "stdout.log", node_dir / "stderr.log"), result=None,
               outputs={}, cwd=tmp_path, patterns=[], duration=1.0)  # fmt: skip
    with pytest.raises(MustRead) as caught:
        check(cache, tmp_path, ["src/*.c"], quick=True)
    assert caught.value.key == key
