"""Structured logging, configured once by the CLI: JSON lines, or a readable console format.

Library code never configures logging; used as a library, wtflow logs nothing.
"""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from typing import TextIO

import structlog


class LogFormat(StrEnum):
    """How wtflow's own log lines look."""

    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


LEVELS = ("debug", "info", "warning", "error", "critical")


def resolve(log_format: LogFormat, stream: TextIO) -> LogFormat:
    """``auto`` becomes ``console`` on a terminal and ``json`` elsewhere (CI, pipes, files)."""
    if log_format is LogFormat.AUTO:
        return LogFormat.CONSOLE if stream.isatty() else LogFormat.JSON
    return log_format


def configure(log_format: LogFormat, level: str = "info", stream: TextIO | None = None) -> LogFormat:
    """Send structlog's output to ``stream`` (stderr) in ``log_format``; return the format chosen."""
    stream = stream or sys.stderr
    chosen = resolve(log_format, stream)
    renderer: structlog.typing.Processor
    if chosen is LogFormat.JSON:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        # WriteLogger writes a line in one write() (print() makes two: the line, then its newline).
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    return chosen
