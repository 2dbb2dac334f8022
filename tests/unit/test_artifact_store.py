"""The artifact store: output held to whole lines and masked, declared files collected safely and within limits."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from wtflow import artifacts, collection
from wtflow.artifacts import FileStore, MemoryStore
from wtflow.masking import Masker
from wtflow.model import Command, FileArtifact, Node
from wtflow.output import MAX_PENDING_LINE

SECRET = "secret-value-0123456789"


def node(*declared: tuple[str, str]) -> Node:
    return Node("build", executable=Command("true"), artifacts=[FileArtifact(name, path) for name, path in declared])


def collect(store: FileStore, built: Node, cwd: Path) -> list[str]:
    async def scenario() -> list[str]:
        await store.open_run("run-1", [built.name], Masker())
        return await store.collect(built, cwd)

    return asyncio.run(scenario())


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "artifacts")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def kept(store: FileStore, name: str) -> Path:
    return store.path("build", name)


def tree(root: Path) -> dict[str, str]:
    """Every entry below ``root``: a file's text, ``-> target`` for a link, ``/`` for a directory."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = f"-> {path.readlink()}"
            elif path.is_dir():
                found[rel] = "/"
            else:
                found[rel] = path.read_text()
    return found


# -- output: whole lines, masked -------------------------------------------------------------


def write_all(chunks: list[bytes], masker: Masker) -> tuple[bytes, bytes]:
    """What the store kept and what was forwarded for ``chunks`` of stdout."""
    forwarded: list[bytes] = []

    async def scenario() -> bytes:
        store = MemoryStore()
        await store.open_run("run-1", ["a"], masker)
        writer = store.output("a", 1, lambda _stream, lines: forwarded.append(lines))
        for chunk in chunks:
            await writer.write("stdout", chunk)
        await writer.aclose()
        return store.data[("a", "stdout")]

    stored = asyncio.run(scenario())
    return stored, b"".join(forwarded)


def test_a_secret_across_the_cut_of_a_line_too_long_to_hold_is_masked() -> None:
    head = b"x" * MAX_PENDING_LINE + SECRET[:9].encode()
    stored, forwarded = write_all([head, SECRET[9:].encode() + b" tail\n"], Masker([SECRET]))
    assert stored == forwarded == b"x" * MAX_PENDING_LINE + b"*** tail\n"


def test_a_long_line_is_still_passed_on_before_its_newline() -> None:
    forwarded: list[bytes] = []

    async def scenario() -> None:
        store = MemoryStore()
        await store.open_run("run-1", ["a"], Masker([SECRET]))
        writer = store.output("a", 1, lambda _stream, lines: forwarded.append(lines))
        for _ in range(4):
            await writer.write("stdout", b"y" * MAX_PENDING_LINE)
        assert len(b"".join(forwarded)) >= 3 * MAX_PENDING_LINE  # no newline yet, most of it passed on
        await writer.aclose()

    asyncio.run(scenario())
    assert b"".join(forwarded) == b"y" * 4 * MAX_PENDING_LINE


def test_a_secret_split_over_many_chunks_of_a_long_line_is_masked() -> None:
    masker = Masker([SECRET])
    data = (b"z" * (MAX_PENDING_LINE + 5) + SECRET.encode()) * 3 + b"\n"
    chunks = [data[i : i + 7001] for i in range(0, len(data), 7001)]
    stored, forwarded = write_all(chunks, masker)
    assert stored == forwarded == (b"z" * (MAX_PENDING_LINE + 5) + b"***") * 3 + b"\n"


