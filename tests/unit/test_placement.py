"""Where jobs run: this machine or a cluster, as each node says (``runs_on``), checked before the run starts."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import Path

import pytest

from wtflow import Command, ConfigError, Container, Node, Workflow
from wtflow.executors.base import BaseExecutor, Job, Outcome, OutputSink
from wtflow.executors.dispatch import PlacingExecutor


class Place(BaseExecutor):
    """Records what it was asked to check and run."""

    def __init__(self, worker: str | None = None) -> None:
        self.worker = worker
        self.checked: list[str] = []
        self.ran: list[str] = []
        self.closed = False

    async def preflight(self, workflow: Workflow, max_parallel: int) -> None:
        self.checked.append(workflow.name)

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        self.ran.append(job.node)
        return Outcome(0, worker=self.worker)

    async def aclose(self) -> None:
        self.closed = True

    def helper_pids(self) -> Collection[int]:
        return (4242,) if self.worker else ()


def _job(node: Node) -> Job:
    assert node.executable is not None
    return Job(
        "run", node.name, node.executable, {}, None, Path("/nowhere"), 1.0, runs_on=node.runs_on,
        resources=node.resources or {},
    )  # fmt: skip


NODES = [
    Node("here", Command("x"), runs_on="local"),
    Node("there", Command("x"), runs_on="dask"),
    Node("anywhere", Command("x")),
]
WORKFLOW = Workflow("wf", Node("root", children=NODES))


def test_with_a_cluster_nodes_run_there_unless_they_say_local() -> None:
    local, cluster = Place(), Place("tcp://w:1")
    placing = PlacingExecutor(local, cluster)

    async def run() -> list[Outcome]:
        await placing.preflight(WORKFLOW, 4)
        outcomes = [await placing.execute(_job(node), None) for node in NODES]  # type: ignore[arg-type]
        await placing.aclose()
        return outcomes

    outcomes = asyncio.run(run())
    assert (local.ran, cluster.ran) == (["here"], ["there", "anywhere"])
    assert [outcome.worker for outcome in outcomes] == [None, "tcp://w:1", "tcp://w:1"]
    assert (local.checked, cluster.checked) == (["wf"], ["wf"])
    assert (local.closed, cluster.closed) == (True, True)
    assert list(placing.helper_pids()) == [4242]


def test_without_a_cluster_a_node_asking_for_one_refuses_the_run() -> None:
    local = Place()
    with pytest.raises(ConfigError, match=r"node 'there' runs on Dask \(runs_on: dask\), but no Dask cluster"):
        asyncio.run(PlacingExecutor(local).preflight(WORKFLOW, 4))
    assert local.checked == []


def test_a_cluster_nobody_uses_is_not_connected_to() -> None:
    local, cluster = Place(), Place("tcp://w:1")
    only_here = Workflow("here", Node("root", children=[Node("a", Command("x"), runs_on="local")]))
    asyncio.run(PlacingExecutor(local, cluster).preflight(only_here, 4))
    assert (local.checked, cluster.checked) == (["here"], [])


def test_a_container_node_bound_for_the_cluster_needs_no_docker_engine_here() -> None:
    """This machine's preflight checks only the nodes that run here: no docker engine is asked about."""
    boxed = Node("boxed", Command("x", container=Container("img", pull="never")))
    workflow = Workflow("boxes", Node("root", children=[boxed, Node("a", Command("true"), runs_on="local")]))
    cluster = Place("tcp://w:1")
    asyncio.run(PlacingExecutor(cluster=cluster).preflight(workflow, 4))  # no engine here: it would raise
    assert cluster.checked == ["boxes"]
