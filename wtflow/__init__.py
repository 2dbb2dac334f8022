"""wtflow ("What The Flow"): an asynchronous workflow runner.

A :class:`Workflow` is a tree of :class:`Node` objects, each running a :class:`Command` or a
:class:`PyFunc`; an :class:`Engine` runs it, streaming every node's output into
:class:`Artifact` files and, when configured, recording the run in a database.
"""

from __future__ import annotations

import importlib

# typing's flag without importing typing: `wtflow run` starts its database writer right after
# this module loads, and a run with a database waits for the writer's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from wtflow.config import Config, DaskConfig, DatabaseConfig, RunConfig, StorageConfig
    from wtflow.engine import Engine, NodeResult, RunResult
    from wtflow.errors import (
        ArtifactError,
        BackendUnavailable,
        ConfigError,
        Interrupted,
        NodeFailed,
        UsageError,
        WorkflowError,
        WtflowError,
    )
    from wtflow.events import NodeStatus, RunStatus
    from wtflow.matrix import Matrix
    from wtflow.model import Artifact, Command, Container, FileArtifact, Node, PyFunc, Retry, Workflow

__version__ = "0.1.0"

# Imported on first use, so helper processes (the database writer, the fork server) that
# import one submodule do not pay for the engine.
_HOMES = {
    **dict.fromkeys(["Config", "DaskConfig", "DatabaseConfig", "RunConfig", "StorageConfig"], "wtflow.config"),
    **dict.fromkeys(["Engine", "NodeResult", "RunResult"], "wtflow.engine"),
    **dict.fromkeys(
        [
            "ArtifactError",
            "BackendUnavailable",
            "ConfigError",
            "Interrupted",
            "NodeFailed",
            "UsageError",
            "WorkflowError",
            "WtflowError",
        ],
        "wtflow.errors",
    ),
    **dict.fromkeys(["NodeStatus", "RunStatus"], "wtflow.events"),
    "Matrix": "wtflow.matrix",
    **dict.fromkeys(
        ["Artifact", "Command", "Container", "FileArtifact", "Node", "PyFunc", "Retry", "Workflow"], "wtflow.model"
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'wtflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
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
]
