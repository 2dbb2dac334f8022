"""The store's layout and what each store keeps: run ids, directory names, attempts, sizes, a masked result.json."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import re
import resource
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from wtflow import artifacts
from wtflow.artifacts import (
    FileStore,
    MemoryStore,
    RunLayout,
    TooManyOpenFiles,
    create_run_dir,
    new_run_id,
    node_dir_names,
    open_files_advice,
    process_temp_dir,
    safe_dir_name,
)
from wtflow.events import ArtifactInfo
from wtflow.masking import Masker
from wtflow.model import Command, FileArtifact, Node, PyFunc

SECRET = "secret-value-0123456789"
MEMORY = Path("/nonexistent/wtflow-memory-store")


def give_back(value: object) -> object:
    return value


def digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


# -- run ids and directory names ----------------------------------------------------------------


def test_a_run_id_is_the_start_time_in_microseconds_then_eight_hex_digits() -> None:
    run_id = new_run_id(datetime(2026, 11, 29, 1, 2, 12, 123456, tzinfo=UTC))
    assert re.fullmatch(r"20261129T010212123456Z-[0-9a-f]{8}", run_id)


def test_a_run_id_without_a_time_is_the_current_utc_time() -> None:
    before = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    run_id = new_run_id()
    after = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    assert before <= run_id.split("-")[0] <= after


def test_a_run_id_is_in_utc_whatever_the_local_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: a local time would be half a day ahead
    time.tzset()
    try:
        before = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        run_id = new_run_id()
        after = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert before <= run_id.split("-")[0] <= after


def test_a_safe_name_starting_with_x_is_kept() -> None:
    assert safe_dir_name("X.node") == "X.node"


def test_unsafe_characters_become_one_underscore_plus_a_hash_of_the_name() -> None:
    assert safe_dir_name("a b/c") == f"a_b_c-{digest('a b/c')}"
    assert safe_dir_name("a  //b") == f"a_b-{digest('a  //b')}"


def test_leading_dots_are_dropped_from_a_directory_name() -> None:
    assert safe_dir_name("..hidden") == f"hidden-{digest('..hidden')}"


def test_a_name_with_nothing_safe_left_is_called_node() -> None:
    assert safe_dir_name("") == f"node-{digest('')}"
    assert safe_dir_name("...") == f"node-{digest('...')}"


def test_a_reserved_name_gets_a_hash() -> None:
    assert safe_dir_name("files") == f"files-{digest('files')}"
    assert safe_dir_name("run.json") == f"run.json-{digest('run.json')}"


def test_a_long_name_is_cut_to_64_characters_plus_a_hash() -> None:
    name = "x" * 100
    assert safe_dir_name(name) == "x" * 64 + f"-{digest(name)}"


def test_a_name_of_exactly_64_safe_characters_is_kept() -> None:
    assert safe_dir_name("y" * 64) == "y" * 64


def test_a_name_with_a_lone_surrogate_gets_a_hash_of_its_bytes() -> None:
    name = "a\ud800"
    assert safe_dir_name(name) == f"a_-{digest(name)}"


def test_names_cleaned_alike_are_numbered_from_two() -> None:
    collided = f"a_b-{digest('a b')}"
    assert node_dir_names(["a b", collided, "a_b"]) == {"a b": collided, collided: f"{collided}-2", "a_b": "a_b"}


def test_layout_puts_declared_files_under_files_with_a_safe_name(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path, ["build step"])
    node_dir = tmp_path / f"build_step-{digest('build step')}"
    assert layout.node_dir("build step") == node_dir
    assert layout.path("build step", "dist/out") == node_dir / "files" / f"dist_out-{digest('dist/out')}"
    assert layout.path("build step", "stderr") == node_dir / "stderr.log"
    assert layout.path("build step", "result") == node_dir / "result.json"


def test_layout_gives_the_same_path_when_asked_again(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path, ["a", "b"])
    assert layout.path("a", "stdout") == layout.path("a", "stdout") == tmp_path / "a" / "stdout.log"
    assert layout.path("b", "stdout") == tmp_path / "b" / "stdout.log"
    assert layout.path("a", "dist") == layout.path("a", "dist") == tmp_path / "a" / "files" / "dist"


def test_the_run_file_is_run_json_in_the_run_dir(tmp_path: Path) -> None:
    assert RunLayout(tmp_path, []).run_file == tmp_path / "run.json"


def test_create_run_dir_makes_missing_parent_directories(tmp_path: Path) -> None:
    run_dir = create_run_dir(tmp_path / "deep" / "artifacts", "run-1")
    assert run_dir == (tmp_path / "deep" / "artifacts" / "run-1").resolve()
    assert run_dir.is_dir()


def test_create_run_dir_accepts_an_existing_artifacts_dir(tmp_path: Path) -> None:
    create_run_dir(tmp_path, "run-1")
    assert create_run_dir(tmp_path, "run-2") == (tmp_path / "run-2").resolve()


def test_create_run_dir_refuses_an_existing_run(tmp_path: Path) -> None:
    create_run_dir(tmp_path, "run-1")
    with pytest.raises(FileExistsError):
        create_run_dir(tmp_path, "run-1")


def test_create_run_dir_without_an_artifacts_dir_uses_the_process_temp_dir() -> None:
    run_dir = create_run_dir(None, new_run_id())
    assert run_dir.parent == process_temp_dir().resolve()
    run_dir.rmdir()


def test_the_process_temp_dir_is_made_once_with_a_wtflow_prefix() -> None:
    assert process_temp_dir() is process_temp_dir()
    assert process_temp_dir().name.startswith("wtflow-")


# -- MemoryStore --------------------------------------------------------------------------------


def written(store: MemoryStore | FileStore, masker: Masker, attempts: list[tuple[bytes, bytes]]) -> None:
    """Run node ``a``'s attempts, each writing ``(stdout, stderr)``."""

    async def scenario() -> None:
        await store.open_run("run-1", ["a"], masker)
        for attempt, (out, err) in enumerate(attempts, start=1):
            writer = store.output("a", attempt, lambda _stream, _lines: None)
            await writer.write("stdout", out)
            await writer.write("stderr", err)
            await writer.aclose()

    asyncio.run(scenario())


