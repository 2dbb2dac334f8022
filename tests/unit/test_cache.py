"""The cache of finished nodes: source lists, keys, the stat cache of digests, and the store of entries."""

from __future__ import annotations

import base64
import errno
import json
import os
import shutil
import stat
import threading
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from blake3 import blake3

from wtflow import cache
from wtflow.cache import CacheStore, Entry, MustRead, SourceHasher, cache_key, expand_sources

# Files made here are settled by setting their mtime back; the racily-clean window has tests of its own.
pytestmark = pytest.mark.usefixtures("trusted_stats")

DAY_NS = 86_400 * 10**9
HOUR = 3600.0


def write(path: Path, data: bytes | str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def backdate(path: Path, days: int = 1) -> None:
    """Set the file's mtime ``days`` back: old enough for the hasher to trust its stat."""
    old = time.time_ns() - days * DAY_NS
    os.utime(path, ns=(old, old))


def after_tick(ctime_ns: int, probe: Path) -> None:
    """Return once the file system's clock has passed ``ctime_ns`` (a change now gets a later ctime)."""
    while True:
        probe.touch()
        if probe.stat().st_ctime_ns > ctime_ns:
            return


def key(n: int) -> str:
    return cache_key({"n": n}, [], [])


# --- expand_sources ------------------------------------------------------------------------------


def test_sources_are_sorted_relative_posix_paths(tmp_path: Path) -> None:
    for name in ("src/b.py", "src/a.py", "src/sub/c.py", "README.md"):
        write(tmp_path / name)
    assert expand_sources(tmp_path, ["src/**/*.py", "README.md"]) == [
        "README.md",
        "src/a.py",
        "src/b.py",
        "src/sub/c.py",
    ]


def test_sources_matched_by_two_patterns_are_listed_once(tmp_path: Path) -> None:
    write(tmp_path / "a.py")
    assert expand_sources(tmp_path, ["*.py", "a.py", "./a.py"]) == ["a.py"]


def test_sources_skip_directories(tmp_path: Path) -> None:
    write(tmp_path / "pkg" / "mod.py")
    (tmp_path / "empty.d").mkdir()
    assert expand_sources(tmp_path, ["*"]) == []


def test_a_source_pattern_matching_nothing_adds_nothing(tmp_path: Path) -> None:
    write(tmp_path / "a.txt")
    assert expand_sources(tmp_path, ["*.rs", "a.txt"]) == ["a.txt"]


def test_a_trailing_double_star_matches_every_file_below(tmp_path: Path) -> None:
    write(tmp_path / "src" / "a.py")
    write(tmp_path / "src" / "deep" / "b.txt")
    write(tmp_path / "other.py")
    assert expand_sources(tmp_path, ["src/**"]) == ["src/a.py", "src/deep/b.txt"]


def test_sources_include_hidden_files(tmp_path: Path) -> None:
    write(tmp_path / ".env")
    assert expand_sources(tmp_path, ["*"]) == [".env"]


@pytest.mark.parametrize(
    "pattern",
    ["*.txt", "src/*.c", "src/[ab]*", "src/?.c", "src/.*", "src/*", "src/a.c", "src/none/*.c", "*/*.c", "src/**/*.c"],
)
def test_sources_are_what_pathlib_globbing_matches_that_is_a_file(tmp_path: Path, pattern: str) -> None:
    for name in ("a.txt", "src/a.c", "src/b.c", "src/.hidden.c", "src/c.h", "src/deep/d.c", "lib/e.c"):
        write(tmp_path / name)
    (tmp_path / "src" / "dir.c").mkdir()
    (tmp_path / "src" / "link.c").symlink_to(tmp_path / "src" / "a.c")
    (tmp_path / "src" / "loop.c").symlink_to("loop.c")  # stat says ELOOP: not a file
    (tmp_path / "src" / "gone.c").symlink_to("nowhere.c")
    expected = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.glob(pattern) if path.is_file())
    assert expand_sources(tmp_path, [pattern]) == expected


def test_running_out_of_open_files_while_listing_sources_is_an_error_not_an_empty_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_files_left(path: str) -> object:
        raise OSError(errno.EMFILE, "Too many open files", path)

    write(tmp_path / "src" / "a.c")
    monkeypatch.setattr(cache.os, "scandir", no_files_left)
    with pytest.raises(OSError, match="Too many open files"):
        expand_sources(tmp_path, ["src/*.c"])