def test_output_files_that_hit_the_open_files_limit_say_which_limit_and_what_to_do(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_more_files(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EMFILE, "Too many open files")

    async def scenario() -> None:
        await store.open_run("run-1", ["a"], Masker())
        monkeypatch.setattr(artifacts, "open", no_more_files, raising=False)
        writer = store.output("a", 1, lambda _stream, _lines: None)
        with pytest.raises(OSError) as raised:
            await writer.ready()
        message = f"cannot store artifacts: {raised.value}"
        assert "too many open files" in message
        assert "ulimit -n" in message
        assert "--max-parallel" in message
        assert raised.value.errno == errno.EMFILE
        with pytest.raises(OSError, match="ulimit -n"):
            await writer.aclose()

    asyncio.run(scenario())


# -- declared files: links, special files ----------------------------------------------------


def test_a_link_out_of_the_working_directory_deep_in_a_directory_is_skipped_with_a_warning(
    store: FileStore, work: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0\n")
    (work / "reports" / "sub").mkdir(parents=True)
    (work / "reports" / "sub" / "result.xml").write_text("<ok/>")
    (work / "reports" / "sub" / "etc").symlink_to(outside)
    (work / "reports" / "abs").symlink_to(outside / "passwd")
    warnings = collect(store, node(("reports", "reports")), work)
    assert tree(kept(store, "reports")) == {
        "reports": "/",
        "reports/sub": "/",
        "reports/sub/result.xml": "<ok/>",
    }
    leaves = "outside the working directory"
    assert warnings == [
        f"artifact 'reports': skipped reports/abs: a symbolic link to {outside / 'passwd'}, {leaves}",
        f"artifact 'reports': skipped reports/sub/etc: a symbolic link to {outside}, {leaves}",
    ]


def test_a_matched_link_out_of_the_working_directory_is_skipped(store: FileStore, work: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.xml").write_text("host file")
    (work / "out").mkdir()
    (work / "out" / "leak.xml").symlink_to(tmp_path / "secret.xml")
    warnings = collect(store, node(("xml", "out/*.xml")), work)
    assert not kept(store, "xml").exists()
    assert warnings == [
        f"artifact 'xml': skipped out/leak.xml: a symbolic link to {tmp_path / 'secret.xml'}, "
        "outside the working directory"
    ]


def test_links_inside_the_working_directory_are_kept_as_relative_links(store: FileStore, work: Path) -> None:
    (work / "reports").mkdir()
    (work / "reports" / "a.txt").write_text("a")
    (work / "reports" / "relative").symlink_to("a.txt")
    (work / "reports" / "absolute").symlink_to(work / "reports" / "a.txt")
    (work / "reports" / "here").symlink_to(".")
    assert collect(store, node(("reports", "reports")), work) == []
    assert tree(kept(store, "reports")) == {
        "reports": "/",
        "reports/a.txt": "a",
        "reports/absolute": "-> a.txt",
        "reports/here": "-> .",
        "reports/relative": "-> a.txt",
    }


def test_a_matched_link_to_a_file_inside_is_copied_as_the_file(store: FileStore, work: Path) -> None:
    (work / "build").mkdir()
    (work / "build" / "report-123.xml").write_text("<report/>")
    (work / "latest.xml").symlink_to("build/report-123.xml")
    assert collect(store, node(("latest", "latest.xml")), work) == []
    assert tree(kept(store, "latest")) == {"latest.xml": "<report/>"}


def test_fifos_are_skipped_with_a_warning(store: FileStore, work: Path) -> None:
    (work / "reports").mkdir()
    os.mkfifo(work / "reports" / "pipe")
    (work / "reports" / "ok.txt").write_text("ok")
    warnings = collect(store, node(("reports", "reports")), work)
    assert tree(kept(store, "reports")) == {"reports": "/", "reports/ok.txt": "ok"}
    assert warnings == ["artifact 'reports': skipped reports/pipe: not a regular file (a device, FIFO or socket)"]


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device file needs root")
def test_device_files_are_skipped_with_a_warning(store: FileStore, work: Path) -> None:
    (work / "out").mkdir()
    # /dev/null: a copy that read a device would find it empty, not fill the disk as /dev/zero would
    os.mknod(work / "out" / "null.bin", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    warnings = collect(store, node(("bins", "out/*.bin")), work)
    assert not kept(store, "bins").exists()
    assert warnings == ["artifact 'bins': skipped out/null.bin: not a regular file (a device, FIFO or socket)"]


# -- declared files: loops and limits --------------------------------------------------------


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every directory listed (``os.scandir``); a walk that lists too many fails instead of running on."""
    listed: list[str] = []
    real = os.scandir

    def counting(path: Any = ".") -> Any:
        listed.append(str(path))
        if len(listed) > 1000:
            raise AssertionError("the walk does not end: more than 1000 directories listed")
        return real(path)

    monkeypatch.setattr(os, "scandir", counting)
    return listed


def test_a_link_loop_is_not_walked(store: FileStore, work: Path, listings: list[str]) -> None:
    (work / "out" / "sub").mkdir(parents=True)
    (work / "out" / "a").symlink_to(".")
    (work / "out" / "root").symlink_to("/")
    (work / "out" / "x.xml").write_text("x")
    (work / "out" / "sub" / "y.xml").write_text("y")
    assert collect(store, node(("xml", "out/**/*.xml")), work) == []
    assert len(listings) == 2  # out and out/sub, each once
    assert tree(kept(store, "xml")) == {"out": "/", "out/x.xml": "x", "out/sub": "/", "out/sub/y.xml": "y"}


def test_double_star_matches_as_glob_does(store: FileStore, work: Path) -> None:
    (work / "a" / "b").mkdir(parents=True)
    (work / "a" / ".hidden").mkdir()
    for path in ["top.txt", "a/one.txt", "a/b/two.txt", "a/.hidden/no.txt", "a/b/.no.txt", "a/b/three.log"]:
        (work / path).write_text(path)
    collect(store, node(("t", "**/*.txt")), work)
    assert sorted(p for p, v in tree(kept(store, "t")).items() if v != "/") == ["a/b/two.txt", "a/one.txt", "top.txt"]


def test_collection_stops_at_the_file_limit_with_a_warning(
    store: FileStore, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collection, "MAX_FILES", 5)
    (work / "out").mkdir()
    for n in range(20):
        (work / "out" / f"{n:02d}.txt").write_text("x")
    warnings = collect(store, node(("many", "out/*.txt")), work)
    assert len(list((kept(store, "many") / "out").iterdir())) == 5
    assert warnings == ["artifact collection stopped at 5 files (the limit): later files are not kept"]


def test_collection_stops_at_the_byte_limit_with_a_warning(
    store: FileStore, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collection, "MAX_BYTES", 3 << 20)
    (work / "out").mkdir()
    (work / "out" / "a.bin").write_bytes(b"a" * (2 << 20))
    (work / "out" / "b.bin").write_bytes(b"b" * (2 << 20))
    (work / "out" / "c.bin").write_bytes(b"c")
    built = node(("bins", "out/*.bin"))
    warnings = collect(store, built, work)
    copied = kept(store, "bins") / "out"
    assert sorted(path.name for path in copied.iterdir()) == ["a.bin", "b.bin"]
    assert (copied / "b.bin").stat().st_size == 1 << 20
    assert warnings == [
        "artifact collection stopped at 3 MiB (the limit): out/b.bin is cut short and later files are not kept"
    ]
    assert {info.name: info.size for info in store.infos(built)}["bins"] == 3 << 20


def test_collection_stops_at_the_time_limit_with_a_warning(
    store: FileStore, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collection, "MAX_SECONDS", -1.0)  # already past
    (work / "a.txt").write_text("a")
    warnings = collect(store, node(("a", "*.txt")), work)
    assert not kept(store, "a").exists()
    assert warnings == ["artifact collection stopped after -1 s (the limit): later files are not kept"]


def test_cancelling_collection_stops_the_walk(store: FileStore, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (work / "out").mkdir()
    for n in range(10):
        (work / "out" / f"{n}.txt").write_text("x")
    built = node(("many", "out/*.txt"))
    release = threading.Event()

    async def scenario() -> None:
        await store.open_run("run-1", [built.name], Masker())
        loop = asyncio.get_running_loop()
        walking = asyncio.Event()
        real = os.scandir

        def held(path: Any = ".") -> Any:
            loop.call_soon_threadsafe(walking.set)
            release.wait()
            return real(path)

        monkeypatch.setattr(os, "scandir", held)
        task = asyncio.create_task(store.collect(built, work))
        await walking.wait()
        task.cancel()
        await asyncio.sleep(0)  # the task learns it is cancelled, and tells the walk to stop
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await loop.shutdown_default_executor()  # whatever the walk still does, done

    try:
        asyncio.run(scenario())
    finally:
        release.set()
    assert not kept(store, "many").exists()


def test_sizes_of_declared_files_do_not_count_linked_files_twice(store: FileStore, work: Path) -> None:
    (work / "reports").mkdir()
    (work / "reports" / "a.txt").write_text("12345")
    (work / "reports" / "b.txt").symlink_to("a.txt")
    built = node(("reports", "reports"))
    collect(store, built, work)
    sizes = {info.name: info.size for info in store.infos(built)}
    assert sizes["reports"] == 5