def test_memory_store_data_holds_each_stream_by_node_and_name() -> None:
    store = MemoryStore()
    written(store, Masker(), [(b"out\n", b"err\n")])
    assert store.data == {("a", "stdout"): b"out\n", ("a", "stderr"): b"err\n"}


def test_memory_store_keeps_earlier_attempts_under_their_number() -> None:
    store = MemoryStore()
    written(store, Masker(), [(b"one\n", b"e1\n"), (b"two\n", b"e2\n"), (b"three\n", b"e3\n")])
    assert store.data == {
        ("a", "stdout.attempt-1"): b"one\n",
        ("a", "stderr.attempt-1"): b"e1\n",
        ("a", "stdout.attempt-2"): b"two\n",
        ("a", "stderr.attempt-2"): b"e2\n",
        ("a", "stdout"): b"three\n",
        ("a", "stderr"): b"e3\n",
    }


def test_memory_store_masks_stored_output() -> None:
    store = MemoryStore()
    written(store, Masker([SECRET]), [(f"pw {SECRET}\n".encode(), b"")])
    assert store.data[("a", "stdout")] == b"pw ***\n"


def test_memory_store_without_masking_stores_secrets() -> None:
    store = MemoryStore(mask_files=False)
    written(store, Masker([SECRET]), [(f"pw {SECRET}\n".encode(), b"")])
    assert store.data[("a", "stdout")] == f"pw {SECRET}\n".encode()


