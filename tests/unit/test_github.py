"""The GitHub step summary stays under GitHub's 1 MiB limit, and commands are escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from wtflow import Command, Node, Workflow
from wtflow.events import ArtifactInfo, NodeFinished, NodeStatus, RunFinished, RunStarted, RunStatus
from wtflow.observers.github import SUMMARY_LIMIT, GitHubObserver, escape_data, escape_property


def test_summary_of_a_huge_failing_run_stays_under_one_mebibyte(tmp_path: Path) -> None:
    stderr = tmp_path / "stderr.log"
    stderr.write_text(("x" * 3000 + "\n") * 20)
    nodes = [Node(f"n{i}", executable=Command("false")) for i in range(400)]
    workflow = Workflow("big", Node("root", parallel=True, children=nodes))
    now = datetime.now(UTC)
    observer = GitHubObserver(environ={})
    observer.notify(RunStarted("r", workflow, tmp_path / "r", now, "host", 1))
    for node in nodes:
        info = (ArtifactInfo("stderr", stderr, stderr.stat().st_size),)
        observer.notify(NodeFinished("r", node.name, node.name, NodeStatus.FAILED, 1, now, now, 1, None, info))
    observer.notify(RunFinished("r", "big", RunStatus.FAILED, 1, now, now))
    text = observer.summary()
    assert len(text.encode()) <= SUMMARY_LIMIT
    assert text.endswith("(summary cut to stay under GitHub's 1 MiB limit; see the run's artifacts)\n")


def test_workflow_command_values_are_escaped() -> None:
    assert escape_data("50%\nnext\r") == "50%25%0Anext%0D"
    assert escape_property("a:b,c") == "a%3Ab%2Cc"
