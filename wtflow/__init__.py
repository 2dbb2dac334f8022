"""wtflow ("What The Flow"): an asynchronous workflow runner.

A :class:`Workflow` is a tree of :class:`Node` objects, each running a :class:`Command` or a
:class:`PyFunc`; an :class:`Engine` runs it, streaming every node's output into
:class:`Artifact` files and, when configured, recording the run in a database.
"""

from wtflow.config import Config, DatabaseConfig, RunConfig, StorageConfig
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
from wtflow.model import Artifact, Command, Container, FileArtifact, Node, PyFunc, Retry, Workflow

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "ArtifactError",
    "BackendUnavailable",
    "Command",
    "Config",
    "ConfigError",
    "Container",
    "DatabaseConfig",
    "Engine",
    "FileArtifact",
    "Interrupted",
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
