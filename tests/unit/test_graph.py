"""The run order derived from a workflow, its plans (``stages``, ``--target`` subsets) and its drawings."""

from __future__ import annotations

import pytest

from wtflow import Command, FileArtifact, Node, PyFunc, Workflow, WorkflowError
from wtflow.graph import SELF, TREE, dependencies, dot, edges, find_cycle, mermaid, stages, subset


def echo(*_: object) -> None:
    pass


def cmd(name: str, **kwargs: object) -> Node:
    return Node(name=name, executable=Command("true"), **kwargs)  # type: ignore[arg-type]


def ci() -> Workflow:
    """A group with a build, parallel checks (one needs the build) and a report reading the build's output."""
    build = cmd("build")
    checks = Node("checks", parallel=True, children=[cmd("lint"), cmd("unit", needs=["build"])])
    report = Node("report", executable=PyFunc(echo, args=(build.stdout_artifact,)))
    return Workflow("ci", Node("ci", children=[build, checks, report]))


# -- the run order ----------------------------------------------------------------------------


def test_every_vertex_waits_for_its_parent_its_previous_sibling_needs_and_producers() -> None:
    assert dependencies(ci()) == {
        ("ci", SELF): set(),
        ("ci", TREE): {("ci", SELF), ("build", TREE), ("checks", TREE), ("report", TREE)},
        ("build", SELF): {("ci", SELF)},
        ("build", TREE): {("build", SELF)},
        ("checks", SELF): {("ci", SELF), ("build", TREE)},
        ("checks", TREE): {("checks", SELF), ("lint", TREE), ("unit", TREE)},
        ("lint", SELF): {("checks", SELF)},
        ("lint", TREE): {("lint", SELF)},
        ("unit", SELF): {("checks", SELF), ("build", TREE)},
        ("unit", TREE): {("unit", SELF)},
        ("report", SELF): {("ci", SELF), ("checks", TREE), ("build", SELF)},
        ("report", TREE): {("report", SELF)},
    }


def test_needing_a_grandparent_adds_no_wait() -> None:
    workflow = Workflow("wf", Node("top", children=[Node("middle", children=[Node("leaf", needs=["top"])])]))
    assert workflow.dependencies[("leaf", SELF)] == {("middle", SELF)}


def test_an_acyclic_graph_has_no_cycle() -> None:
    assert find_cycle(ci().dependencies) is None


def test_a_cycle_through_two_nodes_names_each_once_and_closes_on_the_first() -> None:
    deps = {
        ("a", SELF): {("b", TREE)},
        ("b", TREE): {("b", SELF)},
        ("b", SELF): {("a", TREE)},
        ("a", TREE): {("a", SELF)},
    }
    cycle = find_cycle(deps)
    assert cycle in (["a", "b", "a"], ["b", "a", "b"])


def test_a_node_needing_itself_is_a_cycle_of_one_node() -> None:
    with pytest.raises(WorkflowError, match=r"dependency cycle: a -> a$"):
        Workflow("wf", Node("root", children=[Node("a", needs=["a"])]))


# -- stages -----------------------------------------------------------------------------------


def test_stages_put_a_node_before_its_children() -> None:
    workflow = Workflow("wf", cmd("parent", children=[cmd("child")]))
    assert stages(workflow) == [["parent"], ["child"]]


def test_stages_list_their_nodes_in_tree_order() -> None:
    workflow = Workflow("wf", Node("root", parallel=True, children=[cmd("zeta"), cmd("alpha"), cmd("mu")]))
    assert stages(workflow) == [["zeta", "alpha", "mu"]]


def test_stages_leave_out_group_nodes() -> None:
    assert stages(ci()) == [["build"], ["lint", "unit"], ["report"]]


# -- --target subsets -------------------------------------------------------------------------


def names(workflow: Workflow) -> list[str]:
    return list(workflow.nodes)


def test_a_target_brings_its_whole_subtree() -> None:
    workflow = Workflow("wf", Node("root", children=[cmd("a", children=[cmd("a1", children=[cmd("a11")])]), cmd("b")]))
    assert names(subset(workflow, ["a"])) == ["root", "a", "a1", "a11"]


def test_a_target_brings_its_ancestors_without_their_other_children() -> None:
    workflow = Workflow("wf", Node("root", children=[cmd("a", children=[cmd("a1"), cmd("a2")]), cmd("b")]))
    assert names(subset(workflow, ["a2"])) == ["root", "a", "a2"]


def test_a_target_brings_what_it_needs_with_the_needed_subtree() -> None:
    needed = cmd("setup", children=[cmd("setup_db")])
    workflow = Workflow(
        "wf", Node("root", parallel=True, children=[needed, cmd("other"), cmd("test", needs=["setup"])])
    )
    assert names(subset(workflow, ["test"])) == ["root", "setup", "setup_db", "test"]


def test_a_target_brings_the_producers_of_the_artifacts_it_reads() -> None:
    assert names(subset(ci(), ["report"])) == ["ci", "build", "report"]


def test_several_targets_bring_the_union_of_what_each_needs() -> None:
    assert names(subset(ci(), ["lint", "report"])) == ["ci", "build", "checks", "lint", "report"]


def test_targets_needing_the_same_node_keep_their_group() -> None:
    group = Node("group", children=[cmd("setup"), cmd("x", needs=["setup"]), cmd("y", needs=["setup"])])
    workflow = Workflow("wf", Node("root", children=[group, cmd("other")]))
    assert names(subset(workflow, ["x", "y"])) == ["root", "group", "setup", "x", "y"]


def test_an_unknown_target_is_an_error_suggesting_the_closest_name() -> None:
    with pytest.raises(WorkflowError, match=r"^--target 'lnt' is not a node of workflow 'ci'; did you mean 'lint'\?$"):
        subset(ci(), ["lint", "lnt"])


