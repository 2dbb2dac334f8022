"""Every error wtflow raises on purpose, and the exit code each one means.

This module is a leaf: it imports nothing from wtflow, so any module may use it.

Hierarchy::

    WtflowError                      exit 1  (base; never raised itself)
    ├── NodeFailed                   exit 1  a node failed and the run failed with it
    ├── UsageError                   exit 2  invalid input from the user
    │   ├── WorkflowError            exit 2  a workflow definition is invalid
    │   └── ConfigError              exit 2  a configuration value is invalid
    ├── ArtifactError                exit 2  an artifact was read before it existed
    ├── BackendUnavailable           exit 3  database, docker engine or Dask scheduler cannot be reached
    └── Interrupted                  exit 130 the run was stopped by a signal (128 + its number:
                                              143 for SIGTERM, 129 for SIGHUP)

A run that ends ``succeeded`` exits 0. :data:`EXIT_CODES` is the table the CLI's help and the
engine's return value come from.
"""

from __future__ import annotations


class WtflowError(Exception):
    """Base class of wtflow's own errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class NodeFailed(WtflowError):
    """A node failed and, with it, the run."""

    exit_code = 1


class UsageError(WtflowError):
    """The user gave wtflow something it cannot use."""

    exit_code = 2


class WorkflowError(UsageError):
    """A workflow definition is invalid: names, references, cycles or values.

    ``node`` names the node it is about; ``field`` the key (and list index or mapping key)
    within that node, as a workflow file writes it (``("env", "HOME")``, ``("if",)``); ``offset``
    the character within that value, for a problem inside an expression; ``more`` the other
    problems found at once.
    """

    def __init__(
        self,
        message: str,
        *,
        location: str | None = None,
        node: str | None = None,
        field: tuple[str | int, ...] = (),
        offset: int | None = None,
        more: tuple[WorkflowError, ...] = (),
    ) -> None:
        self.message = message
        self.location = location
        self.node = node
        self.field = field
        self.offset = offset
        self.more = more  # further problems found in the same check, each with its own node and field
        super().__init__(f"{location}: {message}" if location else message)


def field_name(path: tuple[str | int, ...]) -> str:
    """A key path as a message names it: ``command[1]``, ``container.env.HOME``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f"{'.' if text else ''}{part}"
    return text


class ConfigError(UsageError):
    """A configuration value (environment variable, INI key, flag) is invalid."""


class ArtifactError(WtflowError):
    """An artifact was read that holds no data (not produced, or not resolved yet)."""

    exit_code = 2


class BackendUnavailable(WtflowError):
    """A backend wtflow needs (database, docker engine, Dask scheduler) cannot be reached."""

    exit_code = 3


class Interrupted(WtflowError):
    """The run was stopped by a signal: SIGINT (130), SIGTERM (143), SIGHUP (129)."""

    exit_code = 130

    def __init__(self, message: str = "interrupted", *, signal_number: int = 2) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number


SUCCESS = 0

EXIT_CODES: tuple[tuple[str, str], ...] = (
    (str(SUCCESS), "success"),
    (str(NodeFailed.exit_code), "a node failed"),
    (str(UsageError.exit_code), "invalid workflow, configuration or usage"),
    (str(BackendUnavailable.exit_code), "a backend is unavailable (database, docker, Dask)"),
    (f"{Interrupted.exit_code}", "interrupted (Ctrl-C); 143 for SIGTERM, 129 for SIGHUP"),
)
"""Every exit code of ``wtflow`` and what it means, in order."""

_RUN_EXIT_CODES = {"succeeded": SUCCESS, "failed": NodeFailed.exit_code, "cancelled": Interrupted.exit_code}


def run_exit_code(status: str, signal_number: int | None = None) -> int:
    """What a run that ended with ``status`` (``succeeded``, ``failed``, ``cancelled``) exits with.

    A run cancelled by a signal exits 128 + its number, as a shell reports it.
    """
    if status == "cancelled" and signal_number is not None:
        return Interrupted(signal_number=signal_number).exit_code
    return _RUN_EXIT_CODES[status]
