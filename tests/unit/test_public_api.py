"""The public API is exactly the documented names, each the real class or function of its home module."""

from __future__ import annotations

import sys

import pytest

import wtflow

# What README.md documents of the Python API (its tables of the API, configuration and errors).
DOCUMENTED = {
    "Artifact",
    "ArtifactError",
    "BackendUnavailable",
    "Command",
    "Config",
    "ConfigError",
    "Container",
    "DaskConfig",
    "DatabaseConfig",
    "Engine",
    "FileArtifact",
    "Interrupted",
    "Matrix",
    "Node",
    "NodeFailed",
    "NodeResult",
    "NodeStatus",
    "PyFunc",
    "Retry",
    "RunConfig",
    "RunResult",
    "RunStatus",
    "StorageConfig",
    "UsageError",
    "Workflow",
    "WorkflowError",
    "WtflowError",
    "__version__",
}


def test_all_is_exactly_the_documented_api() -> None:
    assert set(wtflow.__all__) == DOCUMENTED
    assert len(wtflow.__all__) == len(DOCUMENTED)


@pytest.mark.parametrize("name", sorted(DOCUMENTED - {"__version__"}))
def test_each_exported_name_is_the_member_of_its_home_module(name: str) -> None:
    member = getattr(wtflow, name)
    assert member.__module__.startswith("wtflow.")
    assert getattr(sys.modules[member.__module__], name) is member
    assert vars(wtflow)[name] is member  # a real attribute of the package once used


def test_star_import_binds_every_exported_name_and_nothing_else() -> None:
    namespace: dict[str, object] = {}
    exec("from wtflow import *", namespace)  # noqa: S102 - the statement under test
    assert set(namespace) - {"__builtins__"} == DOCUMENTED


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = wtflow.Nope  # type: ignore[attr-defined]


def test_every_exported_class_has_a_docstring() -> None:
    for name in wtflow.__all__:
        member = getattr(wtflow, name)
        if isinstance(member, type):
            assert member.__doc__, name
