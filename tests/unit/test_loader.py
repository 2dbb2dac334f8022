"""Workflow files: both forms, validation with FILE:LINE:COL, and safe YAML."""

from __future__ import annotations

import contextlib
import gc
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from wtflow import Artifact, Command, PyFunc, Retry, WorkflowError
from wtflow.graph import stages
from wtflow.loader import find_file, load_file, load_yaml, read_text


def load(text: str, base_dir: Path | None = None) -> object:
    return load_yaml(textwrap.dedent(text), "wf.yml", base_dir)


def error_of(text: str, base_dir: Path | None = None) -> str:
    with pytest.raises(WorkflowError) as caught:
        load(text, base_dir)
    return str(caught.value)


TREE = """
    name: ci
    env: {PYTHONUNBUFFERED: "1"}
    max_parallel: 4
    root:
      name: ci
      command: echo start
      children:
        - name: lint
          command: ruff check .
        - name: tests
          parallel: true
          children:
            - name: unit
              command: [pytest, tests/unit]
              timeout: 10m
            - name: report
              function: os.path:join
              args: [{artifact: lint.stdout}]
              kwargs: {limit: 10}
"""


def test_tree_form_builds_the_same_workflow_as_the_python_api(tmp_path: Path) -> None:
    workflow = load(TREE, tmp_path)
    assert workflow.name == "ci"  # type: ignore[attr-defined]
    assert workflow.env == {"PYTHONUNBUFFERED": "1"}  # type: ignore[attr-defined]
    assert workflow.max_parallel == 4  # type: ignore[attr-defined]
    nodes = workflow.nodes  # type: ignore[attr-defined]
    assert list(nodes) == ["ci", "lint", "tests", "unit", "report"]
    assert nodes["ci"].executable == Command("echo start", cwd=tmp_path.resolve())
    assert nodes["tests"].parallel
    assert nodes["tests"].executable is None
    unit = nodes["unit"].executable
    assert (unit.cmd, unit.timeout) == (("pytest", "tests/unit"), 600.0)
    report = nodes["report"].executable
    assert isinstance(report, PyFunc)
    assert report.args == (Artifact("lint", "stdout"),)
    assert report.kwargs == {"limit": 10}
    assert stages(workflow) == [["ci"], ["lint"], ["unit", "report"]]  # type: ignore[arg-type]


def test_graph_form_orders_nodes_by_needs() -> None:
    workflow = load(
        """
        name: build
        nodes:
          - {name: fetch, command: ./fetch.sh}
          - {name: compile, command: make, needs: [fetch], retries: {max: 2, delay: 5s}}
          - {name: docs, command: make docs, needs: [fetch], continue_on_error: true}
        """
    )
    assert stages(workflow) == [["fetch"], ["compile", "docs"]]  # type: ignore[arg-type]
    nodes = workflow.nodes  # type: ignore[attr-defined]
    assert nodes["compile"].retries == Retry(max=2, delay=5.0)
    assert nodes["docs"].continue_on_error


def test_graph_root_is_named_after_the_workflow_unless_a_node_has_that_name() -> None:
    plain = load("name: b\nnodes: [{name: x, command: 'true'}]")
    clash = load("name: b\nnodes: [{name: b, command: 'true'}]")
    assert plain.root.name == "b"  # type: ignore[attr-defined]
    assert clash.root.name == "b (workflow)"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("1.5", 1.5)])
def test_durations(text: str, seconds: float) -> None:
    workflow = load(f"name: w\nroot: {{name: a, command: 'true', timeout: {text}}}")
    assert workflow.root.executable.timeout == seconds  # type: ignore[attr-defined]


def test_retries_as_a_number() -> None:
    workflow = load("name: w\nroot: {name: a, command: 'true', retries: 3}")
    assert workflow.root.retries == Retry(max=3)  # type: ignore[attr-defined]


def test_unknown_key_suggests_the_right_one_at_its_position() -> None:
    assert (
        error_of("name: w\nroot:\n  name: a\n  comand: echo\n")
        == "wf.yml:4:3: unknown key 'comand'; did you mean 'command'?"
    )


def test_unknown_top_level_key_lists_nothing_close() -> None:
    message = error_of("name: w\nzzz: 1\nroot: {name: a}\n")
    assert message.startswith(
        "wf.yml:2:1: unknown key 'zzz'; known keys: "
        "env, env_file, max_fail, max_parallel, name, nodes, root, secrets, vars"
    )