def test_sources_relative_to_a_relative_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "src" / "a.py")
    assert expand_sources(Path(), ["src/*.py"]) == ["src/a.py"]
    assert expand_sources(Path("src"), ["*.py"]) == ["a.py"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("../secrets/*", "'..'"),
        ("src/../../x", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:/x", "absolute"),
        ("", "empty"),
        ("src/a**", "whole part"),
    ],
)
def test_bad_source_patterns_are_refused_with_a_message(tmp_path: Path, pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        expand_sources(tmp_path, ["ok/*", pattern])
    assert repr(pattern) in str(caught.value)


# --- cache_key -----------------------------------------------------------------------------------

DESCRIPTION = {"command": "make", "env": {"A": "1"}, "cwd": "."}
SOURCES = [("src/a.c", b"\x01" * 32), ("src/b.c", b"\x02" * 32)]
UPSTREAM = ["aa" * 32, "bb" * 32]


def test_a_key_is_64_hex_digits() -> None:
    assert len(cache_key(DESCRIPTION, SOURCES, UPSTREAM)) == 64
    int(cache_key(DESCRIPTION, SOURCES, UPSTREAM), 16)


def test_a_key_is_the_same_for_the_same_inputs_in_any_key_or_source_order() -> None:
    reordered = {"cwd": ".", "env": {"A": "1"}, "command": "make"}
    assert cache_key(DESCRIPTION, SOURCES, UPSTREAM) == cache_key(reordered, SOURCES[::-1], list(UPSTREAM))


@pytest.mark.parametrize(
    "changed",
    [
        {**DESCRIPTION, "command": "make all"},
        {**DESCRIPTION, "env": {"A": "2"}},
        {**DESCRIPTION, "extra": None},
        {k: v for k, v in DESCRIPTION.items() if k != "cwd"},
    ],
)
def test_a_key_changes_with_any_description_value(changed: dict[str, Any]) -> None:
    assert cache_key(changed, SOURCES, UPSTREAM) != cache_key(DESCRIPTION, SOURCES, UPSTREAM)


def test_a_key_changes_with_a_sources_content() -> None:
    changed = [SOURCES[0], ("src/b.c", b"\x03" * 32)]
    assert cache_key(DESCRIPTION, changed, UPSTREAM) != cache_key(DESCRIPTION, SOURCES, UPSTREAM)


def test_a_key_changes_with_a_sources_path() -> None:
    moved = [SOURCES[0], ("src/c.c", SOURCES[1][1])]
    assert cache_key(DESCRIPTION, moved, UPSTREAM) != cache_key(DESCRIPTION, SOURCES, UPSTREAM)


def test_a_key_changes_when_a_source_is_added() -> None:
    added = [*SOURCES, ("src/d.c", b"\x04" * 32)]
    assert cache_key(DESCRIPTION, added, UPSTREAM) != cache_key(DESCRIPTION, SOURCES, UPSTREAM)


@pytest.mark.parametrize("upstream", [["aa" * 32, "cc" * 32], UPSTREAM[::-1], UPSTREAM[:1], []])
def test_a_key_changes_with_the_upstream_keys_or_their_order(upstream: list[str]) -> None:
    assert cache_key(DESCRIPTION, SOURCES, upstream) != cache_key(DESCRIPTION, SOURCES, UPSTREAM)


def test_a_key_frames_its_parts_so_text_cannot_move_between_them() -> None:
    assert cache_key({"a": "b"}, [("c", b"d")], []) != cache_key({"a": 'b","c'}, [], [])
    assert cache_key({}, [("a", b"")], ["b"]) != cache_key({}, [("a", b"")], ["", "b"])


def test_a_key_refuses_a_description_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        cache_key({"cwd": Path()}, [], [])


# --- SourceHasher --------------------------------------------------------------------------------


def test_a_digest_is_the_blake3_of_the_content(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # several chunks and a tail
    assert SourceHasher().digest(write(tmp_path / "f", data)) == blake3(data).digest()


def test_an_unchanged_file_is_not_read_again(tmp_path: Path, reads: list[str]) -> None:
    source = write(tmp_path / "a.c", "int x;")
    backdate(source)
    hasher = SourceHasher()
    first = hasher.digest(source)
    assert hasher.digest(source) == first
    assert reads == [str(source)]


@pytest.fixture
def racy_window(trusted_stats: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stat cache's real racily-clean window of two seconds (set after this module's ``trusted_stats``)."""
    monkeypatch.setattr(cache, "RACY_NS", 2_000_000_000)


@pytest.mark.usefixtures("racy_window")
def test_a_file_whose_mtime_was_set_back_but_whose_ctime_is_recent_is_read_again_each_time(
    tmp_path: Path, reads: list[str]
) -> None:
    """What ``cp -p`` leaves: an old mtime on a file just written; a rewrite in the same tick would go unseen."""
    source = write(tmp_path / "a.c", "int x;")
    backdate(source)
    hasher = SourceHasher()
    hasher.digest(source)
    hasher.digest(source)
    assert reads == [str(source), str(source)]


def test_a_file_whose_mtime_and_ctime_are_past_the_racy_window_is_known_by_its_stat(
    tmp_path: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "RACY_NS", 1_000_000)  # a millisecond, not two seconds: no test waits that long
    source = write(tmp_path / "a.c", "int x;")
    backdate(source)
    changed = source.stat().st_ctime_ns
    while time.time_ns() - changed <= cache.RACY_NS:  # until the window has passed by this clock
        pass
    hasher = SourceHasher()
    hasher.digest(source)
    hasher.digest(source)
    assert reads == [str(source)]


def test_a_file_is_read_again_when_its_mtime_changes(tmp_path: Path, reads: list[str]) -> None:
    source = write(tmp_path / "a.c", "int x;")
    backdate(source, days=2)
    hasher = SourceHasher()
    hasher.digest(source)
    backdate(source, days=1)
    hasher.digest(source)
    assert len(reads) == 2


def test_a_same_size_rewrite_with_its_mtime_put_back_is_read_again(tmp_path: Path) -> None:
    """What ``cp -p`` or an extracting tar does: the ctime moves, so the change is seen."""
    source = write(tmp_path / "a.c", "int x;")
    backdate(source)
    stamp = source.stat()
    hasher = SourceHasher()
    hasher.digest(source)
    source.write_text("int y;")
    os.utime(source, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    while source.stat().st_ctime_ns == stamp.st_ctime_ns:  # the file system's clock has not ticked yet
        os.utime(source, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert hasher.digest(source) == blake3(b"int y;").digest()


@pytest.mark.usefixtures("racy_window")
def test_a_file_modified_just_now_is_read_every_time(tmp_path: Path, reads: list[str]) -> None:
    """Its stamp could still be shared by a second write in the same clock tick ("racily clean")."""
    source = write(tmp_path / "gen.c", "int x;")
    hasher = SourceHasher()
    hasher.digest(source)
    hasher.digest(source)
    assert len(reads) == 2


def test_the_stat_cache_trusts_stat_alone_by_design(tmp_path: Path, reads: list[str]) -> None:
    """The trade-off git and doit make: a stat that matches what was recorded is not checked against the content.

    Shown by recording the stat of one content under a digest of another, as a write that kept
    size, mtime, ctime and inode would leave things.
    """
    source = write(tmp_path / "a.c", "int x;")
    backdate(source)
    state = tmp_path / "stat-cache.json"
    first = SourceHasher(state)
    first.digest(source)
    first.save()
    document = json.loads(state.read_bytes())
    document["files"][str(source)][4] = base64.b64encode(blake3(b"other").digest()).decode()
    state.write_text(json.dumps(document))
    assert SourceHasher(state).digest(source) == blake3(b"other").digest()
    assert len(reads) == 1


def test_digests_are_remembered_across_runs_through_the_state_file(tmp_path: Path, reads: list[str]) -> None:
    source = write(tmp_path / "a.c", "int x;")
    backdate(source)
    state = tmp_path / "cache" / "stat-cache.json"
    first = SourceHasher(state)
    digest = first.digest(source)
    first.save()
    assert SourceHasher(state).digest(source) == digest
    assert reads == [str(source)]


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"format": 99, "files": {}}', b'{"format": 1, "files": 3}'])
def test_a_corrupt_state_file_counts_as_empty(tmp_path: Path, content: bytes, reads: list[str]) -> None:
    source = write(tmp_path / "a.c", "int x;")
    state = write(tmp_path / "stat-cache.json", content)
    assert SourceHasher(state).digest(source) == blake3(b"int x;").digest()
    assert reads == [str(source)]


def test_a_state_file_of_the_earlier_format_counts_as_empty(tmp_path: Path, reads: list[str]) -> None:
    """Format 1 kept digests as hex: its records are not taken for this format's."""
    source = write(tmp_path / "a.c", "int x;")
    backdate(source)
    found = source.stat()
    record = [found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino, blake3(b"other").hexdigest()]
    state = write(tmp_path / "stat-cache.json", json.dumps({"format": 1, "files": {str(source): record}}))
    assert SourceHasher(state).digest(source) == blake3(b"int x;").digest()
    assert reads == [str(source)]


def test_concurrent_saves_never_leave_a_torn_state_file(tmp_path: Path) -> None:
    sources = [write(tmp_path / f"s{n}", str(n) * 5000) for n in range(200)]
    for source in sources:
        backdate(source)
    state = tmp_path / "stat-cache.json"
    start = threading.Barrier(3)
    problems: list[BaseException] = []

    def saver(which: list[Path]) -> None:
        hasher = SourceHasher(state)
        start.wait()
        for source in which:
            hasher.digest(source)
            hasher.save()

    def reader() -> None:
        start.wait()
        for _ in range(300):
            try:
                msgspec.json.decode(state.read_bytes())
            except FileNotFoundError:
                continue
            except BaseException as exc:
                problems.append(exc)

    threads = [
        threading.Thread(target=saver, args=(sources[:100],)),
        threading.Thread(target=saver, args=(sources[100:],)),
        threading.Thread(target=reader),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name[1:].isdigit()) == ["stat-cache.json"]


def test_digesting_a_directory_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        SourceHasher().digest(tmp_path)


def test_digesting_a_fifo_raises_instead_of_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="not a regular file"):
        SourceHasher().digest(tmp_path / "pipe")


def test_digesting_a_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SourceHasher().digest(tmp_path / "gone")


# --- CacheStore ----------------------------------------------------------------------------------


class Node:
    """A finished node's leftovers in a scratch directory: its output files and a working directory."""

    def __init__(self, tmp_path: Path, name: str = "build") -> None:
        self.name = name
        self.out = tmp_path / "artifacts" / name
        self.cwd = tmp_path / "work"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.stdout = write(self.out / "stdout.log", f"{name} out\n")
        self.stderr = write(self.out / "stderr.log", f"{name} err\n")
        self.result = write(self.out / "result.json", '{"value": 42}')

    def put(self, store: CacheStore, key: str, files: tuple[str, ...] = (), **overrides: Any) -> Entry:
        arguments: dict[str, Any] = {
            "node": self.name,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "result": self.result,
            "outputs": {"version": "1.2"},
            "cwd": self.cwd,
            "files": files,
            "duration": 12.5,
        } | overrides
        return store.put(key, **arguments)


@pytest.fixture
def store(tmp_path: Path) -> CacheStore:
    return CacheStore(tmp_path / "cache")


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def entry_files(store: CacheStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file())


def test_the_cache_directory_is_made_on_the_first_put_only(store: CacheStore, node: Node) -> None:
    assert store.get(key(1)) is None
    assert store.entries() == []
    assert store.prune(max_size=0) == (0, 0)
    assert not store.root.exists()
    node.put(store, key(1))
    assert (store.root / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")


def test_put_then_get_gives_back_everything_kept(store: CacheStore, node: Node) -> None:
    write(node.cwd / "dist" / "app.whl", b"\x00wheel")
    write(node.cwd / "report.txt", "ok")
    before = datetime.now(UTC)
    put = node.put(store, key(1), files=("report.txt", "./dist/app.whl"))
    got = store.get(key(1))
    assert got == put
    assert got.key == key(1)
    assert got.node == "build"
    assert got.path == store.root / "entries" / key(1)[:2] / key(1)
    assert got.stdout.read_text() == "build out\n"
    assert got.stderr.read_text() == "build err\n"
    assert got.result is not None
    assert got.result.read_text() == '{"value": 42}'
    assert got.outputs == {"version": "1.2"}
    assert got.files == ("dist/app.whl", "report.txt")
    assert (got.path / "files" / "dist" / "app.whl").read_bytes() == b"\x00wheel"
    assert got.duration == 12.5
    assert got.created.tzinfo is not None
    assert got.created.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert before <= got.created <= datetime.now(UTC)
    assert got.size == sum(p.stat().st_size for p in got.path.rglob("*") if p.is_file())
    assert store.warnings == []


def test_an_entry_without_a_result_has_none(store: CacheStore, node: Node) -> None:
    node.put(store, key(1), result=None)
    got = store.get(key(1))
    assert got is not None
    assert got.result is None
    assert not (got.path / "result.json").exists()


def test_an_entry_holds_no_absolute_path(store: CacheStore, node: Node) -> None:
    """So CI can carry the directory to another machine (actions/cache)."""
    write(node.cwd / "out.bin", "x")
    node.put(store, key(1), files=("out.bin",))
    for path in entry_files(store):
        assert str(path.parent.parent.parent) not in path.read_text(errors="replace")
        assert str(node.cwd) not in path.read_text(errors="replace")


def test_an_unknown_key_is_a_miss_without_warning(store: CacheStore, node: Node) -> None:
    node.put(store, key(1))
    assert store.get(key(2)) is None
    assert store.warnings == []


@pytest.mark.parametrize("bad", ["../../etc", "ABCDEF0123", "ab", "a" * 200, "12345678/x"])
def test_a_key_that_is_not_lowercase_hex_is_refused(store: CacheStore, bad: str) -> None:
    with pytest.raises(ValueError, match="not a cache key"):
        store.get(bad)


def test_a_truncated_file_makes_the_entry_a_miss_with_one_warning(store: CacheStore, node: Node) -> None:
    entry = node.put(store, key(1))
    entry.stdout.chmod(0o644)  # read-only in the cache (root writes anyway)
    with entry.stdout.open("r+b") as file:
        file.truncate(3)
    assert store.get(key(1)) is None
    assert len(store.warnings) == 1
    assert key(1)[:12] in store.warnings[0]
    assert "stdout.log" in store.warnings[0]
    assert "truncated" in store.warnings[0]


def test_a_file_altered_in_place_makes_the_entry_a_miss(store: CacheStore, node: Node) -> None:
    entry = node.put(store, key(1))
    entry.stderr.chmod(0o644)  # read-only in the cache (root writes anyway)
    entry.stderr.write_text("BUILD err\n")  # the same size
    assert store.get(key(1)) is None
    assert len(store.warnings) == 1
    assert "differs" in store.warnings[0]


def test_running_out_of_open_files_while_checking_an_entry_is_an_error_not_a_corrupt_entry(
    tmp_path: Path, node: Node
) -> None:
    def no_files_left(path: str | os.PathLike[str], *, quick: bool = False) -> bytes:
        raise OSError(errno.EMFILE, "Too many open files", os.fspath(path))

    node.put(CacheStore(tmp_path / "cache"), key(1))
    store = CacheStore(tmp_path / "cache", no_files_left)
    with pytest.raises(OSError, match="Too many open files"):
        store.get(key(1))
    assert store.warnings == []


def test_with_a_source_hasher_a_hit_reads_no_entry_file_whose_stat_is_unchanged(
    tmp_path: Path, node: Node, reads: list[str]
) -> None:
    store = CacheStore(tmp_path / "cache", SourceHasher().digest)
    node.put(store, key(1))
    for path in entry_files(store):
        backdate(path)
    assert store.get(key(1)) is not None
    before = len(reads)
    assert store.get(key(1)) is not None
    assert reads[before:] == []


def test_with_a_source_hasher_a_file_altered_in_place_is_still_a_miss(tmp_path: Path, node: Node) -> None:
    """Its mtime put back as it was: the ctime still moves, so the file is read again."""
    store = CacheStore(tmp_path / "cache", SourceHasher().digest)
    entry = node.put(store, key(1))
    for path in entry_files(store):
        backdate(path)
    assert store.get(key(1)) is not None
    stamp = entry.stderr.stat()
    after_tick(stamp.st_ctime_ns, tmp_path / "probe")
    entry.stderr.chmod(0o644)  # read-only in the cache (root writes anyway)
    entry.stderr.write_text("BUILD err\n")  # the same size
    os.utime(entry.stderr, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert store.get(key(1)) is None
    assert "differs" in store.warnings[0]


def test_expanding_sources_with_a_limit_stops_past_it(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d"):
        write(tmp_path / f"{name}.c")
    assert expand_sources(tmp_path, ["*.c"], limit=4) == ["a.c", "b.c", "c.c", "d.c"]
    with pytest.raises(MustRead):
        expand_sources(tmp_path, ["*.c"], limit=3)


def test_quick_a_small_file_never_read_is_read_at_once(tmp_path: Path, reads: list[str]) -> None:
    source = write(tmp_path / "a.c", "int x;")
    assert SourceHasher().digest(source, quick=True) == SourceHasher().digest(source)
    assert reads == [str(source), str(source)]


def test_quick_a_file_over_the_quick_read_size_is_not_read_but_must_be(tmp_path: Path, reads: list[str]) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * (cache.QUICK_READ + 1))
    with pytest.raises(MustRead):
        SourceHasher().digest(source, quick=True)
    assert reads == []


def test_quick_a_file_holding_more_than_its_stat_says_is_not_read_past_the_quick_read_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As a file that grows after its stat was taken: /proc's files say 0 bytes and hold more."""
    monkeypatch.setattr(cache, "QUICK_READ", 16)
    with pytest.raises(MustRead):
        SourceHasher().digest("/proc/self/status", quick=True)


def test_quick_a_file_whose_stat_is_unchanged_is_answered_from_what_is_known(tmp_path: Path, reads: list[str]) -> None:
    source = write(tmp_path / "a.c", "int x;")
    backdate(source)
    hasher = SourceHasher()
    digest = hasher.digest(source)
    assert hasher.digest(source, quick=True) == digest
    assert reads == [str(source)]


def known_store(tmp_path: Path, node: Node, files: tuple[str, ...] = ()) -> tuple[CacheStore, Entry]:
    """A store whose entry's files are all known to its hasher by their stat (old, and read once)."""
    store = CacheStore(tmp_path / "cache", SourceHasher().digest)
    entry = node.put(store, key(1), files=files)
    for path in entry_files(store):
        backdate(path)
    assert store.get(key(1)) is not None
    return store, entry


def test_quick_a_hit_whose_files_are_as_they_were_needs_no_read(tmp_path: Path, node: Node, reads: list[str]) -> None:
    store, _entry = known_store(tmp_path, node)
    before = len(reads)
    assert store.get(key(1), quick=True) is not None
    assert reads[before:] == []


def test_quick_an_altered_small_entry_file_is_read_and_judged_at_once(tmp_path: Path, node: Node) -> None:
    store, entry = known_store(tmp_path, node)
    after_tick(entry.stderr.stat().st_ctime_ns, tmp_path / "probe")
    entry.stderr.chmod(0o644)  # read-only in the cache (root writes anyway)
    entry.stderr.write_text("BUILD err\n")  # the same size
    assert store.get(key(1), quick=True) is None
    assert "differs" in store.warnings[0]


def test_quick_an_altered_large_entry_file_must_be_read_before_it_is_judged(
    tmp_path: Path, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, entry = known_store(tmp_path, node)
    after_tick(entry.stderr.stat().st_ctime_ns, tmp_path / "probe")
    entry.stderr.chmod(0o644)  # read-only in the cache (root writes anyway)
    entry.stderr.write_text("BUILD err\n")  # the same size
    monkeypatch.setattr(cache, "QUICK_READ", 4)  # every stream of the entry is larger
    with pytest.raises(MustRead):
        store.get(key(1), quick=True)
    assert store.get(key(1)) is None  # read: it differs
    assert "differs" in store.warnings[0]


def test_quick_an_entry_of_many_files_is_left_to_a_full_check(
    tmp_path: Path, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _entry = known_store(tmp_path, node)
    monkeypatch.setattr(cache, "QUICK_FILES", 2)  # stdout, stderr and the result are three
    with pytest.raises(MustRead):
        store.get(key(1), quick=True)
    assert store.get(key(1)) is not None


def test_quick_a_missing_output_is_not_written(tmp_path: Path, node: Node) -> None:
    write(node.cwd / "out.txt", "built")
    store, entry = known_store(tmp_path, node, files=("out.txt",))
    (node.cwd / "out.txt").unlink()
    with pytest.raises(MustRead):
        store.restore(entry, node.cwd, quick=True)
    assert not (node.cwd / "out.txt").exists()
    assert store.restore(entry, node.cwd) == ["out.txt"]


def test_quick_outputs_in_place_and_known_are_left_alone(tmp_path: Path, node: Node) -> None:
    output = write(node.cwd / "out.txt", "built")
    store, entry = known_store(tmp_path, node, files=("out.txt",))
    backdate(output)
    assert store.restore(entry, node.cwd) == []  # read once: now known by its stat
    assert store.restore(entry, node.cwd, quick=True) == []


def test_a_missing_declared_file_makes_the_entry_a_miss(store: CacheStore, node: Node) -> None:
    write(node.cwd / "a.txt")
    entry = node.put(store, key(1), files=("a.txt",))
    (entry.path / "files" / "a.txt").unlink()
    assert store.get(key(1)) is None
    assert "files/a.txt is missing" in store.warnings[0]


def test_an_entry_without_its_manifest_is_a_miss_with_a_warning(store: CacheStore, node: Node) -> None:
    """As an interrupted copy of the cache directory would leave it."""
    entry = node.put(store, key(1))
    (entry.path / "manifest.json").unlink()
    assert store.get(key(1)) is None
    assert len(store.warnings) == 1
    assert "manifest is missing" in store.warnings[0]


def test_a_corrupt_manifest_is_a_miss_with_a_warning(store: CacheStore, node: Node) -> None:
    entry = node.put(store, key(1))
    (entry.path / "manifest.json").write_text('{"format": 1, "key"')
    assert store.get(key(1)) is None
    assert "corrupt" in store.warnings[0]


def entry_of_a_file_renamed_to(name: str, store: CacheStore, node: Node) -> Entry:
    """An entry of ``a.txt`` whose manifest was altered to name the file ``name`` instead."""
    write(node.cwd / "a.txt")
    entry = node.put(store, key(1), files=("a.txt",))
    manifest = json.loads((entry.path / "manifest.json").read_text())
    manifest["files"] = [name]
    manifest["blobs"][f"files/{name}"] = manifest["blobs"].pop("files/a.txt")
    (entry.path / "manifest.json").write_text(json.dumps(manifest))
    return entry


def test_a_manifest_naming_a_file_outside_the_working_directory_is_a_miss(store: CacheStore, node: Node) -> None:
    entry_of_a_file_renamed_to("../a.txt", store, node)
    assert store.get(key(1)) is None
    assert "outside the working directory" in store.warnings[0]


def test_a_manifest_naming_a_file_with_a_nul_character_is_a_miss_and_prune_removes_it(
    store: CacheStore, node: Node
) -> None:
    entry = entry_of_a_file_renamed_to("a\u0000.txt", store, node)
    assert store.get(key(1), quick=True) is None
    assert "NUL character" in store.warnings[0]
    assert store.prune() == (1, pytest.approx(entry.size, abs=4096))
    assert not entry.path.exists()


@pytest.mark.parametrize("quick", [False, True])
def test_a_manifest_that_is_a_fifo_is_a_miss_not_a_wait(store: CacheStore, node: Node, quick: bool) -> None:
    """A cache can come from anywhere (a tar archive): opening a FIFO would wait for a writer forever."""
    entry = node.put(store, key(1))
    (entry.path / "manifest.json").unlink()
    os.mkfifo(entry.path / "manifest.json")
    assert store.get(key(1), quick=quick) is None
    assert "manifest cannot be read" in store.warnings[0]


def test_a_manifest_linked_to_a_device_is_a_miss(store: CacheStore, node: Node) -> None:
    entry = node.put(store, key(1))
    (entry.path / "manifest.json").unlink()
    (entry.path / "manifest.json").symlink_to("/dev/zero")
    assert store.get(key(1)) is None
    assert "not a regular file" in store.warnings[0]


def test_a_manifest_of_more_than_16_mib_is_a_miss_not_read(store: CacheStore, node: Node) -> None:
    entry = node.put(store, key(1))
    with (entry.path / "manifest.json").open("r+b") as file:
        file.truncate(17 << 20)  # sparse: no disk taken
    assert peak_memory(lambda: store.get(key(1))) < 1 << 20
    assert "far more than a manifest holds" in store.warnings[0]


def test_a_manifest_of_another_key_is_a_miss(store: CacheStore, node: Node) -> None:
    entry = node.put(store, key(1))
    other = store.root / "entries" / key(2)[:2] / key(2)
    other.parent.mkdir(parents=True, exist_ok=True)
    entry.path.rename(other)
    assert store.get(key(2)) is None
    assert "that of key" in store.warnings[0]


def test_an_entry_removed_as_soon_as_it_is_stored_is_an_oserror(
    store: CacheStore, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run's prune removed it between its rename into place and its reading back: not kept, no crash."""
    rename = Path.rename

    def renamed_then_pruned(self: Path, target: Any) -> Path:
        moved = rename(self, target)
        if Path(target).parent.parent.name == "entries":
            shutil.rmtree(target)
        return moved

    monkeypatch.setattr(Path, "rename", renamed_then_pruned)
    with pytest.raises(OSError, match="was removed as it was stored"):
        node.put(store, key(1))


def test_a_put_killed_midway_leaves_only_a_temp_dir_that_get_ignores(store: CacheStore, node: Node) -> None:
    entry = node.put(store, key(1))
    leftover = store.root / "tmp" / "put-1-dead"
    leftover.mkdir()
    (leftover / "stdout.log").write_text("half of the outp")  # no manifest: killed before it
    assert store.get(key(2)) is None
    assert store.entries() == [entry]
    assert store.warnings == []


def test_prune_removes_a_stale_temp_dir_and_keeps_a_fresh_one(store: CacheStore, node: Node) -> None:
    node.put(store, key(1))
    stale = store.root / "tmp" / "put-1-dead"
    fresh = store.root / "tmp" / "put-2-working"
    for leftover in (stale, fresh):
        write(leftover / "stdout.log", "0123456789")
    two_hours_ago = time.time() - 2 * HOUR
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert store.prune() == (0, 10)
    assert not stale.exists()
    assert fresh.exists()
    assert store.get(key(1)) is not None


def test_a_put_that_fails_leaves_nothing_behind(store: CacheStore, node: Node) -> None:
    node.put(store, key(1))
    with pytest.raises(FileNotFoundError):
        node.put(store, key(2), stdout=node.out / "missing.log")
    assert list((store.root / "tmp").iterdir()) == []
    assert store.get(key(2)) is None


@pytest.mark.parametrize("bad", ["../outside.txt", "/etc/passwd", "a/../../b", "."])
def test_put_refuses_a_declared_file_outside_the_working_directory(store: CacheStore, node: Node, bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad)):
        node.put(store, key(1), files=(bad,))
    assert not store.root.exists()


def test_put_refuses_a_declared_file_that_links_out_of_the_working_directory(
    store: CacheStore, node: Node, tmp_path: Path
) -> None:
    secret = write(tmp_path / "secret", "s3cret")
    (node.cwd / "innocent.txt").symlink_to(secret)
    with pytest.raises(ValueError, match="leads out of the working directory"):
        node.put(store, key(1), files=("innocent.txt",))


def test_putting_a_key_already_kept_keeps_the_first_entry(store: CacheStore, node: Node) -> None:
    first = node.put(store, key(1))
    write(node.stdout, "another run's output\n")
    second = node.put(store, key(1))
    assert second == first
    assert second.stdout.read_text() == "build out\n"


def test_putting_a_key_whose_entry_is_bad_replaces_it(store: CacheStore, node: Node) -> None:
    entry = node.put(store, key(1))
    entry.stdout.chmod(0o644)  # read-only in the cache (root writes anyway)
    entry.stdout.write_text("")
    write(node.stdout, "fresh output\n")
    node.put(store, key(1))
    got = store.get(key(1))
    assert got is not None
    assert got.stdout.read_text() == "fresh output\n"


def test_two_concurrent_puts_of_a_key_leave_one_valid_entry(
    store: CacheStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both runs copy their entry, then rename at the same moment: one wins, the other keeps the winner's."""
    both_ready = threading.Barrier(2, timeout=30)
    real_rename = Path.rename

    def rename_together(self: Path, target: Any) -> Any:
        if self.name.startswith("put-"):
            both_ready.wait()
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename_together)
    nodes = [Node(tmp_path / "one"), Node(tmp_path / "two")]
    results: list[Entry | BaseException] = [None, None]  # type: ignore[list-item]

    def put(n: int) -> None:
        try:
            results[n] = nodes[n].put(store, key(1))
        except BaseException as exc:
            results[n] = exc

    threads = [threading.Thread(target=put, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(result, Entry) for result in results), results
    assert results[0] == results[1]
    assert [p.name for p in (store.root / "entries" / key(1)[:2]).iterdir()] == [key(1)]
    assert list((store.root / "tmp").iterdir()) == []
    got = store.get(key(1))
    assert got == results[0]
    assert store.warnings == []


# --- restore -------------------------------------------------------------------------------------


def test_restore_writes_only_missing_or_different_files(store: CacheStore, node: Node, tmp_path: Path) -> None:
    for name in ("same.txt", "changed.txt", "gone.txt", "sub/deep.txt"):
        write(node.cwd / name, f"cached {name}")
    entry = node.put(store, key(1), files=("same.txt", "changed.txt", "gone.txt", "sub/deep.txt"))
    target = tmp_path / "checkout"
    write(target / "same.txt", "cached same.txt")
    write(target / "changed.txt", "edited by hand")
    backdate(target / "same.txt")
    before = (target / "same.txt").stat().st_mtime_ns
    assert store.restore(entry, target) == ["changed.txt", "gone.txt", "sub/deep.txt"]
    for name in ("same.txt", "changed.txt", "gone.txt", "sub/deep.txt"):
        assert (target / name).read_text() == f"cached {name}"
    assert (target / "same.txt").stat().st_mtime_ns == before
    assert store.restore(entry, target) == []


def test_restore_keeps_the_executable_bit(store: CacheStore, node: Node, tmp_path: Path) -> None:
    tool = write(node.cwd / "bin" / "tool", "#!/bin/sh\n")
    tool.chmod(0o755)
    entry = node.put(store, key(1), files=("bin/tool",))
    target = tmp_path / "checkout"
    store.restore(entry, target)
    assert stat.S_IMODE((target / "bin" / "tool").stat().st_mode) == 0o755


def test_restore_replaces_a_link_instead_of_writing_through_it(store: CacheStore, node: Node, tmp_path: Path) -> None:
    write(node.cwd / "out.txt", "cached")
    entry = node.put(store, key(1), files=("out.txt",))
    outside = write(tmp_path / "outside.txt", "untouched")
    target = tmp_path / "checkout"
    target.mkdir()
    (target / "out.txt").symlink_to(outside)
    assert store.restore(entry, target) == ["out.txt"]
    assert not (target / "out.txt").is_symlink()
    assert (target / "out.txt").read_text() == "cached"
    assert outside.read_text() == "untouched"


def linked_out(store: CacheStore, node: Node, tmp_path: Path) -> tuple[Entry, Path, Path]:
    """An entry of ``build/out.txt``, and a checkout whose ``build`` is a link to a directory outside it."""
    write(node.cwd / "build" / "out.txt", "cached")
    entry = node.put(store, key(1), files=("build/out.txt",))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = tmp_path / "checkout"
    target.mkdir()
    (target / "build").symlink_to(outside)
    return entry, target, outside


def test_restore_never_writes_through_a_directory_link_leading_out(
    store: CacheStore, node: Node, tmp_path: Path
) -> None:
    entry, target, outside = linked_out(store, node, tmp_path)
    with pytest.raises(OSError, match="outside the working directory"):
        store.restore(entry, target)
    assert list(outside.iterdir()) == []


def test_restore_leaves_alone_a_matching_file_behind_a_directory_link_leading_out(
    store: CacheStore, node: Node, tmp_path: Path
) -> None:
    """Only a write must land inside the working directory: a file already as cached needs none."""
    entry, target, outside = linked_out(store, node, tmp_path)
    write(outside / "out.txt", "cached")
    assert store.restore(entry, target) == []
    assert [path.name for path in outside.iterdir()] == ["out.txt"]


def test_restore_refuses_a_cached_file_that_changed_since_get(store: CacheStore, node: Node, tmp_path: Path) -> None:
    write(node.cwd / "out.txt", "cached")
    entry = node.put(store, key(1), files=("out.txt",))
    (entry.path / "files" / "out.txt").write_text("CACHED")
    target = tmp_path / "checkout"
    target.mkdir()
    with pytest.raises(OSError, match="no longer matches"):
        store.restore(entry, target)
    assert list(target.iterdir()) == []


def test_restoring_a_removed_entry_raises_oserror(store: CacheStore, node: Node, tmp_path: Path) -> None:
    write(node.cwd / "out.txt", "cached")
    entry = node.put(store, key(1), files=("out.txt",))
    store.prune(max_size=0)
    with pytest.raises(OSError, match="cannot be restored: it was removed") as caught:
        store.restore(entry, tmp_path / "checkout")
    assert caught.value.errno == errno.ENOENT


def test_restoring_a_removed_entry_whose_files_are_in_place_writes_nothing(store: CacheStore, node: Node) -> None:
    """What it holds is known from the manifest get read: files already as cached need nothing of it."""
    write(node.cwd / "out.txt", "cached")
    entry = node.put(store, key(1), files=("out.txt",))
    store.prune(max_size=0)
    assert store.restore(entry, node.cwd) == []


# --- entries and prune ---------------------------------------------------------------------------


def used(entry: Entry, hours_ago: float) -> None:
    when = time.time() - hours_ago * HOUR
    os.utime(entry.path, (when, when))


def test_entries_lists_good_entries_and_warns_of_bad_ones(store: CacheStore, node: Node) -> None:
    good = node.put(store, key(1))
    bad = node.put(store, key(2))
    (bad.path / "stderr.log").unlink()
    assert store.entries() == [good]
    assert len(store.warnings) == 1
    assert key(2)[:12] in store.warnings[0]


def test_a_hit_counts_as_a_use(store: CacheStore, node: Node) -> None:
    entry = node.put(store, key(1))
    used(entry, hours_ago=48)
    store.get(key(1))
    assert time.time() - entry.path.stat().st_mtime < HOUR


def test_a_hit_soon_after_the_last_one_writes_nothing(store: CacheStore, node: Node) -> None:
    entry = node.put(store, key(1))
    used(entry, hours_ago=cache.USED_RESOLUTION / HOUR / 2)
    before = entry.path.stat().st_mtime_ns
    store.get(key(1))
    assert entry.path.stat().st_mtime_ns == before


def test_prune_keeps_an_entry_hit_just_under_the_age_given_though_its_mark_is_older(
    store: CacheStore, node: Node
) -> None:
    entry = node.put(store, key(1))
    used(entry, hours_ago=(HOUR - cache.USED_RESOLUTION / 2) / HOUR)
    assert store.get(key(1)) is not None  # a use, not written: the mark is recent enough
    assert store.prune(older_than=HOUR - cache.USED_RESOLUTION) == (0, 0)
    assert store.get(key(1)) is not None


def test_a_cache_entrys_output_files_are_read_only(store: CacheStore, node: Node) -> None:
    """A hit's run may link them as its own logs: a write through one would change them all."""
    entry = node.put(store, key(1))
    assert [stat.S_IMODE(path.stat().st_mode) for path in (entry.stdout, entry.stderr)] == [0o444, 0o444]


def test_prune_by_size_keeps_the_most_recently_used(store: CacheStore, node: Node) -> None:
    entries = [node.put(store, key(n)) for n in range(4)]
    for n, entry in enumerate(entries):
        used(entry, hours_ago=10 - n)  # key(0) the least recently used ... key(3) the most
    assert store.get(key(0)) is not None  # now the most recently used
    size = entries[0].size
    removed, freed = store.prune(max_size=2 * size)
    assert (removed, freed) == (2, 2 * size)
    assert store.get(key(0)) is not None
    assert store.get(key(3)) is not None
    assert store.get(key(1)) is None
    assert store.get(key(2)) is None


def test_prune_by_size_removes_nothing_when_the_cache_is_small_enough(store: CacheStore, node: Node) -> None:
    entries = [node.put(store, key(n)) for n in range(3)]
    assert store.prune(max_size=sum(entry.size for entry in entries)) == (0, 0)
    assert len(store.entries()) == 3


def test_prune_by_age_removes_entries_unused_for_longer(store: CacheStore, node: Node) -> None:
    old, recent = node.put(store, key(1)), node.put(store, key(2))
    used(old, hours_ago=8 * 24)
    used(recent, hours_ago=6 * 24)
    assert store.prune(older_than=7 * 24 * HOUR) == (1, old.size)
    assert [entry.key for entry in store.entries()] == [key(2)]


def test_prune_removes_bad_entries_with_a_warning(store: CacheStore, node: Node) -> None:
    entry = node.put(store, key(1))
    entry.stdout.chmod(0o644)  # read-only in the cache (root writes anyway)
    entry.stdout.write_text("")
    assert store.prune()[0] == 1
    assert not entry.path.exists()
    assert len(store.warnings) == 1


def test_a_stale_state_file_temp_is_removed_by_prune(store: CacheStore, node: Node) -> None:
    node.put(store, key(1))
    leftover = write(store.root / ".stat-cache.json.abc123.tmp", "{")
    os.utime(leftover, (time.time() - 2 * HOUR,) * 2)
    assert store.prune() == (0, 1)
    assert not leftover.exists()


# --- memory --------------------------------------------------------------------------------------

BIG = 100 * (1 << 20)


def peak_memory(action: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_100_mib_stdout_is_stored_and_checked_without_reading_it_whole(
    store: CacheStore, node: Node, tmp_path: Path
) -> None:
    with node.stdout.open("wb") as file:
        file.truncate(BIG)  # sparse: reads as zeros, takes no disk until copied
    assert peak_memory(lambda: node.put(store, key(1))) < 8 * (1 << 20)
    assert peak_memory(lambda: store.get(key(1))) < 8 * (1 << 20)
    got = store.get(key(1))
    assert got is not None
    assert got.stdout.stat().st_size == BIG


def test_a_100_mib_source_is_digested_without_reading_it_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as file:
        file.truncate(BIG)
    assert peak_memory(lambda: SourceHasher().digest(big)) < 8 * (1 << 20)
