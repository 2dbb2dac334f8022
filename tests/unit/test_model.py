"""The workflow definition is checked when it is built."""

from __future__ import annotations

import pytest

from wtflow import Artifact, ArtifactError, Command, FileArtifact, Node, PyFunc, Retry, Workflow, WorkflowError
from wtflow.graph import SELF, stages


def noop() -> None:
    pass


def echo(*_: object) -> None:
    pass


def test_node_names_must_be_unique() -> None:
    with pytest.raises(WorkflowError, match="'a' is used twice"):
        Workflow("wf", Node("root", children=[Node("a"), Node("b", children=[Node("a")])]))


def test_the_same_node_object_cannot_appear_twice() -> None:
    shared = Node("a")
    with pytest.raises(WorkflowError, match="appears twice"):
        Workflow("wf", Node("root", children=[shared, shared]))


def test_needs_must_name_a_node_of_the_workflow() -> None:
    with pytest.raises(WorkflowError, match="needs 'nope'"):
        Workflow("wf", Node("root", children=[Node("a", needs=["nope"])]))


def test_needs_cycle_is_reported_with_its_path() -> None:
    root = Node("root", parallel=True, children=[Node("a", needs=["b"]), Node("b", needs=["a"])])
    with pytest.raises(WorkflowError, match=r"dependency cycle: (a -> b -> a|b -> a -> b)"):
        Workflow("wf", root)


def test_needing_a_descendant_is_a_cycle() -> None:
    with pytest.raises(WorkflowError, match="dependency cycle"):
        Workflow("wf", Node("root", needs=["child"], children=[Node("child")]))


def test_needing_an_ancestor_is_allowed_and_adds_no_wait() -> None:
    workflow = Workflow("wf", Node("root", children=[Node("child", needs=["root"])]))
    assert workflow.nodes["child"].needs == ("root",)
    assert workflow.dependencies[("child", SELF)] == {("root", SELF)}  # only its parent's own run, as without needs


def test_artifact_of_an_unknown_node_is_rejected() -> None:
    reader = Node("reader", executable=PyFunc(echo, args=(Artifact("ghost", "stdout"),)))
    with pytest.raises(WorkflowError, match="artifact of 'ghost'"):
        Workflow("wf", Node("root", children=[reader]))


def test_artifact_name_must_be_one_the_node_produces() -> None:
    producer = Node("producer", executable=Command("true"))
    reader = Node("reader", executable=PyFunc(echo, args=(producer.artifact("result"),)))
    with pytest.raises(WorkflowError, match="produces only stderr, stdout"):
        Workflow("wf", Node("root", children=[producer, reader]))


def test_reading_an_artifact_orders_the_reader_after_its_producer() -> None:
    producer = Node("producer", executable=Command("true"))
    reader = Node("reader", executable=PyFunc(echo, kwargs={"x": [producer.stdout_artifact]}))
    workflow = Workflow("wf", Node("root", parallel=True, children=[reader, producer]))
    assert stages(workflow) == [["producer"], ["reader"]]


def test_parallel_children_share_a_stage_and_sequential_ones_do_not() -> None:
    par = Node("par", parallel=True, children=[Node(n, executable=Command("true")) for n in "ab"])
    seq = Node("seq", children=[Node(n, executable=Command("true")) for n in "cd"])
    assert stages(Workflow("wf", Node("root", children=[par, seq]))) == [["a", "b"], ["c"], ["d"]]


def test_lambdas_cannot_be_sent_to_a_process() -> None:
    with pytest.raises(WorkflowError, match="define it at the top level of a module"):
        PyFunc(lambda: None)


def test_pyfunc_needs_a_callable() -> None:
    with pytest.raises(WorkflowError, match="needs a callable"):
        PyFunc(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("cmd", ["", "   ", [], ["echo", 3]])
def test_empty_or_malformed_commands_are_rejected(cmd: object) -> None:
    with pytest.raises(WorkflowError, match="command"):
        Command(cmd)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), "10"])
def test_timeout_must_be_a_positive_number(timeout: object) -> None:
    with pytest.raises(WorkflowError, match="timeout must be a positive number"):
        Command("true", timeout=timeout)  # type: ignore[arg-type]


def test_environment_values_must_be_strings() -> None:
    with pytest.raises(WorkflowError, match="FOO must be a string"):
        Command("true", env={"FOO": 1})  # type: ignore[dict-item]


def test_list_command_runs_without_a_shell() -> None:
    assert Command(["echo", "$HOME"]).argv == ("echo", "$HOME")
    assert Command("echo $HOME").argv == ("/bin/sh", "-c", "echo $HOME")


def test_unresolved_artifact_data_is_a_clear_error() -> None:
    with pytest.raises(ArtifactError, match="resolved when the workflow runs"):
        _ = Node("a").stdout_artifact.data


def test_node_path_names_its_ancestors() -> None:
    workflow = Workflow("wf", Node("ci", children=[Node("tests", children=[Node("unit")])]))
    assert workflow.path("unit") == "ci/tests/unit"


