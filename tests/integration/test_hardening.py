"""Hardening, through the real engine: many mask values, odd secrets, hostile artifacts, odd node names."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Runner
from wtflow import Command, Engine, FileArtifact, Node, NodeStatus, Workflow, masking
from wtflow import artifacts as artifacts_module
from wtflow.events import NodeOutput
from wtflow.executors.base import BaseExecutor, Job, Outcome, OutputSink
from wtflow.output import MAX_PENDING_LINE


def stored(runner: Runner, node: str, stream: str = "stdout") -> bytes:
    assert runner.engine is not None
    assert runner.engine.result is not None
    return runner.engine.result[node].artifacts[stream].data


def status(runner: Runner, node: str) -> NodeStatus:
    assert runner.engine is not None
    assert runner.engine.result is not None
    return runner.engine.result[node].status


def files_of(runner: Runner, node: str, artifact: str) -> Path:
    assert runner.engine is not None
    assert runner.engine.result is not None
    return runner.engine.result[node].artifacts[artifact].path


def test_thousands_of_announced_values_are_masked_without_rebuilding_for_each(
    run_workflow: Runner, automaton_builds: list[int]
) -> None:
    """A node announcing 3,000 values beside a node that times out: both end as they should."""
    built = automaton_builds
    announce = 'for i in $(seq 3000); do echo "::add-mask::value-$i-secret"; echo "used value-$i-secret"; done'
    run_workflow(
        Node(
            "root",
            parallel=True,
            children=[
                Node("announce", executable=Command(announce)),
                Node("slow", executable=Command("sleep 30", timeout=1)),
            ],
        )
    )
    lines = stored(run_workflow, "announce").splitlines()
    assert len(lines) == 6000
    assert set(lines) == {b"::add-mask::***", b"used ***"}
    assert status(run_workflow, "slow") is NodeStatus.TIMED_OUT
    assert sum(built) < 3000 * 200  # rebuilding for each value would build 4.5 million


def test_a_secret_that_is_not_utf8_is_masked_and_the_run_goes_on(
    run_workflow: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(os.environb, b"RAW_SECRET", b"tok-\xff\xfe-raw")
    run_workflow(Node("leak", executable=Command('printf "got %s\\n" "$RAW_SECRET"')), secrets=("RAW_SECRET",))
    assert status(run_workflow, "leak") is NodeStatus.SUCCEEDED
    assert stored(run_workflow, "leak") == b"got ***\n"


class Chunks(BaseExecutor):
    """Writes each node's chunks of stdout one by one, as a process's pipe would deliver them."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        for chunk in self.chunks:
            await sink.write("stdout", chunk)
        return Outcome(exit_code=0)


