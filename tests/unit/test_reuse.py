"""A cached node checked from what is known alone: cheap enough for the event loop, or it says it must read."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import wtflow.cache
from wtflow import reuse
from wtflow.cache import Entry, MustRead, cache_key
from wtflow.executors.base import Job
from wtflow.model import Command, Node, PyFunc

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


# --- what a function's arguments make of its key -------------------------------------------------


def function_key(tmp_path: Path, *args: Any, **kwargs: Any) -> str:
    return cache_key(reuse.describe(PyFunc(len, args=args, kwargs=kwargs), {}, None, tmp_path), [], [])


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ((1, 2), [1, 2]),  # a tuple, a list
        ({1: "a"}, {"1": "a"}),  # a number as a key, its text
        (float("nan"), "nan"),
        (True, 1),
        (1, 1.0),
        ({"a"}, ["a"]),  # a set, a list
    ],
)
def test_arguments_python_tells_apart_give_different_keys(tmp_path: Path, one: Any, other: Any) -> None:
    assert function_key(tmp_path, one) != function_key(tmp_path, other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({"x", "y", "z"}, {"z", "y", "x"}),
        ({(1, 2): 3}, {(1, 2): 3}),
        (float("nan"), float("nan")),
    ],
)
def test_equal_arguments_give_the_same_key(tmp_path: Path, one: Any, other: Any) -> None:
    assert function_key(tmp_path, one) == function_key(tmp_path, other)


def test_an_argument_that_contains_itself_cannot_be_part_of_a_key(tmp_path: Path) -> None:
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(ValueError, match="contains itself"):
        function_key(tmp_path, looped)


def test_an_argument_whose_repr_fails_cannot_be_part_of_a_key(tmp_path: Path) -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    with pytest.raises(ValueError, match="cannot be part of a cache key"):
        function_key(tmp_path, Broken())


# --- an entry that goes away --------------------------------------------------------------------


def test_an_entry_removed_while_it_is_restored_is_a_miss(
    tmp_path: Path, cache: reuse.NodeCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run pruned the cache between this run's finding the entry and restoring it."""
    key = filled(tmp_path, cache)
    restore = cache.store.restore

    def pruned_first(entry: Entry, cwd: Path, *, quick: bool = False) -> list[str]:
        cache.store.prune(max_size=0)
        return restore(entry, cwd, quick=quick)

    monkeypatch.setattr(cache.store, "restore", pruned_first)
    assert check_entry(cache, tmp_path) == (key, None)
    assert cache.store.warnings == [f"cache entry {key[:12]} was removed while it was read (a prune?): a miss"]


def test_a_quick_hit_reads_only_streams_up_to_the_quick_read_size(
    tmp_path: Path, cache: reuse.NodeCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = filled(tmp_path, cache, stdout="x" * 64, stderr="e")
    check_entry(cache, tmp_path)  # reads the entry's files: now known by their stat
    monkeypatch.setattr(reuse, "QUICK_READ", 32)
    found, earlier = check_entry(cache, tmp_path, quick=True)
    assert found == key
    assert earlier is not None
    earlier.close_opened()
    assert dict(earlier.data) == {"stderr": b"e"}  # stdout is replayed from its file
    assert list(earlier.opened) == ["stdout"]


def test_a_hit_keeps_its_large_streams_when_a_prune_removes_the_entry_before_they_are_replayed(
    tmp_path: Path, cache: reuse.NodeCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled(tmp_path, cache, stdout="x" * 64, stderr="e")
    monkeypatch.setattr(reuse, "SMALL", 32)
    _, earlier = check_entry(cache, tmp_path)
    assert earlier is not None
    try:
        assert cache.store.prune(max_size=0)[0] == 1  # another run's prune, before this run replays it
        assert earlier.stdout is not None
        assert not earlier.stdout.exists()
        assert earlier.opened["stdout"].read() == b"x" * 64
    finally:
        earlier.close_opened()


def filled(tmp_path: Path, cache: reuse.NodeCache, *, stdout: str = "out", stderr: str = "err") -> str:
    """A settled source and an entry for the node reading it."""
    settled(tmp_path / "src" / "a.c")
    key = check(cache, tmp_path, ["src/*.c"], quick=False)
    node_dir = tmp_path / "node"
    node_dir.mkdir(exist_ok=True)
    (node_dir / "stdout.log").write_text(stdout)
    (node_dir / "stderr.log").write_text(stderr)
    cache.fill(key, node="build", streams=(node_dir / "stdout.log", node_dir / "stderr.log"), result=None,
               outputs={}, cwd=tmp_path, patterns=[], duration=1.0)  # fmt: skip
    return key


def check_entry(cache: reuse.NodeCache, work: Path, *, quick: bool = False) -> tuple[str, reuse.Earlier | None]:
    node = Node("build", executable=Command("make", cwd=work), sources=["src/*.c"])
    assert node.executable is not None
    job = Job("run", "build", node.executable, {}, work, work / "node", 1.0)
    return cache.check(job, node, [], base=work, read=[], result=None, quick=quick)
