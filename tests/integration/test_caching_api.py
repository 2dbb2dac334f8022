"""Cached nodes through the Python API: ``Node(sources=..., outputs=..., cache=...)``, ``Engine`` and ``Config``.

Commands append to a marker file, so a test sees whether a process started; container nodes run
on the package's fake executor (the key is the scheduler's, whatever runs the node).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EventLog
from wtflow import (
    Artifact,
    Command,
    Config,
    Container,
    Engine,
    Node,
    NodeStatus,
    PyFunc,
    RunConfig,
    StorageConfig,
    Workflow,
)
from wtflow.cache import CacheStore
from wtflow.events import Event, NodeFinished, NodeOutput, NodeStarted
from wtflow.executors.fake import FakeExecutor, Step

# --- functions the nodes run (importable by their own processes) --------------------------------


def greet(name: str, punctuation: str = "!") -> dict[str, Any]:
    print(f"hello {name}{punctuation}")
    return {"greeted": name, "count": 1}


def greet_loudly(name: str, punctuation: str = "!") -> dict[str, Any]:
    print(f"HELLO {name.upper()}{punctuation}")
    return {"greeted": name.upper(), "count": 1}


def count_arguments(*args: Any, **kwargs: Any) -> int:
    return len(args) + len(kwargs)


def echo_bytes(artifact: Artifact) -> str:
    """The bytes it was given, as hex: what a later node saw of its upstream's stdout."""
    return artifact.data.hex()


def shout_file(artifact: Artifact) -> None:
    print(artifact.data.decode().strip().upper())


# --- helpers -------------------------------------------------------------------------------------


