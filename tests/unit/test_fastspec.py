"""msgspec's reading of workflow files (wtflow.fastspec) never accepts more than pydantic's, and reads alike."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from wtflow import fastspec, loader
from wtflow.spec import WorkflowSpec

ROOT = Path(__file__).parents[2]

# Values each key may take that fit it, and the near misses a user writes.
VALID: dict[str, list[Any]] = {
    "name": ["a", "b", "build step"],
    "command": ["true", "echo hi", ["echo", "x"]],
    "function": ["m:f", "pkg.mod:obj.attr"],
    "args": [[], [1, "x"], [{"artifact": "a.stdout"}]],
    "kwargs": [{}, {"k": 1}],
    "parallel": [True, False],
    "needs": [[], ["a"]],
    "env": [{}, {"A": "1"}, {"PATH": "/bin", "a b": ""}],
    "working_directory": ["sub", ""],
    "timeout": [1, 1.5, 0, "90s", "1h30m", "90", " 5m ", None],
    "retries": [0, 2, None, {"max": 1}, {"max": 1, "delay": "5s", "backoff": 2}, {"max": 3, "delay": 0.5}],
    "continue_on_error": [True, False],
    "artifacts": [[], [{"name": "r", "path": "r.txt"}]],
    "container": [
        None,
        {"image": "busybox"},
        {"image": "b", "pull": "always"},
        {"image": "b", "env": {"A": "1"}, "volumes": ["a:b"], "workdir": "/w", "network": "none", "user": "1:1"},
    ],
    "max_parallel": [1, 2, None],
    "secrets": [[], ["A"]],
}
INVALID: dict[str, list[Any]] = {
    "name": ["", 7, None],
    "command": ["", "  ", [], [1], 5],
    "function": ["m:f\n", "nocolon", ":f", "m:", 3],
    "args": ["x"],
    "kwargs": [{1: "v"}, "x"],
    "parallel": ["yes", 1, None],
    "needs": ["a", [1]],
    "env": [{"A": 1}, {"A=B": "x"}, {"": "x"}, {"A\n": "x"}, {"A\x00": "x"}, {1: "x"}, []],
    "working_directory": [1],
    "timeout": ["-1", -1, True, "abc", float("inf"), float("nan"), []],
    "retries": [-1, True, 1.0, {"max": -1}, {"max": 1, "backoff": 0.5}, {"max": 1, "x": 1}, {"delay": 1}],
    "continue_on_error": [0, "no"],
    "artifacts": [[{"name": "", "path": "x"}], [{"name": "r"}], "x"],
    "container": [
        {"image": ""},
        {"image": "b", "pull": "often"},
        {"image": "b", "extra": 1},
        {"image": "b", "volumes": "a:b"},
    ],
    "max_parallel": [0, True, "2", 2.0],
    "secrets": [["A=B"], "A", [1]],
    "x": [1],
}
KINDS = {  # the keys each kind of node may set
    "command": ["timeout", "retries", "env", "working_directory", "continue_on_error", "artifacts", "container"],
    "function": ["args", "kwargs", "timeout", "retries", "env", "working_directory", "continue_on_error"],
    "group": ["parallel", "needs", "continue_on_error", "artifacts"],
}


def fitting(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={key: st.sampled_from(VALID[key]) for key in keys})


leaves = st.sampled_from(["command", "function"]).flatmap(
    lambda kind: st.builds(
        lambda name, executable, rest: {"name": name, kind: executable, **rest},
        st.sampled_from(VALID["name"]),
        st.sampled_from(VALID[kind]),
        fitting(KINDS[kind]),
    )
)
nodes = st.recursive(
    leaves,
    lambda children: st.builds(
        lambda name, rest, kids: {"name": name, **rest, "children": kids},
        st.sampled_from(VALID["name"]),
        fitting(KINDS["group"]),
        st.lists(children, max_size=3),
    ),
    max_leaves=6,
)
fitting_workflows = st.builds(
    lambda name, rest, form: {"name": name, **rest, **form},
    st.sampled_from(VALID["name"]),
    fitting(["env", "max_parallel", "secrets"]),
    st.one_of(
        st.builds(lambda root: {"root": root}, nodes),
        st.builds(lambda listed: {"nodes": listed}, st.lists(nodes)),
    ),
)


@st.composite
def workflows(draw: st.DrawFn) -> dict[str, Any]:
    """A workflow that fits the format, or one with a near miss: a value, a key or the form."""
    document: dict[str, Any] = copy.deepcopy(draw(fitting_workflows))  # the sampled values are shared
    mistake = draw(st.sampled_from(["none", "value", "key", "both forms", "no form"]))
    if mistake in {"value", "key"}:
        named = [mapping for mapping in _mappings(document) if "name" in mapping]  # nodes, mostly
        target = draw(st.sampled_from(named))
        if mistake == "key":
            target[draw(st.sampled_from(sorted(VALID)))] = draw(st.sampled_from([*VALID["name"], 1]))
        else:
            key = draw(st.sampled_from(sorted(INVALID)))
            target[key] = draw(st.sampled_from(INVALID[key]))
    elif mistake == "both forms":
        document["root"] = document["nodes"] = draw(st.lists(nodes, max_size=1))
    elif mistake == "no form":
        document.pop("root", None)
        document.pop("nodes", None)
    return document


def _mappings(value: Any) -> Any:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _mappings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _mappings(item)


def plain(value: Any) -> Any:
    """A Struct tree as the dicts pydantic's ``model_dump`` gives."""
    if isinstance(value, msgspec.Struct):
        return {key: plain(item) for key, item in msgspec.structs.asdict(value).items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def pydantic_reading(document: Any) -> dict[str, Any] | None:
    try:
        return WorkflowSpec.model_validate(document).model_dump()
    except ValidationError:
        return None


def command_node(**fields: Any) -> dict[str, Any]:
    return {"name": "w", "root": {"name": "a", "command": "true", **fields}}


@settings(max_examples=800, deadline=None)
@given(workflows())
@example(command_node(retries=-1))
@example(command_node(retries={"max": 1, "backoff": 0.5}))
@example(command_node(timeout=float("nan")))
@example(command_node(env={"A\n": "x"}))
@example({"name": "w", "root": {"name": "a", "function": "m:f\n"}})
def test_what_msgspec_accepts_pydantic_accepts_and_reads_alike(document: dict[str, Any]) -> None:
    fast = fastspec.read(document)
    if fast is not None:
        assert plain(fast) == pydantic_reading(document)


@settings(max_examples=800, deadline=None)
@given(workflows())
def test_what_pydantic_accepts_msgspec_accepts(document: dict[str, Any]) -> None:
    # Not needed for correctness (the loader asks pydantic whenever msgspec refuses), but a
    # valid file that msgspec refused would pay pydantic's import on every run.
    if pydantic_reading(document) is not None:
        assert fastspec.read(document) is not None


@pytest.mark.parametrize("path", sorted([*ROOT.glob("examples/**/*.yml"), ROOT / "wtflow.yml"]), ids=lambda p: p.name)
def test_the_repositorys_workflow_files_are_read_without_pydantic(path: Path) -> None:
    assert fastspec.read(yaml.safe_load(path.read_text())) is not None


def test_loading_a_valid_file_does_not_import_pydantic(tmp_path: Path) -> None:
    (tmp_path / "wtflow.yml").write_text("name: quick\nnodes:\n  - {name: a, command: 'true', timeout: 5m}\n")
    script = (
        "import sys; from pathlib import Path; from wtflow.loader import load_file; "
        "load_file(Path(sys.argv[1])); print(sorted(m for m in sys.modules if m.startswith('pydantic')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, tmp_path / "wtflow.yml"], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_tree_too_deep_for_msgspec_is_left_to_pydantic() -> None:
    node: dict[str, Any] = {"name": "leaf", "command": "true"}
    for depth in range(2000):
        node = {"name": f"n{depth}", "children": [node]}
    assert fastspec.read({"name": "deep", "root": node}) is None


def test_a_document_msgspec_refuses_is_read_by_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastspec, "read", lambda _data: None)
    workflow = loader.load_yaml("name: wf\nroot: {name: a, command: 'true', timeout: 90s}\n")
    assert workflow.root.executable is not None
    assert workflow.root.executable.timeout == 90.0