def test_memory_store_paths_are_made_up_under_the_run_id() -> None:
    store = MemoryStore()
    assert asyncio.run(store.open_run("run-1", ["a b"], Masker())) == MEMORY / "run-1"
    node_dir = MEMORY / "run-1" / f"a_b-{digest('a b')}"
    assert store.node_dir("a b") == node_dir
    assert store.path("a b", "stdout") == node_dir / "stdout.log"
    assert store.path("a b", "result") == node_dir / "result.json"
    assert store.path("a b", "dist") == node_dir / "dist"


def test_memory_store_infos_are_the_streams_written_with_their_sizes() -> None:
    store = MemoryStore()
    written(store, Masker(), [(b"12345", b"")])
    infos = store.infos(Node("a", executable=Command("true"), artifacts=[FileArtifact("dist", "dist")]))
    assert infos == (
        ArtifactInfo("stderr", MEMORY / "run-1" / "a" / "stderr.log", 0),
        ArtifactInfo("stdout", MEMORY / "run-1" / "a" / "stdout.log", 5),
    )


def test_memory_store_notes_only_nodes_with_declared_files_as_collected() -> None:
    store = MemoryStore()

    async def scenario() -> list[list[str]]:
        await store.open_run("run-1", ["a", "b"], Masker())
        plain = Node("a", executable=Command("true"))
        declaring = Node("b", executable=Command("true"), artifacts=[FileArtifact("dist", "dist")])
        return [await store.collect(plain, None), await store.collect(declaring, None)]

    assert asyncio.run(scenario()) == [[], []]
    assert store.collected == ["b"]


# -- FileStore ----------------------------------------------------------------------------------


