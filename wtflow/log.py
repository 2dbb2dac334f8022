"""Structured logging, configured once by the CLI: JSON lines, or a readable console format.

Library code never configures logging; used as a library, wtflow logs nothing.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from enum import StrEnum
from json.encoder import encode_basestring_ascii  # what json.dumps does with a str: 3x faster called directly
from typing import Any, TextIO

import msgspec
import structlog


class LogFormat(StrEnum):
    """How wtflow's own log lines look."""

    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


LEVELS = ("debug", "info", "warning", "error", "critical")
_LEVEL_NUMBERS = logging.getLevelNamesMapping()
_PLACEHOLDER = "\x00wtflow-line\x00"
_json_stream: TextIO | None = None  # where configure() sends JSON log lines, if it does
_json_events: JsonEvents | None = None  # how configure()'s JSON logs are written directly, if they are


_encode = msgspec.json.Encoder().encode


def dumps(data: Any, **options: Any) -> str:
    """A log line's JSON, by msgspec where it can, else ``json.dumps(data, **options)``.

    msgspec renders a lifecycle line in 14 us against json.dumps' 24 (two lines a node). A
    type msgspec does not know (a path, any object: structlog's ``default`` writes its repr) and
    text that is not ASCII (json.dumps escapes it, so a log stays ASCII wherever it is written)
    go to json.dumps. msgspec writes datetimes as ISO 8601 and a float NaN as null, where
    json.dumps wrote a repr and a bare ``NaN`` (which is not JSON).
    """
    try:
        encoded = _encode(data)
    except TypeError:
        return json.dumps(data, **options)
    return encoded.decode() if encoded.isascii() else json.dumps(data, **options)


def resolve(log_format: LogFormat, stream: TextIO) -> LogFormat:
    """``auto`` becomes ``console`` on a terminal and ``json`` elsewhere (CI, pipes, files)."""
    if log_format is LogFormat.AUTO:
        return LogFormat.CONSOLE if stream.isatty() else LogFormat.JSON
    return log_format


def configure(log_format: LogFormat, level: str = "info", stream: TextIO | None = None) -> LogFormat:
    """Send structlog's output to ``stream`` (stderr) in ``log_format``; return the format chosen."""
    global _json_stream, _json_events  # noqa: PLW0603 - logging is configured once per process, like structlog's own
    stream = stream or sys.stderr
    chosen = resolve(log_format, stream)
    _json_stream = stream if chosen is LogFormat.JSON else None
    renderer: structlog.typing.Processor
    if chosen is LogFormat.JSON:
        renderer = structlog.processors.JSONRenderer(serializer=dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        renderer,
    ]
    threshold = _LEVEL_NUMBERS[level.upper()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        # WriteLogger writes a line in one write() (print() makes two: the line, then its newline).
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    _json_events = JsonEvents(stream, threshold, processors) if chosen is LogFormat.JSON else None
    return chosen


class JsonEvents:
    """wtflow's lifecycle events as :func:`configure`'s JSON logs write them, without structlog's pipeline.

    The configured processors, done directly: the fields, then ``event``, then the bound context
    variables (``run_id``), ``level`` and an ISO 8601 UTC ``timestamp``, rendered by :func:`dumps`.
    8 us a line against structlog's 19 here, two lines a node. A test holds both to the same
    lines. Once structlog's processors are no longer those (``structlog.testing.capture_logs``
    swaps them in place), :meth:`log` declines and the caller logs through structlog.
    """

    def __init__(self, stream: TextIO, threshold: int, processors: list[structlog.typing.Processor]) -> None:
        self._stream = stream
        self._threshold = threshold
        self._processors = processors  # the list structlog holds, and what it held then
        self._configured = tuple(processors)

    @classmethod
    def for_configured(cls) -> JsonEvents | None:
        """The one :func:`configure` set up for JSON logs, if it did."""
        return _json_events

    def log(self, level: str, event: str, **fields: Any) -> bool:
        """Write ``event`` at ``level`` (``info``, ``warning``, ``error``) with ``fields``; ``False`` if it cannot."""
        if tuple(self._processors) != self._configured or structlog.get_config()["processors"] is not self._processors:
            return False
        if _LEVEL_NUMBERS[level.upper()] < self._threshold:
            return True  # below the configured level: nothing to write
        fields["event"] = event
        for key, value in structlog.contextvars.get_contextvars().items():
            fields.setdefault(key, value)
        fields["level"] = level
        fields["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self._stream.write(dumps(fields, default=repr) + "\n")
        self._stream.flush()
        return True


class OutputLines:
    """Logs node output as ``output`` events, each chunk's lines in one write.

    structlog renders and writes every event on its own, 15 us and a system call per line: a
    run printing a million lines spent 15 s on it. A chunk's lines share every field but the
    line itself (they arrived together, so the timestamp too), so the chunk is rendered once
    through the configured processors with a placeholder, and each line's JSON takes its place.
    """

    def __init__(self, stream: TextIO) -> None:
        config = structlog.get_config()
        self._stream = stream
        self._render = structlog.wrap_logger(
            structlog.ReturnLogger(), processors=config["processors"], wrapper_class=config["wrapper_class"]
        ).bind()
        self._marker = encode_basestring_ascii(_PLACEHOLDER)

    @classmethod
    def for_configured(cls) -> OutputLines | None:
        """One for the JSON logs :func:`configure` set up; ``None`` unless it set up JSON logs."""
        return cls(_json_stream) if _json_stream is not None else None

    def write(self, node: str, stream: str, lines: list[str]) -> bool:
        """Log ``lines``; ``False`` if they cannot be written this way (then log them one by one)."""
        rendered = self._render.info("output", node=node, stream=stream, line=_PLACEHOLDER)
        if rendered is None:
            return True  # below the configured level
        if not isinstance(rendered, str) or rendered.count(self._marker) != 1:
            return False  # the placeholder is not where only the line can be
        before, after = rendered.split(self._marker)
        self._stream.write("".join([f"{before}{encode_basestring_ascii(line)}{after}\n" for line in lines]))
        self._stream.flush()
        return True
