"""The critical path: hand-made timings (seconds from the run's start) with known answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from wtflow import Command, Node, Workflow
from wtflow.critical import Timing, critical_path, of_run, workflow_timings


def node(name: str, start: float | None, finish: float, *deps: str, **kwargs: object) -> Timing:
    return Timing(name, start, finish, deps=deps, **kwargs)  # type: ignore[arg-type]


def test_a_diamond_goes_through_the_longer_branch() -> None:
    path = critical_path(
        [
            node("fetch", 0, 1),
            node("build", 1, 4, "fetch"),
            node("docs", 1, 2, "fetch"),
            node("pack", 4, 5, "build", "docs"),
        ]
    )
    assert path.names == ["fetch", "build", "pack"]
    assert (path.working, path.waiting, path.total) == (5, 0, 5)


def test_a_sequential_chain_is_its_own_critical_path() -> None:
    path = critical_path([node("a", 0, 1), node("b", 1, 3, "a"), node("c", 3, 6, "b")])
    assert path.names == ["a", "b", "c"]
    assert [step.duration for step in path.steps] == [1, 2, 3]


def test_of_parallel_branches_the_one_that_ends_last_is_critical() -> None:
    path = critical_path(
        [
            node("x1", 0, 1),
            node("x2", 1, 5, "x1"),
            node("y1", 0, 3),
            node("y2", 3, 4, "y1"),
        ]
    )
    assert path.names == ["x1", "x2"]


def test_a_wait_for_a_free_slot_counts_as_waiting() -> None:
    """One slot: c needs a, but b holds the slot until 5; c waited 3 s after a ended."""
    path = critical_path([node("a", 0, 2), node("b", 2, 5), node("c", 5, 6, "a")], finish=6)
    assert path.names == ["a", "c"]
    assert [step.waited for step in path.steps] == [0, 3]
    assert (path.working, path.waiting) == (3, 3)
    assert path.working + path.waiting + path.closing == path.total


def test_a_node_that_waited_for_a_slot_from_the_start_waited_that_long() -> None:
    path = critical_path([node("a", 0, 2), node("b", 2, 5)])
    assert path.names == ["b"]
    assert path.steps[0].waited == 2
    assert path.share(path.waiting) == pytest.approx(0.4)


def test_the_time_after_the_last_node_is_the_runs_closing() -> None:
    path = critical_path([node("a", 0.5, 2)], start=0, finish=2.25)
    assert (path.waiting, path.working, path.closing, path.total) == (0.5, 1.5, 0.25, 2.25)


def test_a_group_passes_on_what_it_waited_for() -> None:
    """Children wait for their group's start, which waited for setup; what needs the group waits for its subtree."""
    path = critical_path(
        [
            node("setup", 0, 1),
            node("tests", 1, 4, "setup", group=True),
            node("unit", 1, 2, "tests", parent="tests"),
            node("slow", 1, 4, "tests", parent="tests"),
            Timing("deploy", 4, 5, deps=(), subtrees=("tests",)),
        ]
    )
    assert path.names == ["setup", "slow", "deploy"]


def test_a_subtree_ends_with_its_last_descendant() -> None:
    path = critical_path(
        [
            node("a", 0, 1),
            node("a1", 1, 2, "a", parent="a"),
            node("a11", 2, 6, "a1", parent="a1"),
            Timing("b", 6, 7, deps=(), subtrees=("a",)),
        ]
    )
    assert path.names == ["a", "a1", "a11", "b"]


def test_a_skipped_node_takes_no_time_and_passes_on_what_it_waited_for() -> None:
    path = critical_path(
        [
            node("tests", 0, 3),
            node("deploy", None, 3, "tests"),  # skipped: the tests failed
            node("notify", 3, 4, "deploy"),  # if: always()
        ]
    )
    assert path.names == ["tests", "notify"]