def test_a_secret_across_the_cut_of_a_very_long_line_is_masked(
    run_workflow: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line too long to hold is passed on in pieces; a secret across a piece's end is still masked."""
    secret = "tok-0123456789-abcdef"
    monkeypatch.setenv("LONG_LINE_SECRET", secret)
    head = b"x" * (MAX_PENDING_LINE + 1) + secret[:8].encode()
    engine = Engine(
        Workflow("wf", Node("long", executable=Command("true")), secrets=["LONG_LINE_SECRET"]),
        run_workflow.config(),
        observers=[run_workflow.log],
        executor=Chunks([head, secret[8:].encode() + b" end\n"]),
    )
    engine.run()
    assert engine.result is not None
    assert engine.result["long"].artifacts["stdout"].data == b"x" * (MAX_PENDING_LINE + 1) + b"*** end\n"
    forwarded = b"".join(event.data for event in run_workflow.log.of(NodeOutput) if isinstance(event, NodeOutput))
    assert forwarded == b"x" * (MAX_PENDING_LINE + 1) + b"*** end\n"


def test_nodes_named_like_the_runs_own_files_run_and_leave_those_files_alone(run_workflow: Runner) -> None:
    run_workflow(
        Node(
            "root",
            children=[
                Node("run.json", executable=Command("echo one")),
                Node("events.jsonl", executable=Command("echo two")),
            ],
        )
    )
    assert status(run_workflow, "run.json") is NodeStatus.SUCCEEDED
    assert status(run_workflow, "events.jsonl") is NodeStatus.SUCCEEDED
    assert stored(run_workflow, "run.json") == b"one\n"
    assert stored(run_workflow, "events.jsonl") == b"two\n"
    assert run_workflow.engine is not None
    assert run_workflow.engine.result is not None
    run_dir = run_workflow.engine.result.run_dir
    assert (run_dir / "run.json").is_file()
    assert (run_dir / "events.jsonl").is_file()


def test_an_artifact_directory_never_holds_a_link_out_of_the_working_directory(
    run_workflow: Runner, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    make = "mkdir -p reports/sub && echo '<ok/>' > reports/sub/r.xml && ln -s /etc reports/sub/etc"
    run_workflow(
        Node("build", executable=Command(make, cwd=work), artifacts=[FileArtifact("reports", "reports")]),
    )
    assert status(run_workflow, "build") is NodeStatus.SUCCEEDED
    kept = files_of(run_workflow, "build", "reports") / "reports" / "sub"
    assert sorted(path.name for path in kept.iterdir()) == ["r.xml"]


def test_a_link_loop_in_the_working_directory_does_not_stop_collection_from_ending(
    run_workflow: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    listed: list[str] = []
    real = os.scandir

    def counting(path: Any = ".") -> Any:
        if str(path).startswith(str(work)):
            listed.append(str(path))
            if len(listed) > 1000:  # a walk through the loop would list without end
                raise AssertionError("the walk does not end")
        return real(path)

    monkeypatch.setattr(os, "scandir", counting)
    make = "mkdir -p out/sub && ln -s . out/a && ln -s / out/root && echo x > out/x.xml && echo y > out/sub/y.xml"
    run_workflow(
        Node("build", executable=Command(make, cwd=work), artifacts=[FileArtifact("xml", "out/**/*.xml")]),
    )
    assert status(run_workflow, "build") is NodeStatus.SUCCEEDED
    kept = files_of(run_workflow, "build", "xml") / "out"
    assert (kept / "x.xml").read_text() == "x\n"
    assert (kept / "sub" / "y.xml").read_text() == "y\n"
    assert not (kept / "a").exists()


def test_running_out_of_open_files_says_which_limit_and_what_to_do(
    run_workflow: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_more_files(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(artifacts_module, "open", no_more_files, raising=False)
    run_workflow(Node("a", executable=Command("true")))
    assert run_workflow.engine is not None
    assert run_workflow.engine.result is not None
    error = run_workflow.engine.result["a"].error or ""
    assert error.startswith("cannot store artifacts: too many open files: this process may have ")
    assert "ulimit -n" in error
    assert "--max-parallel" in error


def test_stopping_the_run_during_collection_stops_the_walk(
    run_workflow: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal cancels the run's task (``wtflow run`` does so on SIGTERM): a collection under way ends too."""
    work = tmp_path / "work"
    work.mkdir()
    release = threading.Event()
    engine = Engine(
        Workflow(
            "wf",
            Node(
                "build",
                executable=Command("mkdir -p out && touch out/1.txt out/2.txt", cwd=work),
                artifacts=[FileArtifact("txt", "out/*.txt")],
            ),
        ),
        run_workflow.config(),
        observers=[run_workflow.log],
    )

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        collecting = asyncio.Event()
        real = os.scandir

        def held(path: Any = ".") -> Any:
            if str(path).startswith(str(work)):
                loop.call_soon_threadsafe(collecting.set)
                release.wait()
            return real(path)

        monkeypatch.setattr(os, "scandir", held)
        run = asyncio.create_task(engine.run_async())
        await collecting.wait()
        run.cancel()  # what the signal handler does
        for _ in range(10):  # the cancellation reaches the node's task, which tells the walk to stop
            await asyncio.sleep(0)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await run
        await loop.shutdown_default_executor()  # whatever the walk still does, done

    try:
        asyncio.run(scenario())
    finally:
        release.set()
    assert engine.result is not None
    assert engine.result["build"].status is NodeStatus.CANCELLED
    assert not (engine.result.run_dir / "build" / "files").exists()


def test_skipped_declared_files_are_run_warnings(run_workflow: Runner, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    node = Node(
        "build", executable=Command("mkdir -p r && ln -s /etc r/etc", cwd=work), artifacts=[FileArtifact("r", "r")]
    )
    engine = run_workflow(node)
    assert engine.warnings == [
        "node 'build': artifact 'r': skipped r/etc: a symbolic link to /etc, outside the working directory"
    ]


def test_mask_values_past_the_cap_are_a_run_warning(run_workflow: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(masking, "MAX_VALUES", 5)
    engine = run_workflow(Node("a", executable=Command('for i in $(seq 7); do echo "::add-mask::value-$i"; done')))
    assert engine.warnings == ["more than 5 values to mask (the limit): 2 later values are not masked"]
