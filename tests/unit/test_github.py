"""The GitHub step summary stays under GitHub's 1 MiB limit, commands are escaped, annotations stay out of groups."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from wtflow import Command, Node, Workflow
from wtflow.events import (
    ArtifactInfo,
    NodeFinished,
    NodeOutput,
    NodeStarted,
    NodeStatus,
    RunFinished,
    RunStarted,
    RunStatus,
)
from wtflow.observers.console import GroupedPrinter
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


def test_error_annotations_never_land_inside_an_output_group(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # The grouped printer copies blocks from a thread; annotations go through it, in order.
    out = tmp_path / "stdout.log"
    out.write_text("line\n" * 20_000)  # a block long enough for a direct write to cut into it
    good, bad = Node("good", executable=Command("true")), Node("bad", executable=Command("false"))
    workflow = Workflow("gh", Node("root", parallel=True, children=[good, bad]))
    now = datetime.now(UTC)
    printer = GroupedPrinter(github=True)
    observer = GitHubObserver(environ={}, annotate=printer.annotate)

    async def run() -> None:
        await printer.aopen()
        for target in (observer, printer):
            target.notify(RunStarted("r", workflow, tmp_path, now, "host", 1))
        info = (ArtifactInfo("stdout", out, out.stat().st_size),)
        finished = NodeFinished("r", "good", "root/good", NodeStatus.SUCCEEDED, 0, now, now, 1, None, info)
        failed = NodeFinished("r", "bad", "root/bad", NodeStatus.FAILED, 1, now, now, 1, None, ())
        for event in (finished, failed):
            for target in (observer, printer):
                target.notify(event)
        await printer.aclose()

    asyncio.run(run())
    assert capfd.readouterr().out == (
        "::group::good (succeeded)\n" + "line\n" * 20_000 + "::endgroup::\n"
        "::error title=wtflow%3A node bad failed::exit code 1\n"
    )


def test_the_heartbeat_names_each_running_node_with_its_last_output_line(capfd: pytest.CaptureFixture[str]) -> None:
    slow, done = Node("slow", executable=Command("true")), Node("done", executable=Command("true"))
    workflow = Workflow("gh", Node("root", parallel=True, children=[slow, done]))
    now = datetime.now(UTC)
    printer = GroupedPrinter(github=True, heartbeat=3600)

    async def run() -> None:
        await printer.aopen()
        printer.notify(RunStarted("r", workflow, Path("/r"), now, "host", 1))
        for name in ("root", "slow", "done"):
            printer.notify(NodeStarted("r", name, name, now, 1))
        printer.notify(NodeOutput("r", "slow", "stdout", b"collected 5 items\ntest_a.py ..\n"))
        printer.notify(NodeFinished("r", "done", "root/done", NodeStatus.SUCCEEDED, 0, now, now, 1, None, ()))
        printer.beat()
        await printer.aclose()

    asyncio.run(run())
    assert capfd.readouterr().out == "wtflow: slow still running after 0s; last output: test_a.py ..\n"