def test_without_dependencies_each_step_is_what_finished_last_before_it_started() -> None:
    path = critical_path(
        [
            Timing("a", 0, 1),
            Timing("b", 1, 3),
            Timing("c", 0, 2),
            Timing("d", 3, 4),
        ]
    )
    assert path.names == ["a", "b", "d"]
    assert path.by_time


def test_found_by_dependencies_the_path_is_not_by_time() -> None:
    assert not critical_path([node("a", 0, 1), node("b", 1, 2, "a")]).by_time


def test_by_time_groups_take_no_place_on_the_path() -> None:
    path = critical_path([Timing("all", 0, 4, group=True), Timing("a", 0, 1, parent="all"), Timing("b", 1, 4)])
    assert path.names == ["a", "b"]


def test_dependencies_outside_the_run_are_ignored() -> None:
    """A --target run leaves out nodes the workflow names."""
    path = critical_path([node("b", 0, 2, "not-run")])
    assert path.names == ["b"]


def test_dependencies_that_wait_for_each_other_end_the_walk() -> None:
    path = critical_path([node("a", 0, 1, "b"), node("b", 1, 2, "a")])
    assert path.names == ["a", "b"]


def test_a_run_where_nothing_ran_has_an_empty_path() -> None:
    path = critical_path([node("a", None, 1)], finish=1)
    assert path.steps == ()
    assert path.describe() == "no node ran"


def test_describe_names_each_step_with_its_share() -> None:
    path = critical_path([node("fetch", 0, 1), node("build", 3, 9, "fetch"), node("test", 9, 10, "build")])
    assert path.describe() == "fetch 1.0s (10%) → build 6.0s (60%) → test 1.0s (10%); waiting 2.0s (20%)"


def test_describe_gives_short_steps_in_milliseconds_and_long_ones_in_minutes() -> None:
    path = critical_path([node("lint", 0, 0.25), node("e2e", 0.25, 125.25, "lint")])
    assert path.describe() == "lint 250ms (0%) → e2e 2m05s (100%)"


TREE = Workflow(
    "ci",
    Node(
        "ci",
        children=[
            Node("lint", executable=Command("true")),
            Node(
                "tests",
                parallel=True,
                children=[Node("unit", executable=Command("true")), Node("e2e", executable=Command("true"))],
            ),
            Node("docs", executable=Command("true"), needs=["lint"]),
        ],
    ),
)


def test_a_workflows_timings_say_what_each_node_waits_for() -> None:
    timings = {timing.name: timing for timing in workflow_timings(TREE, dict.fromkeys(TREE.nodes, (0, 1)))}
    assert timings["unit"].deps == ("tests",)  # its group's start
    assert timings["tests"].subtrees == ("lint",)  # a sequential parent's previous child
    assert timings["docs"].subtrees == ("lint", "tests")
    assert timings["tests"].group
    assert not timings["unit"].group
    assert timings["e2e"].parent == "tests"


def test_with_its_workflow_the_path_goes_through_the_slower_child_of_a_group() -> None:
    times = {
        "ci": (0.0, 10.0),
        "lint": (0.0, 2.0),
        "tests": (2.0, 8.0),
        "unit": (2.0, 3.0),
        "e2e": (2.0, 8.0),
        "docs": (8.0, 10.0),
    }
    path = critical_path(workflow_timings(TREE, times), finish=10.0)
    assert path.names == ["lint", "e2e", "docs"]


def test_of_run_takes_datetimes_and_leaves_out_what_never_finished() -> None:
    start = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)

    def at(seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)

    times = {
        "ci": (at(0), at(10)),
        "lint": (at(0), at(2)),
        "tests": (at(2), at(8)),
        "unit": (at(2), at(3)),
        "e2e": (at(2), at(8)),
        "docs": (at(8), None),
    }
    path = of_run(times, start, at(10), workflow=TREE)
    assert path.names == ["lint", "e2e"]
    assert path.closing == 2.0
