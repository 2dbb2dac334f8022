"""The rules the definition enforces when built, with their exact messages, and what it normalises."""

from __future__ import annotations

import functools
import re
import sys
import types
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from wtflow import Artifact, ArtifactError, Command, FileArtifact, Node, PyFunc, Retry, Workflow, WorkflowError
from wtflow.model import Container, replace_artifacts


def noop() -> None:
    pass


def echo(*_: object) -> None:
    pass


def rejected(message: str) -> AbstractContextManager[pytest.ExceptionInfo[WorkflowError]]:
    """Expect a :class:`WorkflowError` saying exactly ``message``."""
    return pytest.raises(WorkflowError, match=f"^{re.escape(message)}$")


# -- artifacts --------------------------------------------------------------------------------


def test_a_resolved_artifact_reads_the_file_it_is_bound_to(tmp_path: Path) -> None:
    (tmp_path / "out").write_bytes("héllo".encode())
    artifact = Node("a").stdout_artifact.resolved(tmp_path / "out")
    assert (artifact.node, artifact.name, artifact.path) == ("a", "stdout", tmp_path / "out")
    assert artifact.data == "héllo".encode()


def test_artifact_text_decodes_with_the_encoding_asked_for(tmp_path: Path) -> None:
    (tmp_path / "out").write_bytes("héllo".encode("latin-1"))
    assert Artifact("a", "stdout", tmp_path / "out").text("latin-1") == "héllo"


def test_artifact_text_decodes_utf8_by_default(tmp_path: Path) -> None:
    (tmp_path / "out").write_bytes("héllo".encode())
    assert Artifact("a", "stdout", tmp_path / "out").text() == "héllo"


def test_an_artifact_whose_file_was_not_written_says_it_was_not_produced(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"^artifact 'stdout' was not produced by a \(exit 3\)$"):
        _ = Artifact("a", "stdout", tmp_path / "never", exit_code=3).data


def test_an_artifact_of_a_node_that_ended_unknown_says_only_that_it_was_not_produced(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"^artifact 'stdout' was not produced by a$"):
        _ = Artifact("a", "stdout", tmp_path / "never").data


def test_a_resolved_artifact_remembers_how_its_producer_ended(tmp_path: Path) -> None:
    artifact = Artifact("a", "stdout").resolved(tmp_path / "never", exit_code=2)
    with pytest.raises(ArtifactError, match=r"^artifact 'stdout' was not produced by a \(exit 2\)$"):
        _ = artifact.data


def test_reading_an_unresolved_artifact_says_when_artifacts_are_resolved() -> None:
    message = "artifact 'stdout' of node 'a' has no data yet: artifacts are resolved when the workflow runs"
    with pytest.raises(ArtifactError, match=f"^{re.escape(message)}$"):
        _ = Artifact("a", "stdout").data


class Pair(NamedTuple):
    left: Any
    right: Any


def test_replace_artifacts_reaches_into_lists_tuples_named_tuples_and_dicts(tmp_path: Path) -> None:
    ref = Artifact("a", "stdout")
    value = [ref, (ref, 1), Pair(ref, "x"), {"k": [ref]}, "plain", 2]

    replaced = replace_artifacts(value, lambda artifact: artifact.resolved(tmp_path / artifact.name))

    bound = Artifact("a", "stdout", tmp_path / "stdout")
    assert replaced == [bound, (bound, 1), Pair(bound, "x"), {"k": [bound]}, "plain", 2]
    assert type(replaced[2]) is Pair
    assert type(replaced[1]) is tuple


def test_a_function_reads_the_artifacts_nested_in_its_arguments() -> None:
    first, second, third = Artifact("a", "stdout"), Artifact("b", "result"), Artifact("c", "stderr")
    func = PyFunc(echo, args=([first], {second}), kwargs={"x": {"y": (third,)}})
    assert func.artifacts() == [first, second, third]


# -- commands ---------------------------------------------------------------------------------


def test_an_empty_command_string_is_rejected_with_its_message() -> None:
    with rejected("command is empty"):
        Command("  ")


def test_a_command_list_is_kept_as_a_tuple() -> None:
    assert Command(["echo", "hi"]).cmd == ("echo", "hi")


def test_a_command_without_env_has_an_empty_one() -> None:
    assert Command("true").env == {}


def test_a_command_keeps_a_copy_of_its_env() -> None:
    env = {"A": "1"}
    command = Command("true", env=env)
    env["A"] = "2"
    assert command.env == {"A": "1"}