def test_a_nodes_ancestors_run_from_its_parent_to_the_root() -> None:
    workflow = Workflow("wf", Node("ci", children=[Node("tests", children=[Node("unit")])]))
    assert (workflow.ancestors("unit"), workflow.ancestors("ci")) == (["tests", "ci"], [])


def test_retry_delay_grows_by_backoff() -> None:
    retry = Retry(max=3, delay=2, backoff=3)
    assert [retry.delay_before(n) for n in (2, 3, 4)] == [2, 6, 18]


@pytest.mark.parametrize("path", ["/etc/passwd", "../secret", "a/../../b", ""])
def test_file_artifacts_must_stay_inside_the_working_directory(path: str) -> None:
    with pytest.raises(WorkflowError, match="must be relative to the working directory"):
        FileArtifact("report", path)


def test_workflow_root_must_be_a_node() -> None:
    with pytest.raises(WorkflowError, match="root must be a Node"):
        Workflow("wf", "root")  # type: ignore[arg-type]


def test_node_executable_must_be_command_or_pyfunc() -> None:
    with pytest.raises(WorkflowError, match="must be a Command or a PyFunc"):
        Node("a", executable=noop)  # type: ignore[arg-type]


def test_user_nodes_leave_out_an_implicit_root() -> None:
    root = Node("wf", parallel=True, children=[Node("a"), Node("b")])
    assert list(Workflow("wf", root, implicit_root=True).user_nodes) == ["a", "b"]


def test_user_nodes_are_every_node_of_a_written_root() -> None:
    root = Node("wf", parallel=True, children=[Node("a"), Node("b")])
    assert list(Workflow("wf", root).user_nodes) == ["wf", "a", "b"]


def test_a_node_name_with_a_nul_character_is_refused() -> None:
    with pytest.raises(WorkflowError, match=r"node name 'a\\x00' holds a NUL character"):
        Node("a\0")


@pytest.mark.parametrize("cmd", ["echo \0", ["echo", "\0"]], ids=["text", "argv"])
def test_a_command_with_a_nul_character_is_refused(cmd: object) -> None:
    with pytest.raises(WorkflowError, match="holds a NUL character"):
        Command(cmd)  # type: ignore[arg-type]


def test_an_environment_value_with_a_nul_character_is_refused() -> None:
    with pytest.raises(WorkflowError, match="environment variable A: its value holds a NUL character"):
        Workflow("wf", Node("a"), env={"A": "x\0"})


def test_runs_on_must_be_local_or_dask() -> None:
    with pytest.raises(WorkflowError, match="runs_on must be one of local, dask, got 'gpu-box'"):
        Node("a", Command("x"), runs_on="gpu-box")


@pytest.mark.parametrize("amount", [0, -1, float("inf"), True, "1"])
def test_resources_must_be_positive_numbers(amount: object) -> None:
    with pytest.raises(WorkflowError, match="resource GPU must be a number > 0"):
        Node("a", Command("x"), resources={"GPU": amount})  # type: ignore[dict-item]


def test_placement_needs_an_executable() -> None:
    with pytest.raises(WorkflowError, match="resources needs a command or a function"):
        Node("group", children=[Node("a", Command("x"))], resources={"GPU": 1})


def test_a_matrix_gives_its_placement_to_every_combination() -> None:
    from wtflow import Matrix

    node = Node("m", Command("x"), matrix=Matrix({"v": [1, 2]}), runs_on="dask", resources={"GPU": 1})
    workflow = Workflow("wf", Node("root", children=[node]))
    expansions = workflow.nodes["m"].children
    assert [(child.runs_on, child.resources) for child in expansions] == [("dask", {"GPU": 1})] * 2
    assert (workflow.nodes["m"].runs_on, workflow.nodes["m"].resources) == (None, {})


def test_a_function_argument_that_contains_itself_is_refused_naming_where() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(WorkflowError, match=r"args\[1\]\.a\[0\] contains itself") as raised:
        Node("n", executable=PyFunc(noop, args=[1, {"a": loop}]))
    assert raised.value.node == "n"


def test_a_value_shared_by_two_arguments_is_not_a_cycle() -> None:
    shared = ["${{ vars.a }}"]
    node = Node("n", executable=PyFunc(noop, args=[shared, shared], kwargs={"k": [shared]}))
    assert [path for path, _ in node.expression_texts()] == [("args", 0, 0), ("args", 1, 0), ("kwargs", "k", 0, 0)]


def test_arguments_nested_deeper_than_a_hundred_levels_are_refused_naming_where() -> None:
    deep: object = "leaf"
    for _ in range(101):
        deep = [deep]
    with pytest.raises(WorkflowError, match=r"^args(\[0\])+ is nested more than 100 levels deep"):
        Node("n", executable=PyFunc(noop, args=[deep]))


def test_arguments_nested_a_hundred_levels_deep_make_a_workflow() -> None:
    deep: object = "${{ vars.a }}"
    for _ in range(99):
        deep = [deep]
    node = Node("n", executable=PyFunc(noop, args=[deep]))
    Workflow(name="w", root=node, vars={"a": "x"})
    ((path, _),) = node.expression_texts()
    assert len(path) == 101
