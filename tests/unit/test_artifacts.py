"""Run ids, node directory names and the run file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from wtflow.artifacts import RunLayout, new_run_id, node_dir_names, safe_dir_name
from wtflow.observers.runfile import write_json_atomic


def test_run_ids_sort_by_start_time() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [new_run_id(start + timedelta(microseconds=n * 7919)) for n in range(200)]
    assert sorted(ids) == ids


def test_run_ids_at_the_same_instant_differ() -> None:
    instant = datetime(2026, 1, 1, tzinfo=UTC)
    assert len({new_run_id(instant) for _ in range(1000)}) == 1000


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "", ".", "..", "é名前", "x" * 500, "files", "a\0b", ".hidden"])
def test_node_dir_names_are_safe_for_any_name(name: str, tmp_path: Path) -> None:
    dir_name = safe_dir_name(name)
    assert dir_name
    assert "/" not in dir_name
    assert "\0" not in dir_name
    assert not dir_name.startswith(".")
    assert len(dir_name) <= 80
    assert dir_name.isascii()
    path = (tmp_path / dir_name).resolve()
    assert path.parent == tmp_path.resolve()


def test_safe_names_are_kept_as_they_are() -> None:
    assert safe_dir_name("Node_1.build-x") == "Node_1.build-x"


def test_names_that_clean_to_the_same_text_get_distinct_dirs() -> None:
    names = ["a/b", "a_b", "a b", "a:b"]
    dirs = node_dir_names(names)
    assert len(set(dirs.values())) == len(names)
    assert dirs["a_b"] == "a_b"


def test_layout_puts_streams_and_result_in_the_node_dir(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path, ["Node 1"])
    node_dir = layout.node_dir("Node 1")
    assert layout.path("Node 1", "stdout") == node_dir / "stdout.log"
    assert layout.path("Node 1", "stderr") == node_dir / "stderr.log"
    assert layout.path("Node 1", "result") == node_dir / "result.json"
    assert layout.path("Node 1", "report") == node_dir / "files" / "report"
    assert layout.run_file == tmp_path / "run.json"


def test_json_file_has_a_line_per_node_and_reads_back_unchanged(tmp_path: Path) -> None:
    data = {
        "run_id": "r1",
        "status": "succeeded",
        "nodes": {"a": {"status": "succeeded", "artifacts": {"stdout": {"size": 3}}}, 'b "quoted"': {"exit_code": 1}},
        "empty": {},
        "error": None,
    }
    path = tmp_path / "run.json"
    write_json_atomic(path, data)
    text = path.read_text()
    assert json.loads(text) == data
    assert '    "a": {"status": "succeeded", "artifacts": {"stdout": {"size": 3}}},\n' in text
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary file left


@pytest.mark.parametrize("name", ["run.json", "events.jsonl"])
def test_a_node_named_like_a_file_of_the_run_gets_a_directory_of_its_own(name: str) -> None:
    dir_name = safe_dir_name(name)
    assert dir_name != name
    assert dir_name.startswith(name)
    assert node_dir_names([name, "other"])[name] == dir_name