def test_wrong_types_are_reported_each_at_its_value() -> None:
    message = error_of("name: w\nroot:\n  name: a\n  command: 5\n  parallel: 'yes'\n  needs: 5\n")
    assert message.splitlines() == [
        "wf.yml:4:12: command must be a string or a list of strings",
        "wf.yml:5:13: parallel: expected true or false, got string 'yes'",
        "wf.yml:6:10: needs must be a node name or a list of node names",
    ]


def test_missing_name_is_reported_at_the_node() -> None:
    assert error_of("name: w\nroot:\n  command: echo\n") == "wf.yml:3:3: missing required key 'name'"


def test_duplicate_names_point_at_both() -> None:
    message = error_of("name: w\nroot:\n  name: a\n  children:\n    - name: b\n    - name: b\n")
    assert message == "wf.yml:6:13: node name 'b' is used twice (first at wf.yml:5:13); node names must be unique"


def test_unknown_needs_suggests_a_node() -> None:
    message = error_of("name: w\nnodes:\n  - {name: build}\n  - {name: test, needs: [biuld]}\n")
    assert (
        message == "wf.yml:4:26: node 'test' needs 'biuld', which is not a node of this workflow; did you mean 'build'?"
    )


def test_cycle_is_printed() -> None:
    message = error_of("name: w\nnodes:\n  - {name: a, needs: [b]}\n  - {name: b, needs: [a]}\n")
    assert message.startswith("wf.yml:")
    assert "dependency cycle: " in message
    assert "a -> b -> a" in message or "b -> a -> b" in message


@pytest.mark.parametrize(
    "text", ["name: w\n", "name: w\nroot: {name: a}\nnodes: [{name: b}]\n"], ids=["neither", "both"]
)
def test_exactly_one_of_root_and_nodes(text: str) -> None:
    assert "exactly one of root (a tree) and nodes (a graph)" in error_of(text)


def test_bad_duration_explains_the_format() -> None:
    message = error_of("name: w\nroot: {name: a, command: x, timeout: 5 minutes}\n")
    assert message == "wf.yml:2:38: '5 minutes' is not a duration; write seconds (90) or e.g. 90s, 5m, 1h30m"


def test_unresolvable_function_is_reported_at_its_key() -> None:
    message = error_of("name: w\nroot: {name: a, function: 'no_such_module_wtflow:run'}\n")
    assert message.startswith("wf.yml:2:27: function 'no_such_module_wtflow:run': cannot import")


def test_function_attribute_must_exist() -> None:
    assert "'os.path' has no attribute 'nope'" in error_of("name: w\nroot: {name: a, function: 'os.path:nope'}\n")


def test_function_must_be_module_colon_attribute() -> None:
    assert "function must be written module:attribute" in error_of("name: w\nroot: {name: a, function: os.path.join}\n")


def test_artifact_reference_without_node_and_name_is_reported_at_its_line() -> None:
    message = error_of("name: w\nroot:\n  name: a\n  function: 'os.path:join'\n  args: [{artifact: nodot}]\n")
    assert message == "wf.yml:5:21: artifact must be written NODE.NAME, e.g. lint.stdout"


def test_artifact_of_unknown_node_is_reported() -> None:
    message = error_of("name: w\nroot: {name: a, function: 'os.path:join', args: [{artifact: lnt.stdout}]}\n")
    assert "artifact 'lnt.stdout' names node 'lnt', which is not a node of this workflow" in message


def test_group_node_cannot_have_a_timeout() -> None:
    assert "timeout needs a command or a function" in error_of("name: w\nroot: {name: a, timeout: 5}\n")


def test_working_directory_is_relative_to_the_file(tmp_path: Path) -> None:
    workflow = load("name: w\nroot: {name: a, command: ls, working_directory: sub}\n", tmp_path)
    assert workflow.root.executable.cwd == (tmp_path / "sub").resolve()  # type: ignore[attr-defined]


def test_python_tags_are_refused() -> None:
    message = error_of("name: w\nroot: !!python/object:os.system {name: a}\n")
    assert (
        message == "wf.yml:2:7: YAML tag 'tag:yaml.org,2002:python/object:os.system' is not allowed in workflow files; "
        "remove it"
    )


def test_duplicate_yaml_keys_are_refused() -> None:
    assert error_of("name: w\nname: v\nroot: {name: a}\n") == "wf.yml:2:1: duplicate key 'name'"