def test_file_store_output_keeps_earlier_attempts_beside_the_last(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    written(store, Masker(), [(b"one\n", b"e1\n"), (b"two\n", b"e2\n"), (b"three\n", b"e3\n")])
    node_dir = store.node_dir("a")
    assert {path.name: path.read_bytes() for path in node_dir.iterdir()} == {
        "stdout.attempt-1.log": b"one\n",
        "stderr.attempt-1.log": b"e1\n",
        "stdout.attempt-2.log": b"two\n",
        "stderr.attempt-2.log": b"e2\n",
        "stdout.log": b"three\n",
        "stderr.log": b"e3\n",
    }


def test_file_store_output_makes_the_node_dir_before_the_process_starts(tmp_path: Path) -> None:
    store = FileStore(tmp_path)

    async def scenario() -> bool:
        await store.open_run("run-1", ["a"], Masker())
        writer = store.output("a", 1, lambda _stream, _lines: None)
        exists = store.node_dir("a").is_dir()
        await writer.aclose()
        return exists

    assert asyncio.run(scenario())


def test_file_store_output_makes_a_node_dir_removed_between_attempts(tmp_path: Path) -> None:
    store = FileStore(tmp_path)

    async def scenario() -> bytes:
        await store.open_run("run-1", ["a"], Masker())
        writer = store.output("a", 1, lambda _stream, _lines: None)
        await writer.aclose()
        for path in store.node_dir("a").iterdir():
            path.unlink()
        store.node_dir("a").rmdir()
        writer = store.output("a", 2, lambda _stream, _lines: None)
        await writer.write("stdout", b"again\n")
        await writer.aclose()
        return store.path("a", "stdout").read_bytes()

    assert asyncio.run(scenario()) == b"again\n"


def test_file_store_infos_give_stream_sizes_and_skip_missing_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    written(store, Masker(), [(b"12345", b"")])
    store.path("a", "stderr").unlink()
    infos = store.infos(Node("a", executable=Command("true"), artifacts=[FileArtifact("dist", "dist")]))
    assert infos == (ArtifactInfo("stdout", store.path("a", "stdout"), 5),)


def test_file_store_infos_give_the_bytes_of_collected_files(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "dist").mkdir(parents=True)
    (work / "dist" / "a.txt").write_bytes(b"abc")
    (work / "dist" / "b.txt").write_bytes(b"defg")
    store = FileStore(tmp_path / "artifacts")
    built = Node("a", executable=Command("true"), artifacts=[FileArtifact("dist", "dist")])

    async def scenario() -> list[str]:
        await store.open_run("run-1", ["a"], Masker())
        return await store.collect(built, work)

    assert asyncio.run(scenario()) == []
    assert [(info.name, info.size) for info in store.infos(built)] == [("dist", 7)]


def test_file_store_masks_stored_output_by_default(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    written(store, Masker([SECRET]), [(f"pw {SECRET}\n".encode(), b"")])
    assert store.path("a", "stdout").read_bytes() == b"pw ***\n"


def test_file_store_output_that_cannot_be_opened_fails_the_attempt(tmp_path: Path) -> None:
    store = FileStore(tmp_path)

    async def scenario() -> None:
        await store.open_run("run-1", ["a"], Masker())
        store.path("a", "stdout").mkdir(parents=True)  # a directory where the file should go
        writer = store.output("a", 1, lambda _stream, _lines: None)
        with pytest.raises(IsADirectoryError):
            await writer.ready()

    asyncio.run(scenario())


def test_file_store_infos_give_each_declared_artifact_its_own_bytes(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "one.txt").write_bytes(b"abc")
    (work / "two.txt").write_bytes(b"defgh")
    store = FileStore(tmp_path / "artifacts")
    built = Node(
        "a", executable=Command("true"), artifacts=[FileArtifact("one", "one.txt"), FileArtifact("two", "two.txt")]
    )

    async def scenario() -> list[str]:
        await store.open_run("run-1", ["a"], Masker())
        return await store.collect(built, work)

    assert asyncio.run(scenario()) == []
    assert [(info.name, info.size) for info in store.infos(built)] == [("one", 3), ("two", 5)]


def function_result(tmp_path: Path, result: object, masker: Masker, *, mask_files: bool = True) -> str:
    """``result.json`` of a function node after it was collected, as written by the function's process."""
    store = FileStore(tmp_path, mask_files=mask_files)
    func = Node("f", executable=PyFunc(give_back))

    async def scenario() -> list[str]:
        await store.open_run("run-1", ["f"], masker)
        store.node_dir("f").mkdir(parents=True)
        if result is not None:
            store.path("f", "result").write_text(json.dumps(result), encoding="utf-8")
        return await store.collect(func, tmp_path)

    assert asyncio.run(scenario()) == []
    path = store.path("f", "result")
    return path.read_text(encoding="utf-8") if path.exists() else ""


def test_a_function_result_has_its_secrets_masked(tmp_path: Path) -> None:
    result = {"token": SECRET, f"key-{SECRET}": [1, f"in {SECRET} list", {"deep": SECRET}], "n": 3, "none": None}
    masked = json.loads(function_result(tmp_path, result, Masker([SECRET])))
    assert masked == {"token": "***", "key-***": [1, "in *** list", {"deep": "***"}], "n": 3, "none": None}


def test_a_function_result_is_left_untouched_without_secrets_in_it(tmp_path: Path) -> None:
    text = '{"a":  [1, "plain"]}'
    store = FileStore(tmp_path)

    async def scenario() -> None:
        await store.open_run("run-1", ["f"], Masker([SECRET]))
        store.node_dir("f").mkdir(parents=True)
        store.path("f", "result").write_text(text, encoding="utf-8")
        await store.collect(Node("f", executable=PyFunc(give_back)), tmp_path)

    asyncio.run(scenario())
    assert store.path("f", "result").read_text(encoding="utf-8") == text
    assert sorted(path.name for path in store.node_dir("f").iterdir()) == ["result.json"]


def test_a_masked_function_result_leaves_no_temporary_file(tmp_path: Path) -> None:
    function_result(tmp_path, [SECRET], Masker([SECRET]))
    assert sorted(path.name for path in (tmp_path / "run-1" / "f").iterdir()) == ["result.json"]


def test_a_function_result_a_secret_escaped_in_json_is_masked(tmp_path: Path) -> None:
    masker = Masker(["sécret-value"])
    text = function_result(tmp_path, ["sécret-value"], masker)  # json.dumps writes \u00e9
    assert json.loads(text) == ["***"]


def test_a_function_result_is_kept_unmasked_when_files_are_not_masked(tmp_path: Path) -> None:
    assert json.loads(function_result(tmp_path, [SECRET], Masker([SECRET]), mask_files=False)) == [SECRET]


def test_a_function_that_returned_nothing_has_no_result_to_mask(tmp_path: Path) -> None:
    assert function_result(tmp_path, None, Masker([SECRET])) == ""


def test_a_result_that_is_not_json_is_left_as_it_is(tmp_path: Path) -> None:
    store = FileStore(tmp_path)

    async def scenario() -> None:
        await store.open_run("run-1", ["f"], Masker([SECRET]))
        store.node_dir("f").mkdir(parents=True)
        store.path("f", "result").write_text(f"not json {SECRET}", encoding="utf-8")
        await store.collect(Node("f", executable=PyFunc(give_back)), tmp_path)

    asyncio.run(scenario())
    assert store.path("f", "result").read_text(encoding="utf-8") == f"not json {SECRET}"


# -- open files advice --------------------------------------------------------------------------


def test_advice_for_the_system_wide_open_files_limit() -> None:
    assert open_files_advice(errno.ENFILE) == (
        "too many open files in the system (the kernel's limit, fs.file-max): "
        "run fewer nodes at once with --max-parallel"
    )


def test_advice_for_the_process_open_files_limit_names_the_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert open_files_advice(errno.EMFILE) == (
        f"too many open files: this process may have {soft:,} open (ulimit -n); "
        "raise the limit with 'ulimit -n', or run fewer nodes at once with --max-parallel"
    )


def test_too_many_open_files_reads_as_its_advice_alone() -> None:
    assert str(TooManyOpenFiles(errno.EMFILE, "raise the limit")) == "raise the limit"


def test_output_files_beyond_the_system_limit_give_the_system_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_more_files(paths: object) -> object:
        raise OSError(errno.ENFILE, "Too many open files in system")

    monkeypatch.setattr(artifacts, "_open_each", no_more_files)
    with pytest.raises(TooManyOpenFiles) as raised:
        artifacts._open_files((Path("unused"),))
    assert (raised.value.errno, str(raised.value)) == (errno.ENFILE, open_files_advice(errno.ENFILE))


def loop_errors_of(scenario: Callable[[], Coroutine[Any, Any, None]]) -> list[dict[str, Any]]:
    """What ``scenario`` left in the event loop's error log."""
    errors: list[dict[str, Any]] = []

    async def logged() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        await scenario()

    asyncio.run(logged())
    return errors


def test_output_files_that_cannot_be_opened_log_no_loop_error(tmp_path: Path) -> None:
    store = FileStore(tmp_path)

    async def scenario() -> None:
        await store.open_run("run-1", ["a"], Masker())
        store.path("a", "stdout").mkdir(parents=True)
        writer = store.output("a", 1, lambda _stream, _lines: None)
        with pytest.raises(IsADirectoryError):
            await writer.ready()

    assert loop_errors_of(scenario) == []


def test_collecting_declared_files_logs_no_loop_error(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_bytes(b"abc")
    store = FileStore(tmp_path / "artifacts")
    built = Node("a", executable=Command("true"), artifacts=[FileArtifact("one", "one.txt")])

    async def scenario() -> None:
        await store.open_run("run-1", ["a"], Masker())
        assert await store.collect(built, tmp_path) == []

    assert loop_errors_of(scenario) == []
