"""Declared file artifacts: kept whenever their node ran, read as bytes when one file, as paths when several."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration import pyfuncs
from tests.integration.conftest import Runner
from wtflow import Command, FileArtifact, Node, NodeStatus, PyFunc


def _report(runner: Runner, shard_command: str, pattern: str, tmp_path: Path) -> dict[str, object]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    shard = Node(
        "shard",
        executable=Command(shard_command, cwd=work),
        continue_on_error=True,
        artifacts=[FileArtifact("junit", pattern)],
    )
    report = Node("report", executable=PyFunc(pyfuncs.reads_file_artifact, args=(shard.artifact("junit"),)))
    engine = runner(Node("root", children=[shard, report]))
    assert engine.result is not None
    assert engine.result["report"].status is NodeStatus.SUCCEEDED
    return json.loads(engine.result["report"].artifacts["result"].data)  # type: ignore[no-any-return]


def test_a_failed_nodes_file_artifact_is_kept_and_reads_as_its_bytes(run_workflow: Runner, tmp_path: Path) -> None:
    seen = _report(
        run_workflow,
        "mkdir -p out && echo '<testsuite failures=\"1\"/>' > out/junit.xml; exit 1",
        "out/*.xml",
        tmp_path,
    )
    assert seen == {"data": '<testsuite failures="1"/>\n', "paths": ["out/junit.xml"]}
    assert run_workflow.engine is not None
    assert run_workflow.engine.result is not None
    shard = run_workflow.engine.result["shard"]
    assert (shard.status, shard.exit_code) == (NodeStatus.FAILED, 1)
    assert shard.artifacts["junit"].path is not None


def test_a_glob_of_several_files_arrives_as_paths_and_data_says_to_use_them(
    run_workflow: Runner, tmp_path: Path
) -> None:
    seen = _report(run_workflow, "mkdir -p out && echo a > out/a.xml && echo b > out/b.xml", "out/*.xml", tmp_path)
    assert seen["paths"] == ["out/a.xml", "out/b.xml"]
    assert (
        seen["data"]
        == "ArtifactError: artifact 'junit' of node 'shard' is 2 files (out/a.xml, out/b.xml): read them through .paths"
    )


def test_a_file_artifact_a_failed_node_did_not_make_says_so_with_its_exit_code(
    run_workflow: Runner, tmp_path: Path
) -> None:
    seen = _report(run_workflow, "exit 1", "out/*.xml", tmp_path)
    assert seen["data"] == "ArtifactError: artifact 'junit' was not produced by shard (exit 1)"
    assert seen["paths"] == "ArtifactError: artifact 'junit' was not produced by shard (exit 1)"


def test_a_timed_out_nodes_file_artifact_is_kept(run_workflow: Runner, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    node = Node(
        "slow",
        executable=Command("echo partial > report.txt; exec sleep 30", cwd=work, timeout=0.5),
        artifacts=[FileArtifact("report", "report.txt")],
    )
    engine = run_workflow(node)
    assert engine.result is not None
    assert engine.result["slow"].status is NodeStatus.TIMED_OUT
    assert engine.result["slow"].artifacts["report"].data == b"partial\n"