def test_an_unknown_target_like_no_node_is_an_error_without_a_suggestion() -> None:
    with pytest.raises(WorkflowError, match=r"^--target 'zzz' is not a node of workflow 'ci'$"):
        subset(ci(), ["zzz"])


# -- drawings ---------------------------------------------------------------------------------


def test_edges_name_each_direct_ordering_and_its_kind() -> None:
    assert edges(ci()) == [
        ("ci", "build", "child"),
        ("build", "checks", "then"),
        ("checks", "report", "then"),
        ("checks", "lint", "child"),
        ("checks", "unit", "child"),
        ("build", "unit", "needs"),
        ("build", "report", "artifact:stdout"),
    ]


def test_mermaid_draws_groups_rounded_and_needs_and_artifacts_dashed() -> None:
    assert mermaid(ci()) == (
        "flowchart TD\n"
        '  n0(["ci"])\n'
        '  n1["build"]\n'
        '  n2(["checks"])\n'
        '  n3["lint"]\n'
        '  n4["unit"]\n'
        '  n5["report"]\n'
        "  n0 --> n1\n"
        "  n1 --> n2\n"
        "  n2 --> n5\n"
        "  n2 --> n3\n"
        "  n2 --> n4\n"
        "  n1 -. needs .-> n4\n"
        "  n1 -. stdout .-> n5\n"
    )


def test_mermaid_escapes_quotes_in_labels() -> None:
    assert mermaid(Workflow("wf", cmd('say "hi"'))) == 'flowchart TD\n  n0["say #quot;hi#quot;"]\n'


def test_mermaid_colours_nodes_by_status() -> None:
    statuses = ["succeeded", "failed", "timed_out", "cancelled", "skipped", "running", "pending"]
    workflow = Workflow("wf", Node("root", parallel=True, children=[cmd(status) for status in statuses]))
    drawing = mermaid(workflow, {status: status for status in statuses} | {"ghost": "failed", "root": "odd"})
    assert drawing.splitlines()[-14:] == [
        "  classDef succeeded fill:#d4f7d4,stroke:#1a7f37",
        "  class n1 succeeded",
        "  classDef failed fill:#ffd7d5,stroke:#cf222e",
        "  class n2 failed",
        "  classDef timed_out fill:#ffd7d5,stroke:#cf222e",
        "  class n3 timed_out",
        "  classDef cancelled fill:#eeeeee,stroke:#6e7781",
        "  class n4 cancelled",
        "  classDef skipped fill:#f6f8fa,stroke:#afb8c1",
        "  class n5 skipped",
        "  classDef running fill:#ddf4ff,stroke:#0969da",
        "  class n6 running",
        "  classDef pending fill:#f6f8fa,stroke:#afb8c1",
        "  class n7 pending",
    ]


def test_mermaid_lists_every_node_of_a_status_in_one_class_line() -> None:
    workflow = Workflow("wf", Node("root", parallel=True, children=[cmd("a"), cmd("b")]))
    drawing = mermaid(workflow, {"a": "failed", "b": "failed"})
    assert drawing.endswith("  classDef failed fill:#ffd7d5,stroke:#cf222e\n  class n1,n2 failed\n")


def test_mermaid_without_statuses_defines_no_classes() -> None:
    assert "class" not in mermaid(ci(), {})


def test_dot_draws_groups_as_folders_and_needs_and_artifacts_dashed() -> None:
    assert dot(ci()) == (
        'digraph "ci" {\n'
        "  rankdir=TB;\n"
        '  "ci" [shape=folder];\n'
        '  "build" [shape=box];\n'
        '  "checks" [shape=folder];\n'
        '  "lint" [shape=box];\n'
        '  "unit" [shape=box];\n'
        '  "report" [shape=box];\n'
        '  "ci" -> "build";\n'
        '  "build" -> "checks";\n'
        '  "checks" -> "report";\n'
        '  "checks" -> "lint";\n'
        '  "checks" -> "unit";\n'
        '  "build" -> "unit" [style=dashed, label="needs"];\n'
        '  "build" -> "report" [style=dashed, label="stdout"];\n'
        "}\n"
    )


def test_dot_escapes_backslashes_and_quotes_in_names() -> None:
    workflow = Workflow('say "hi"', Node("back\\slash"))
    assert dot(workflow) == 'digraph "say \\"hi\\"" {\n  rankdir=TB;\n  "back\\\\slash" [shape=folder];\n}\n'


def joined() -> Workflow:
    """``reader`` follows ``producer``, needs it and reads two of its artifacts: four orderings, one pair."""
    producer = cmd("producer", artifacts=[FileArtifact('re"port', "out.txt")])
    reader = Node(
        "reader",
        executable=PyFunc(echo, args=(producer.stdout_artifact, producer.artifact('re"port'))),
        needs=["producer"],
    )
    return Workflow("wf", Node("root", children=[producer, reader]))


def test_mermaid_draws_one_edge_per_pair_labelled_with_needs_and_artifacts() -> None:
    assert mermaid(joined()).splitlines()[-1] == "  n1 -- needs, stdout, re#quot;port --> n2"


def test_dot_draws_one_edge_per_pair_labelled_with_needs_and_artifacts() -> None:
    assert dot(joined()).splitlines()[-2] == '  "producer" -> "reader" [label="needs, stdout, re\\"port"];'


def test_drawings_leave_out_an_implicit_root() -> None:
    root = Node("root", parallel=True, children=[cmd("a"), cmd("b", needs=["a"])])
    assert mermaid(Workflow("wf", root, implicit_root=True)) == (
        'flowchart TD\n  n0["a"]\n  n1["b"]\n  n0 -. needs .-> n1\n'
    )