class Project:
    """A directory with sources, an artifacts directory and a cache; runs workflows in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.src = root / "src"
        self.cache = root / "cache"
        self.src.mkdir(parents=True)
        (self.src / "a.txt").write_text("alpha\n")
        self.log = EventLog()

    def command(self, node: str, script: str = "", **kwargs: Any) -> Command:
        """A command that records that ``node`` ran, then runs ``script``."""
        return Command(f"echo ran >> {node}.marker; {script or 'true'}", cwd=self.root, **kwargs)

    def times_ran(self, node: str) -> int:
        marker = self.root / f"{node}.marker"
        return len(marker.read_text().splitlines()) if marker.exists() else 0

    def config(self, *, force: bool = False, force_nodes: Sequence[str] = ()) -> Config:
        return Config(
            storage=StorageConfig(artifacts_dir=self.root / "artifacts", cache_dir=self.cache),
            run=RunConfig(kill_grace=2.0, force=force, force_nodes=tuple(force_nodes)),
        )

    def run(self, root: Node, *, executor: FakeExecutor | None = None, **config: Any) -> Engine:
        self.log = EventLog()
        engine = Engine(Workflow("wf", root), self.config(**config), observers=[self.log], executor=executor)
        asyncio.run(engine.run_async())
        return engine


def status(engine: Engine, node: str) -> NodeStatus:
    assert engine.result is not None
    return engine.result[node].status


def artifact(engine: Engine, node: str, name: str) -> bytes:
    assert engine.result is not None
    return engine.result[node].artifacts[name].data


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.delenv("WTFLOW_CACHE_DIR", raising=False)
    return Project(tmp_path / "project")


# --- hits ----------------------------------------------------------------------------------------


def test_a_node_with_sources_is_cached_on_the_second_run(project: Project) -> None:
    build = Node("build", executable=project.command("build", "echo built"), sources=["src/**"])
    first = project.run(build)
    second = project.run(build)
    assert (status(first, "build"), status(second, "build")) == (NodeStatus.SUCCEEDED, NodeStatus.CACHED)
    assert project.times_ran("build") == 1
    assert artifact(second, "build", "stdout") == b"built\n"


class OpensGateWhenFinished(EventLog):
    """Opens ``gate`` once ``node`` has finished."""

    def __init__(self, node: str, gate: asyncio.Event) -> None:
        super().__init__()
        self.node, self.gate = node, gate

    def notify(self, event: Event) -> None:
        super().notify(event)
        if isinstance(event, NodeFinished) and event.node == self.node:
            self.gate.set()


def test_a_hit_takes_no_place_among_the_nodes_running_at_once(project: Project) -> None:
    """max_parallel 1, and the one place held by a node that ends only once the cached node has ended."""
    build = Node("build", executable=project.command("build"), sources=["src/**"])
    project.run(Node("all", parallel=True, children=[Node("hold", executable=Command("true")), build]))

    async def second_run() -> EventLog:
        gate = asyncio.Event()
        log = OpensGateWhenFinished("build", gate)
        root = Node("all", parallel=True, children=[Node("hold", executable=Command("true")), build])
        workflow = Workflow("wf", root, max_parallel=1)
        executor = FakeExecutor({"hold": Step(gate=gate)})
        engine = Engine(workflow, project.config(), observers=[log], executor=executor)
        await asyncio.wait_for(engine.run_async(), timeout=30)  # waiting for a place, the hit would never end
        return log

    log = asyncio.run(second_run())
    finished = [(event.node, event.status) for event in log.of(NodeFinished)]
    assert finished[:2] == [("build", NodeStatus.CACHED), ("hold", NodeStatus.SUCCEEDED)]


def test_a_hit_ends_the_run_with_exit_code_0(project: Project) -> None:
    build = Node("build", executable=project.command("build"), sources=["src/*.txt"])
    project.run(build)
    engine = Engine(Workflow("wf", build), project.config())
    assert engine.run() == 0
    assert status(engine, "build") is NodeStatus.CACHED


def test_the_events_of_a_hit_say_where_its_output_came_from(project: Project) -> None:
    build = Node("build", executable=project.command("build", "echo built; echo warned >&2"), sources=["src/**"])
    project.run(build)
    project.run(build)
    [started] = [event for event in project.log.of(NodeStarted) if event.node == "build"]
    [finished] = [event for event in project.log.of(NodeFinished) if event.node == "build"]
    output = [(event.stream, event.data, event.replayed) for event in project.log.of(NodeOutput)]
    [entry] = CacheStore(project.cache).entries()
    assert started.replaying == "cached"
    assert (finished.status, finished.reused_from) == (NodeStatus.CACHED, entry.key)
    assert finished.saved is not None
    assert output == [("stdout", b"built\n", True), ("stderr", b"warned\n", True)]


def test_the_cache_is_kept_where_storage_cache_dir_says(project: Project) -> None:
    project.run(Node("build", executable=project.command("build"), sources=["src/**"]))
    assert [entry.node for entry in CacheStore(project.cache).entries()] == ["build"]


def test_without_a_config_the_engine_reads_wtflow_cache_dir(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WTFLOW_CACHE_DIR", str(tmp_path / "from-env"))
    monkeypatch.delenv("WTFLOW_ARTIFACTS_DIR", raising=False)
    monkeypatch.delenv("WTFLOW_DB_URL", raising=False)
    build = Node("build", executable=project.command("build"), sources=["src/**"])
    assert Engine(Workflow("wf", build)).run() == 0
    assert [entry.node for entry in CacheStore(tmp_path / "from-env").entries()] == ["build"]


def test_cache_true_caches_a_node_without_sources(project: Project) -> None:
    build = Node("build", executable=project.command("build"), cache=True)
    project.run(build)
    assert status(project.run(build), "build") is NodeStatus.CACHED
    assert project.times_ran("build") == 1


def test_cache_false_runs_a_node_with_sources_every_time(project: Project) -> None:
    build = Node("build", executable=project.command("build"), sources=["src/**"], cache=False)
    project.run(build)
    assert status(project.run(build), "build") is NodeStatus.SUCCEEDED
    assert project.times_ran("build") == 2
    assert not project.cache.exists()


def test_a_hit_restores_the_declared_outputs(project: Project) -> None:
    build = Node(
        "build",
        executable=project.command("build", "mkdir -p dist/sub && cp src/a.txt dist/sub/a.txt"),
        sources=["src/**"],
        outputs=["dist"],
    )
    project.run(build)
    (project.root / "dist" / "sub" / "a.txt").unlink()
    assert status(project.run(build), "build") is NodeStatus.CACHED
    assert (project.root / "dist" / "sub" / "a.txt").read_text() == "alpha\n"


def backdate_everything(root: Path) -> None:
    """Every file below ``root`` made a day old: old enough for the stat cache to trust its stat."""
    old = time.time_ns() - 86_400 * 10**9
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(old, old))


def outputs_node(project: Project) -> Node:
    return Node(
        "build",
        executable=project.command("build", "mkdir -p dist && cp src/a.txt dist/a.txt; echo built"),
        sources=["src/**"],
        outputs=["dist"],
    )


@pytest.mark.usefixtures("trusted_stats")
def test_a_hit_whose_files_are_as_they_were_reads_no_content(project: Project, reads: list[str]) -> None:
    build = outputs_node(project)
    project.run(build)
    backdate_everything(project.root)
    project.run(build)  # reads what the utime changed, and learns the files' stat
    reads.clear()
    engine = project.run(build)
    assert status(engine, "build") is NodeStatus.CACHED
    assert artifact(engine, "build", "stdout") == b"built\n"
    assert reads == []


@pytest.mark.usefixtures("trusted_stats")
def test_a_hit_whose_output_is_missing_restores_it_though_everything_else_is_known(project: Project) -> None:
    build = outputs_node(project)
    project.run(build)
    backdate_everything(project.root)
    project.run(build)
    (project.root / "dist" / "a.txt").unlink()
    assert status(project.run(build), "build") is NodeStatus.CACHED
    assert (project.root / "dist" / "a.txt").read_text() == "alpha\n"


def test_a_later_function_reading_a_hits_stdout_gets_the_same_bytes(project: Project) -> None:
    build = Node("build", executable=project.command("build", "printf 'line one\\nno newline'"), sources=["src/**"])
    read = Node("read", executable=PyFunc(echo_bytes, args=(build.stdout_artifact,)))
    root = Node("root", children=[build, read])
    first = project.run(root)
    second = project.run(root)
    assert status(second, "build") is NodeStatus.CACHED
    assert status(second, "read") is NodeStatus.SUCCEEDED
    seen = [json.loads(artifact(engine, "read", "result")) for engine in (first, second)]
    assert seen == [b"line one\nno newline".hex()] * 2


def test_a_cached_function_keeps_its_result_and_outputs(project: Project) -> None:
    hello = Node("hello", executable=PyFunc(greet, args=("ada",)), cache=True)
    show = Node(
        "show", executable=Command("echo ${{ needs.hello.outputs.greeted }}", cwd=project.root), needs=["hello"]
    )
    root = Node("root", parallel=True, children=[hello, show])
    project.run(root)
    engine = project.run(root)
    assert status(engine, "hello") is NodeStatus.CACHED
    assert json.loads(artifact(engine, "hello", "result")) == {"greeted": "ada", "count": 1}
    assert artifact(engine, "hello", "stdout") == b"hello ada!\n"
    assert artifact(engine, "show", "stdout") == b"ada\n"


# --- what the key covers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (PyFunc(greet, args=("ada",)), PyFunc(greet, args=("grace",))),
        (PyFunc(greet, args=("ada",)), PyFunc(greet, args=("ada",), kwargs={"punctuation": "?"})),
        (PyFunc(greet, args=("ada",)), PyFunc(greet_loudly, args=("ada",))),
    ],
    ids=["an argument", "a keyword argument", "the function"],
)
def test_a_change_to_a_function_node_runs_it_again(project: Project, before: PyFunc, after: PyFunc) -> None:
    project.run(Node("hello", executable=before, cache=True))
    assert status(project.run(Node("hello", executable=before, cache=True)), "hello") is NodeStatus.CACHED
    assert status(project.run(Node("hello", executable=after, cache=True)), "hello") is NodeStatus.SUCCEEDED


def test_a_function_reading_a_cached_producer_runs_again_when_the_producers_source_changes(project: Project) -> None:
    build = Node("build", executable=project.command("build", "cat src/a.txt"), sources=["src/**"])
    shout = Node("shout", executable=PyFunc(shout_file, args=(build.stdout_artifact,)), cache=True)
    root = Node("root", children=[build, shout])
    project.run(root)
    assert status(project.run(root), "shout") is NodeStatus.CACHED
    (project.src / "a.txt").write_text("beta\n")
    engine = project.run(root)
    assert (status(engine, "build"), status(engine, "shout")) == (NodeStatus.SUCCEEDED, NodeStatus.SUCCEEDED)
    assert artifact(engine, "shout", "stdout") == b"BETA\n"


def test_a_function_reading_an_uncached_producer_runs_again_when_its_output_changes(project: Project) -> None:
    """The bytes a function is given are an input like a source, whether or not their producer is cached."""
    value = project.root / "value.txt"
    value.write_text("one\n")
    up = Node("up", executable=Command(["cat", str(value)]))
    shout = Node("shout", executable=PyFunc(shout_file, args=(up.stdout_artifact,)), cache=True)
    root = Node("root", children=[up, shout])
    project.run(root)
    value.write_text("two\n")
    engine = project.run(root)
    assert artifact(engine, "shout", "stdout") == b"TWO\n"


CONTAINER = Container(image="busybox:1.36")
CONTAINER_CHANGES = {
    "image": Container(image="busybox:1.37"),
    "env": Container(image="busybox:1.36", env={"MODE": "fast"}),
    "volumes": Container(image="busybox:1.36", volumes=["./data:/data:ro"]),
    "workdir": Container(image="busybox:1.36", workdir="/src"),
    "network": Container(image="busybox:1.36", network="none"),
    "user": Container(image="busybox:1.36", user="1000:1000"),
}


@pytest.mark.parametrize("changed", CONTAINER_CHANGES.values(), ids=CONTAINER_CHANGES.keys())
def test_a_change_to_the_container_runs_the_node_again(project: Project, changed: Container) -> None:
    def node(container: Container) -> Node:
        return Node("unit", executable=Command("make test", container=container, cwd=project.root), sources=["src/**"])

    executor = FakeExecutor({"unit": Step(stdout=b"tested\n")})
    project.run(node(CONTAINER), executor=executor)
    project.run(node(CONTAINER), executor=executor)
    project.run(node(changed), executor=executor)
    assert executor.steps["unit"].calls == 2
    assert status(project.run(node(changed), executor=executor), "unit") is NodeStatus.CACHED


# --- force ---------------------------------------------------------------------------------------


@pytest.fixture
def two(project: Project) -> Node:
    root = Node(
        "root",
        parallel=True,
        children=[
            Node("build", executable=project.command("build"), sources=["src/**"]),
            Node("test", executable=project.command("test"), sources=["src/**"]),
        ],
    )
    project.run(root)
    return root


def test_run_config_force_runs_every_cached_node(project: Project, two: Node) -> None:
    engine = project.run(two, force=True)
    assert (status(engine, "build"), status(engine, "test")) == (NodeStatus.SUCCEEDED, NodeStatus.SUCCEEDED)
    assert (project.times_ran("build"), project.times_ran("test")) == (2, 2)


def test_run_config_force_nodes_runs_only_those(project: Project, two: Node) -> None:
    engine = project.run(two, force_nodes=["test"])
    assert (status(engine, "build"), status(engine, "test")) == (NodeStatus.CACHED, NodeStatus.SUCCEEDED)


# --- what never fills the cache, and faults ------------------------------------------------------


def test_a_node_that_failed_does_not_fill_the_cache(project: Project) -> None:
    build = Node("build", executable=project.command("build", "exit 1"), sources=["src/**"])
    project.run(build)
    assert status(project.run(build), "build") is NodeStatus.FAILED
    assert project.times_ran("build") == 2
    assert CacheStore(project.cache).entries() == []


def test_a_node_allowed_to_fail_does_not_fill_the_cache(project: Project) -> None:
    build = Node("build", executable=project.command("build", "exit 1"), sources=["src/**"], continue_on_error=True)
    project.run(build)
    project.run(build)
    assert project.times_ran("build") == 2
    assert CacheStore(project.cache).entries() == []


def test_a_retried_node_that_ends_succeeding_fills_the_cache(project: Project) -> None:
    from wtflow import Retry

    script = '[ "$(wc -l < build.marker)" -ge 2 ]'  # fails on its first attempt only
    build = Node("build", executable=project.command("build", script), sources=["src/**"], retries=Retry(max=1))
    project.run(build)
    assert status(project.run(build), "build") is NodeStatus.CACHED
    assert project.times_ran("build") == 2


def test_a_damaged_entry_is_a_miss_with_one_engine_warning(project: Project) -> None:
    build = Node("build", executable=project.command("build", "echo built"), sources=["src/**"])
    project.run(build)
    [entry] = CacheStore(project.cache).entries()
    entry.stdout.chmod(0o644)  # read-only in the cache (root writes anyway)
    entry.stdout.write_text("x")
    engine = project.run(build)
    assert status(engine, "build") is NodeStatus.SUCCEEDED
    unusable = [warning for warning in engine.warnings if "is unusable" in warning]
    why = "stdout.log holds 1 bytes, not 6 (truncated or altered)"
    assert unusable == [f"cache entry {entry.key[:12]} is unusable, treated as a miss: {why}"]


@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux's /proc/self/mem")
def test_a_source_that_cannot_be_read_fails_the_node_naming_it(project: Project) -> None:
    (project.src / "mem.txt").symlink_to("/proc/self/mem")
    engine = project.run(Node("build", executable=project.command("build"), sources=["src/**"]))
    assert engine.result is not None
    assert engine.result["build"].status is NodeStatus.FAILED
    assert engine.result["build"].error == "source src/mem.txt cannot be read: Input/output error"
    assert project.times_ran("build") == 0


def test_outputs_matching_nothing_is_an_engine_warning(project: Project) -> None:
    engine = project.run(Node("build", executable=project.command("build"), sources=["src/**"], outputs=["dist/*"]))
    assert status(engine, "build") is NodeStatus.SUCCEEDED
    assert "node 'build': outputs dist/* matched no file after the node succeeded" in engine.warnings


def test_a_node_whose_sources_change_while_it_runs_is_not_kept(project: Project) -> None:
    """It may have read either version: its result must not answer for the sources as they were checked."""
    build = Node("build", executable=project.command("build", "echo more >> src/a.txt"), sources=["src/**"])
    engine = project.run(build)
    assert status(engine, "build") is NodeStatus.SUCCEEDED
    assert (
        "node 'build': not kept in the cache: its sources changed while it ran; the next run runs it again"
        in engine.warnings
    )
    assert CacheStore(project.cache).entries() == []


def test_a_cached_function_with_arguments_json_cannot_hold_runs(project: Project) -> None:
    """Tuple keys, sets and NaN are arguments like others: they make a key, and the node runs, then hits."""
    arguments = {"table": {(1, 2): 3}, "tags": {"b", "a"}, "scale": float("nan")}
    node = Node("count", executable=PyFunc(count_arguments, kwargs=arguments), cache=True)
    first, second = project.run(node), project.run(node)
    assert (status(first, "count"), status(second, "count")) == (NodeStatus.SUCCEEDED, NodeStatus.CACHED)