def test_a_command_working_directory_becomes_a_path() -> None:
    assert Command("true", cwd="build").cwd == Path("build")


def test_a_timeout_under_a_second_is_allowed() -> None:
    assert Command("true", timeout=0.5).timeout == 0.5


@pytest.mark.parametrize("key", ["", "A=B", "A\0B", 3])
def test_an_invalid_environment_variable_name_is_rejected(key: object) -> None:
    with rejected(f"environment variable name {key!r} is invalid"):
        Command("true", env={key: "x"})  # type: ignore[dict-item]


def test_a_command_container_must_be_a_container() -> None:
    with rejected("container must be a Container, got str"):
        Command("true", container="alpine")  # type: ignore[arg-type]


def test_a_command_accepts_a_container() -> None:
    assert Command("true", container=Container("alpine")).container == Container("alpine")


# -- containers -------------------------------------------------------------------------------


@pytest.mark.parametrize("image", ["", "  ", None])
def test_a_container_needs_an_image(image: object) -> None:
    with rejected("container image is empty"):
        Container(image)  # type: ignore[arg-type]


def test_a_container_pull_policy_must_be_known() -> None:
    with rejected("container pull must be one of missing, always, never, got 'sometimes'"):
        Container("alpine", pull="sometimes")


@pytest.mark.parametrize("pull", ["missing", "always", "never"])
def test_a_container_accepts_each_pull_policy(pull: str) -> None:
    assert Container("alpine", pull=pull).pull == pull


def test_a_container_checks_its_env() -> None:
    with rejected("environment variable name 'A=B' is invalid"):
        Container("alpine", env={"A=B": "x"})


def test_a_container_without_env_has_an_empty_one() -> None:
    assert Container("alpine").env == {}


def test_container_volumes_are_kept_as_a_tuple() -> None:
    assert Container("alpine", volumes=["/a:/b", "/c:/d:ro"]).volumes == ("/a:/b", "/c:/d:ro")


@pytest.mark.parametrize("volume", ["/a", "/a:/b:ro:x", 3])
def test_a_container_volume_must_be_host_container_and_mode(volume: object) -> None:
    with rejected(f"container volume {volume!r} must be HOST:CONTAINER or HOST:CONTAINER:MODE"):
        Container("alpine", volumes=[volume])  # type: ignore[list-item]


# -- functions --------------------------------------------------------------------------------


def test_a_function_that_cannot_be_pickled_is_named_in_the_error() -> None:
    with pytest.raises(
        WorkflowError, match=r"^function test_.*\.<locals>\.<lambda> cannot be sent to its own process \("
    ):
        PyFunc(lambda: None)


def test_the_pickling_error_says_where_to_define_the_function() -> None:
    with pytest.raises(
        WorkflowError,
        match=r"; define it at the top level of a module \(lambdas and nested functions cannot be sent\)$",
    ):
        PyFunc(lambda: None)


def test_a_callable_without_a_qualified_name_is_shown_by_its_repr() -> None:
    with pytest.raises(WorkflowError, match=r"^function functools\.partial\(<function "):
        PyFunc(functools.partial(lambda: None))


@pytest.fixture
def interactive_main(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """``__main__`` as in an interactive session (no file), holding a picklable ``job``."""
    main = types.ModuleType("__main__")

    def job() -> None:
        pass

    job.__module__ = "__main__"
    job.__qualname__ = "job"
    main.job = job  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "__main__", main)
    return main


def test_a_function_defined_in_an_interactive_session_is_rejected(interactive_main: types.ModuleType) -> None:
    message = (
        "function job is defined in an interactive session; "
        "define it in a script or module file so its process can import it"
    )
    with rejected(message):
        PyFunc(interactive_main.job)


def test_a_function_of_a_main_script_is_accepted(interactive_main: types.ModuleType) -> None:
    interactive_main.__file__ = "script.py"
    assert PyFunc(interactive_main.job).func is interactive_main.job


def test_a_module_function_is_accepted_during_an_interactive_session(interactive_main: types.ModuleType) -> None:
    assert PyFunc(noop).func is noop


def test_a_method_of_a_builtin_type_without_a_module_is_accepted() -> None:
    """``str.upper`` has no ``__module__``, yet pickles and runs."""
    assert PyFunc(str.upper, args=("hi",)).func is str.upper


def test_a_function_keeps_its_arguments_as_a_tuple_and_a_dict() -> None:
    func = PyFunc(echo, args=[1, 2])
    assert (func.args, func.kwargs) == ((1, 2), {})


