"""What the runner sends the database writer: tuples of plain values, cheap to pickle and to read.

Tuples of plain values pickle and unpickle many times faster than the event dataclasses with
their enums, Paths and aware datetimes, in the runner and in the writer, for every node. Times
travel as whole microseconds since the epoch. This module imports nothing heavy: the runner's
recorder imports it, and the runner does not import SQLAlchemy.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

RunOpenedRow = tuple[
    Literal["opened"],
    str,  # run id
    str,  # workflow
    int,  # started_at
    str,  # host
    int,  # pid
    tuple[str, ...],  # the workflow's nodes, in order
    str | None,  # the directory of the workflow's file, resolved
]


def workflow_dir(base_dir: Path | None) -> str | None:
    """The directory of a workflow's file as its runs record it, and as a rerun looks for them: resolved."""
    return str(base_dir.resolve()) if base_dir is not None else None


NodeStartedRow = tuple[Literal["started"], str, str, int, int]  # node, path, attempt, started_at
NodeFinishedRow = tuple[
    Literal["finished"],
    str,  # node
    str,  # path
    str,  # status
    int | None,  # exit code
    int,  # attempt
    int | None,  # started_at
    int,  # finished_at
    str | None,  # error
    tuple[tuple[str, str, int], ...],  # artifacts: name, path, size
    tuple[tuple[str, str], ...],  # outputs: key, value
    str | None,  # reused from: a cache key, an earlier run's id
    float | None,  # seconds saved by not running it
    str | None,  # the cluster worker it ran on
]
RunClosedRow = tuple[
    Literal["closed"],
    str,  # run id
    str,  # status
    int,  # exit code
    int,  # finished_at
    str | None,  # error
]
Message = RunOpenedRow | NodeStartedRow | NodeFinishedRow | RunClosedRow
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """``moment`` (timezone-aware) as whole microseconds since the epoch: exact, unlike a float."""
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    """The UTC time :func:`to_micros` gave ``micros`` for."""
    return _EPOCH + timedelta(microseconds=micros)