def test_anchors_aliases_and_merge_keys_work() -> None:
    workflow = load(
        """
        name: w
        root:
          name: r
          children:
            - &base {name: a, command: echo, timeout: 5}
            - <<: *base
              name: b
        """
    )
    assert workflow.nodes["b"].executable.timeout == 5  # type: ignore[attr-defined]


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["name: w", 'a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    lines.append("root: {name: r}")
    assert "expands to too many values" in error_of("\n".join(lines) + "\n")


def test_empty_file_is_explained() -> None:
    assert error_of("") == "wf.yml:1:1: the file is empty; a workflow needs at least a name and a root"


def test_top_level_list_is_explained() -> None:
    assert error_of("- a\n- b\n") == "wf.yml:1:1: a workflow file holds a mapping (name:, root: or nodes:), not a list"


def test_yaml_syntax_error_has_its_position() -> None:
    assert error_of("name: w\nroot: {name: a\n").startswith("wf.yml:3:1: invalid YAML:")


def test_non_utf8_file_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "wf.yml"
    path.write_bytes(b"name: w\nroot: {name: \xff}\n")
    with pytest.raises(WorkflowError, match=r"wf.yml:2:14: the file is not UTF-8 text \(byte 0xff\)"):
        read_text(path)


def test_binary_file_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "wf.yml"
    path.write_bytes(b"name: w\0\0")
    with pytest.raises(WorkflowError, match="NUL character"):
        read_text(path)


def test_directory_without_workflow_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(
        WorkflowError, match=re.escape("no workflow file here; expected one of wtflow.yml, wtflow.yaml, wtflow.py")
    ):
        find_file(tmp_path)


PY_WORKFLOW = """
import wtflow

def greet():
    print("hi")

RAN = []
main = wtflow.Workflow("py", wtflow.Node("a", executable=wtflow.PyFunc(greet)))
other = wtflow.Workflow("other", wtflow.Node("b", executable=wtflow.Command("echo b")))
"""


def test_python_file_yields_its_module_level_workflows_without_running_them(tmp_path: Path) -> None:
    path = tmp_path / "wtflow_py_file_test.py"
    path.write_text(PY_WORKFLOW)
    workflows = load_file(path)
    assert [w.name for w in workflows] == ["py", "other"]


def test_python_file_error_has_its_line(tmp_path: Path) -> None:
    path = tmp_path / "wtflow_py_broken_test.py"
    path.write_text("import wtflow\n\nx = 1 / 0\n")
    with pytest.raises(WorkflowError, match=r"wtflow_py_broken_test.py:3:1: loading failed: ZeroDivisionError"):
        load_file(path)


@pytest.mark.parametrize(
    "text", ["name: w\nroot: {name: a, command: 'true'}\n", "name: w\nroot: {name: a, comand: x}\n"]
)
@pytest.mark.parametrize("enabled", [True, False])
def test_loading_leaves_the_garbage_collector_as_it_found_it(text: str, enabled: bool) -> None:
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with contextlib.suppress(WorkflowError):
            load_yaml(text)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


@pytest.mark.parametrize("setting", [None, "some_plugin"])
def test_importing_the_loader_leaves_the_pydantic_plugin_setting_as_it_was(setting: str | None) -> None:
    # Whatever the variable says, importing wtflow leaves it alone (see the test below).
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    if setting is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = setting
    code = "import os, wtflow.loader; print(os.environ.get('PYDANTIC_DISABLE_PLUGINS'))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout == f"{setting}\n"


def test_importing_the_loader_changes_no_environment_variable() -> None:
    code = "import os; before = dict(os.environ); import wtflow.loader; print(dict(os.environ) == before)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "True\n"


def test_command_items_must_be_text_each_at_its_position() -> None:
    assert error_of("name: w\nroot: {name: a, command: [x, 2]}\n") == "wf.yml:2:30: 1: expected text, got number 2"


def test_retries_mapping_problems_are_reported_at_their_values() -> None:
    message = error_of("name: w\nroot: {name: a, command: x, retries: {max: 'a', delay: 'zz', backoff: 0.5}}\n")
    assert message.splitlines() == [
        "wf.yml:2:44: max: expected a whole number, got string 'a'",
        "wf.yml:2:56: 'zz' is not a duration; write seconds (90) or e.g. 90s, 5m, 1h30m",
        "wf.yml:2:71: backoff: input should be greater than or equal to 1",
    ]


@pytest.mark.parametrize("value", ["'three'", "true", "1.5", "[1]"])
def test_retries_of_another_type_names_both_forms(value: str) -> None:
    message = error_of(f"name: w\nroot: {{name: a, command: x, retries: {value}}}\n")
    assert message == "wf.yml:2:38: retries must be a whole number or a mapping {max, delay, backoff}"


def test_unknown_container_key_suggests_the_right_one() -> None:
    message = error_of("name: w\nroot: {name: a, command: x, container: {image: x, imag: y}}\n")
    assert message == "wf.yml:2:51: unknown key 'imag'; did you mean 'image'?"


def test_environment_variable_name_with_an_equals_sign_is_refused_at_the_key() -> None:
    message = error_of("name: w\nenv: {'A=B': x}\nroot: {name: a}\n")
    assert message == "wf.yml:2:7: 'A=B' cannot be an environment variable name: it must not be empty or hold = or NUL"


def test_a_key_that_is_not_text_is_refused() -> None:
    message = error_of("name: w\nroot: {name: a, function: 'os.path:join', kwargs: {1: x}}\n")
    assert message == "wf.yml:2:52: keys must be text, got 1; quote it"


def test_many_problems_are_cut_short_and_counted_once_each() -> None:
    children = "".join(f"    - {{name: n{i}, command: 5}}\n" for i in range(60))
    lines = error_of(f"name: w\nroot:\n  name: a\n  children:\n{children}").splitlines()
    assert len(lines) == 51
    assert lines[0] == "wf.yml:5:27: command must be a string or a list of strings"
    assert lines[-1] == "wf.yml:1:1: ... and more problems (60 in all); fix these first"


def test_a_tree_deeper_than_the_validator_goes_is_explained() -> None:
    nested = "".join(f"{{name: n{i}, command: x, children: [" for i in range(300))
    message = error_of(f"name: w\nroot: {nested}{{name: leaf}}" + "]}" * 300 + "\n")
    assert message.startswith("wf.yml:2:")
    assert message.endswith(": nodes are nested too deeply; write the deepest levels as nodes with needs")


# -- every problem of the build at once -------------------------------------------------------


@pytest.fixture
def report_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module ``ci_report_first_hour`` beside the workflow file, forgotten after the test."""
    (tmp_path / "ci_report_first_hour.py").write_text("def summarize():\n    pass\n\ndef _private():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("ci_report_first_hour", None)


def test_a_duplicate_name_hides_neither_an_import_error_nor_an_artifact_typo() -> None:
    message = error_of(
        """
        name: w
        nodes:
          - {name: a, command: x}
          - {name: a, command: y}
          - {name: b, function: 'no_such_module_wtflow:run'}
          - {name: c, function: 'os.path:join', args: [{artifact: a.stdot}]}
        """
    )
    assert message.splitlines() == [
        "wf.yml:5:12: node name 'a' is used twice (first at wf.yml:4:12); node names must be unique",
        "wf.yml:6:25: function 'no_such_module_wtflow:run': cannot import 'no_such_module_wtflow': "
        "ModuleNotFoundError: No module named 'no_such_module_wtflow'",
        "wf.yml:7:59: artifact 'a.stdot': node 'a' produces only stderr, stdout; did you mean 'stdout'?",
    ]


def test_every_bad_function_is_reported() -> None:
    message = error_of("name: w\nnodes:\n  - {name: a, function: 'os:zzz1'}\n  - {name: b, function: 'os:zzz2'}\n")
    assert message.splitlines() == [
        "wf.yml:3:25: function 'os:zzz1': 'os' has no attribute 'zzz1'",
        "wf.yml:4:25: function 'os:zzz2': 'os' has no attribute 'zzz2'",
    ]


def test_a_missing_function_suggests_a_public_attribute_of_its_module(report_module: Path) -> None:
    message = error_of("name: w\nroot: {name: a, function: 'ci_report_first_hour:summarise'}\n", report_module)
    assert message == (
        "wf.yml:2:27: function 'ci_report_first_hour:summarise': 'ci_report_first_hour' has no attribute "
        "'summarise'; did you mean 'summarize'?"
    )


def test_a_missing_function_is_not_matched_to_a_private_attribute(report_module: Path) -> None:
    message = error_of("name: w\nroot: {name: a, function: 'ci_report_first_hour:privat'}\n", report_module)
    assert message.endswith("has no attribute 'privat'")


def test_problems_found_while_building_nodes_are_all_reported_in_file_order() -> None:
    message = error_of(
        """
        name: w
        nodes:
          - {name: b, command: x, needs: [zz], artifacts: [{name: stdout, path: out.txt}]}
          - {name: a, command: y, artifacts: [{name: result, path: r.json}]}
        """
    )
    assert message.splitlines() == [
        "wf.yml:4:35: node 'b' needs 'zz', which is not a node of this workflow",
        "wf.yml:4:52: artifact name 'stdout' is invalid: use a plain name other than stdout, stderr and result",
        "wf.yml:5:39: artifact name 'result' is invalid: use a plain name other than stdout, stderr and result",
    ]


def test_schema_problems_are_reported_alone_before_the_build() -> None:
    message = error_of("name: w\nnodes:\n  - {name: a, command: 5}\n  - {name: a, function: 'os:nope'}\n")
    assert message == "wf.yml:3:24: command must be a string or a list of strings"


# -- needs: a single name ---------------------------------------------------------------------


def test_needs_may_be_a_single_name() -> None:
    workflow = load("name: w\nnodes:\n  - {name: a, command: x}\n  - {name: b, command: y, needs: a}\n")
    assert workflow.nodes["b"].needs == ("a",)  # type: ignore[attr-defined]


def test_an_unknown_single_need_is_reported_at_its_value() -> None:
    message = error_of("name: w\nnodes:\n  - {name: build, command: x}\n  - {name: b, command: y, needs: biuld}\n")
    assert message == "wf.yml:4:34: node 'b' needs 'biuld', which is not a node of this workflow; did you mean 'build'?"


# -- x- keys ----------------------------------------------------------------------------------


def test_top_level_x_keys_are_ignored_and_hold_anchors_nodes_merge() -> None:
    workflow = load(
        """
        name: w
        x-defaults: &defaults {timeout: 5, env: {A: "1"}}
        nodes:
          - <<: *defaults
            name: a
            command: x
        """
    )
    assert workflow.nodes["a"].executable.timeout == 5  # type: ignore[attr-defined]
    assert workflow.nodes["a"].executable.env == {"A": "1"}  # type: ignore[attr-defined]


def test_x_keys_below_the_top_level_are_unknown_keys() -> None:
    message = error_of("name: w\nroot: {name: a, command: x, x-note: hi}\n")
    assert message.startswith("wf.yml:2:29: unknown key 'x-note'")


# -- the implicit root ------------------------------------------------------------------------


def test_the_graph_forms_root_is_marked_implicit() -> None:
    assert load("name: b\nnodes: [{name: x, command: 'true'}]").implicit_root  # type: ignore[attr-defined]


def test_the_tree_forms_root_is_the_users() -> None:
    assert not load("name: b\nroot: {name: x, command: 'true'}").implicit_root  # type: ignore[attr-defined]


# -- NUL characters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ('{name: "a\\0b", command: x}', "wf.yml:2:14: name: 'a\\x00b' holds a NUL character (\\0)"),
        ('{name: a, command: "echo \\0"}', "wf.yml:2:26: command: 'echo \\x00' holds a NUL character (\\0)"),
        ('{name: a, command: [echo, "\\x00"]}', "wf.yml:2:33: command[1]: '\\x00' holds a NUL character (\\0)"),
        ('{name: a, command: x, env: {"A\\0": v}}', "wf.yml:2:35: key 'A\\x00' holds a NUL character (\\0)"),
        ('{name: a, command: x, env: {A: "\\u0000"}}', "wf.yml:2:38: A: '\\x00' holds a NUL character (\\0)"),
        (
            '{name: a, function: "os.path:join", args: [{k: "\\0"}]}',
            "wf.yml:2:54: k: '\\x00' holds a NUL character (\\0)",
        ),
    ],
    ids=["name", "command", "argv-item", "env-name", "env-value", "function-argument"],
)
def test_a_nul_character_is_refused_at_its_place(node: str, expected: str) -> None:
    assert error_of(f"name: w\nroot: {node}\n") == expected


def test_nul_characters_are_reported_with_the_other_schema_problems() -> None:
    message = error_of('name: w\nroot: {name: "a\\0", command: 5}\n')
    assert message.splitlines() == [
        "wf.yml:2:14: name: 'a\\x00' holds a NUL character (\\0)",
        "wf.yml:2:30: command must be a string or a list of strings",
    ]


# -- paths stay inside ------------------------------------------------------------------------


def test_a_working_directory_outside_the_files_directory_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "project" / "ci"
    base.mkdir(parents=True)
    text = (
        "name: w\nroot:\n  name: a\n  command: x\n  working_directory: ../../..\n"
        "  artifacts: [{name: pw, path: etc/passwd}]\n"
    )
    message = error_of(text, base)
    assert message == (
        f"wf.yml:5:22: working_directory '../../..' is {tmp_path.parent.resolve()}, outside the workflow file's "
        f"directory {base.resolve()}; keep it inside that directory"
    )


def test_an_artifact_path_through_a_link_out_of_the_working_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "system").symlink_to("/etc")
    message = error_of("name: w\nroot: {name: a, command: x, artifacts: [{name: pw, path: system/passwd}]}\n", tmp_path)
    assert message == (
        f"wf.yml:2:58: artifact 'pw': path 'system/passwd' leads outside the node's working directory "
        f"{tmp_path.resolve()}; keep it inside"
    )


# -- merge keys in the YAML spec's order ------------------------------------------------------

MERGED = """
    name: w
    x-a: &a {timeout: 1, env: {FROM: a}}
    x-b: &b {timeout: 2, env: {FROM: b}, continue_on_error: true}
    root:
      <<: [*a, *b]
      name: r
      command: x
      {own}
"""


def test_of_merged_mappings_the_earlier_wins() -> None:
    workflow = load(MERGED.replace("{own}", ""))
    assert workflow.root.executable.timeout == 1  # type: ignore[attr-defined]
    assert workflow.root.executable.env == {"FROM": "a"}  # type: ignore[attr-defined]
    assert workflow.root.continue_on_error  # type: ignore[attr-defined]


def test_a_mappings_own_key_wins_over_every_merged_one() -> None:
    workflow = load(MERGED.replace("{own}", "timeout: 3"))
    assert workflow.root.executable.timeout == 3  # type: ignore[attr-defined]


def test_a_merged_mapping_brings_what_it_merged_itself() -> None:
    text = "name: w\nx-a: &a {timeout: 1}\nx-b: &b {<<: *a, env: {B: b}}\nroot: {<<: *b, name: r, command: x}\n"
    executable = load(text).root.executable  # type: ignore[attr-defined]
    assert (executable.timeout, executable.env) == (1, {"B": "b"})


def test_merging_a_scalar_is_refused_at_its_place() -> None:
    message = error_of("name: w\nx-a: &a 5\nroot: {<<: *a, name: r}\n")
    assert message == "wf.yml:2:6: a merge key (<<) takes a mapping or a list of mappings, not a scalar"


def test_an_unknown_top_level_key_says_keys_of_your_own_start_with_x() -> None:
    assert error_of("name: w\nzzz: 1\nroot: {name: a}\n").endswith("; keys of your own start with x-")


def test_a_bad_container_is_reported_at_its_key() -> None:
    message = error_of("name: w\nroot: {name: a, command: x, container: {image: i, volumes: [nocolon]}}\n")
    assert message == "wf.yml:2:40: container volume 'nocolon' must be HOST:CONTAINER or HOST:CONTAINER:MODE"


def test_runs_on_and_resources_reach_the_node() -> None:
    workflow = load(
        """
        name: place
        nodes:
          - {name: setup, command: make, runs_on: local}
          - {name: train, command: python train.py, needs: setup, resources: {GPU: 1, MEM: 4e9}}
        """
    )
    nodes = workflow.nodes  # type: ignore[attr-defined]
    assert (nodes["setup"].runs_on, nodes["setup"].resources) == ("local", {})
    assert (nodes["train"].runs_on, nodes["train"].resources) == (None, {"GPU": 1.0, "MEM": 4e9})


def test_bad_placement_is_reported_at_its_value() -> None:
    message = error_of(
        """
        name: place
        nodes:
          - {name: a, command: x, runs_on: cloud}
          - {name: b, command: x, resources: {GPU: 0}}
          - {name: c, command: x, resources: {GPU: lots}}
          - {name: d, runs_on: dask, children: [{name: e, command: x}]}
        """
    )
    assert message.splitlines() == [
        "wf.yml:4:36: runs_on: input should be 'local' or 'dask', got string 'cloud'",
        "wf.yml:5:44: GPU: input should be greater than 0",
        "wf.yml:6:44: a resource amount must be a number, got 'lots'",
        "wf.yml:7:5: runs_on needs a command or a function",
    ]