def test_a_function_keeps_its_keyword_arguments() -> None:
    assert PyFunc(echo, kwargs={"a": 1}).kwargs == {"a": 1}


def test_a_function_timeout_must_be_positive() -> None:
    with rejected("timeout must be a positive number of seconds, got 0"):
        PyFunc(noop, timeout=0)


def test_a_function_checks_its_env() -> None:
    with rejected("environment variable A must be a string, got int"):
        PyFunc(noop, env={"A": 1})  # type: ignore[dict-item]


def test_a_function_keeps_its_env_and_has_an_empty_one_by_default() -> None:
    assert (PyFunc(noop).env, PyFunc(noop, env={"A": "1"}).env) == ({}, {"A": "1"})


def test_a_function_working_directory_becomes_a_path() -> None:
    assert PyFunc(noop, cwd="build").cwd == Path("build")


def test_a_function_name_is_its_module_and_qualified_name() -> None:
    assert PyFunc(noop).name == f"{__name__}:noop"


# -- retries ----------------------------------------------------------------------------------


def test_zero_retries_are_allowed() -> None:
    assert Retry(max=0).max == 0


@pytest.mark.parametrize("count", [-1, 1.5])
def test_retries_max_must_be_a_whole_number_not_below_zero(count: object) -> None:
    with rejected(f"retries.max must be a whole number >= 0, got {count!r}"):
        Retry(max=count)  # type: ignore[arg-type]


@pytest.mark.parametrize("delay", [-1, float("inf")])
def test_retries_delay_must_be_finite_and_not_negative(delay: float) -> None:
    with rejected(f"retries.delay must be >= 0 seconds, got {delay!r}"):
        Retry(delay=delay)


@pytest.mark.parametrize("backoff", [0.5, float("inf")])
def test_retries_backoff_must_be_finite_and_at_least_one(backoff: float) -> None:
    with rejected(f"retries.backoff must be >= 1, got {backoff!r}"):
        Retry(backoff=backoff)


def test_the_first_retry_waits_the_delay_without_backoff() -> None:
    assert Retry(max=1, delay=2, backoff=10).delay_before(2) == 2.0


# -- file artifacts ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "stdout", "stderr", "result", "a/b", ".hidden"])
def test_a_file_artifact_name_must_be_plain_and_not_reserved(name: str) -> None:
    with rejected(f"artifact name {name!r} is invalid: use a plain name other than stdout, stderr and result"):
        FileArtifact(name, "out.txt")


def test_a_file_artifact_name_may_contain_dots_after_its_first_letter() -> None:
    assert FileArtifact("report.v1", "out.txt").name == "report.v1"


def test_a_file_artifact_path_message_names_the_path() -> None:
    with rejected("artifact 'report': path '../x' must be relative to the working directory, without '..'"):
        FileArtifact("report", "../x")


# -- nodes ------------------------------------------------------------------------------------


def test_a_node_name_must_be_a_string() -> None:
    with rejected("node name must be a string, got 3"):
        Node(3)  # type: ignore[arg-type]


def test_a_node_executable_error_names_the_type_given() -> None:
    with rejected("node 'a': executable must be a Command or a PyFunc, got function"):
        Node("a", executable=noop)  # type: ignore[arg-type]


def test_a_node_children_must_be_nodes() -> None:
    with rejected("node 'a': children must be Nodes, got str"):
        Node("a", children=["b"])  # type: ignore[list-item]


def test_a_node_keeps_children_and_artifacts_as_tuples() -> None:
    child, declared = Node("b"), FileArtifact("report", "out.txt")
    node = Node("a", children=[child], artifacts=[declared])
    assert (node.children, node.artifacts) == ((child,), (declared,))


def test_a_single_need_may_be_given_as_a_string() -> None:
    assert Node("a", needs="build").needs == ("build",)


def test_a_function_node_produces_a_result_and_its_declared_files() -> None:
    node = Node("a", executable=PyFunc(noop), artifacts=[FileArtifact("report", "out.txt")])
    assert node.artifact_names() == {"stdout", "stderr", "result", "report"}


def test_a_command_node_produces_no_result() -> None:
    assert Node("a", executable=Command("true")).artifact_names() == {"stdout", "stderr"}


# -- workflows --------------------------------------------------------------------------------


def test_a_workflow_keeps_its_secrets_as_a_tuple() -> None:
    assert Workflow("wf", Node("a"), secrets=["TOKEN"]).secrets == ("TOKEN",)


def test_a_workflow_root_error_names_the_type_given() -> None:
    with rejected("workflow 'wf': root must be a Node, got str"):
        Workflow("wf", "root")  # type: ignore[arg-type]


def test_a_workflow_checks_and_keeps_its_env() -> None:
    assert Workflow("wf", Node("a"), env={"A": "1"}).env == {"A": "1"}
    with rejected("environment variable name 'A=B' is invalid"):
        Workflow("wf", Node("a"), env={"A=B": "1"})


def test_a_workflow_keeps_a_copy_of_its_env() -> None:
    env = {"A": "1"}
    workflow = Workflow("wf", Node("a"), env=env)
    env["A"] = "2"
    assert workflow.env == {"A": "1"}


def test_implicit_root_must_be_a_boolean() -> None:
    with rejected("implicit_root must be true or false, got 'yes'"):
        Workflow("wf", Node("a"), implicit_root="yes")  # type: ignore[arg-type]


def test_max_parallel_of_one_is_allowed() -> None:
    assert Workflow("wf", Node("a"), max_parallel=1).max_parallel == 1


@pytest.mark.parametrize("limit", [0, "2", 1.5])
def test_max_parallel_must_be_a_whole_number_of_at_least_one(limit: object) -> None:
    with rejected(f"max_parallel must be a whole number >= 1, got {limit!r}"):
        Workflow("wf", Node("a"), max_parallel=limit)  # type: ignore[arg-type]


def test_a_node_object_twice_in_the_tree_is_blamed_on_its_name() -> None:
    shared = Node("a")
    with rejected("node 'a' appears twice in the tree") as caught:
        Workflow("wf", Node("root", children=[shared, shared]))
    assert caught.value.node == "a"


def test_a_name_used_twice_is_blamed_on_that_name() -> None:
    with rejected("node name 'a' is used twice; node names must be unique") as caught:
        Workflow("wf", Node("root", children=[Node("a"), Node("a")]))
    assert caught.value.node == "a"


def test_an_unknown_need_is_blamed_on_the_node_that_needs_it() -> None:
    with rejected("node 'b' needs 'nope', which is not a node of this workflow") as caught:
        Workflow("wf", Node("root", children=[Node("b", needs=["nope"])]))
    assert caught.value.node == "b"


def test_an_artifact_of_an_unknown_node_is_blamed_on_the_reader() -> None:
    reader = Node("reader", executable=PyFunc(echo, args=(Artifact("ghost", "stdout"),)))
    with rejected("node 'reader' reads an artifact of 'ghost', which is not a node of this workflow") as caught:
        Workflow("wf", Node("root", children=[reader]))
    assert caught.value.node == "reader"


def test_an_artifact_a_node_does_not_produce_is_blamed_on_the_reader() -> None:
    reader = Node("reader", executable=PyFunc(echo, args=(Artifact("producer", "report"),)))
    with rejected("node 'reader' reads artifact 'report' of 'producer', which produces only stderr, stdout") as caught:
        Workflow("wf", Node("root", children=[Node("producer"), reader]))
    assert caught.value.node == "reader"


def test_a_cycle_is_blamed_on_its_first_node() -> None:
    with pytest.raises(WorkflowError, match=r"^dependency cycle: ") as caught:
        Workflow("wf", Node("root", parallel=True, children=[Node("a", needs=["b"]), Node("b", needs=["a"])]))
    assert caught.value.node == caught.value.message.removeprefix("dependency cycle: ").split(" -> ")[0]
    assert caught.value.node in {"a", "b"}


@pytest.mark.parametrize("key", ["sources", "outputs"])
@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("../secrets/*", "contains '..'"),
        ("/etc/passwd", "is absolute"),
        ("", "is empty"),
        ("src/a**", "'**' must be a whole part"),
    ],
)
def test_a_bad_cache_glob_is_refused_naming_the_node_and_key(key: str, pattern: str, says: str) -> None:
    patterns: dict[str, Any] = {key: [pattern]}
    with pytest.raises(WorkflowError) as caught:
        Node("build", executable=Command("make"), **patterns)
    assert caught.value.message.startswith(f"node 'build': {key} {pattern!r}")
    assert says in caught.value.message
    assert caught.value.field == (key,)


def test_a_cache_glob_that_is_not_text_is_refused() -> None:
    with pytest.raises(WorkflowError, match="is not a glob"):
        Node("build", executable=Command("make"), sources=[3])  # type: ignore[list-item]
