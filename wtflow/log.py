"""Structured logging, configured once by the CLI: JSON lines, or a readable console format.

Library code never configures logging; used as a library, wtflow logs nothing.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from enum import StrEnum
from json.encoder import encode_basestring_ascii  # what json.dumps does with a str, called directly
from typing import Any, TextIO, cast

import msgspec

# structlog imports rich, when it is installed, for tracebacks wtflow never logs: that import
# costs more than the rest of a short run's start. With rich hidden while structlog loads, it
# takes its plain ones; the progress region imports rich itself, when it is shown.
if "rich" in sys.modules:
    import structlog
else:
    sys.modules["rich"] = None  # type: ignore[assignment]  # an import of rich fails, as when it is missing
    try:
        import structlog
    finally:
        del sys.modules["rich"]


class _Stderr:
    """``sys.stderr`` as it is at each write: the progress region stands in for it while a run is shown."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class LogFormat(StrEnum):
    """How wtflow's own log lines look."""

    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


LEVELS = ("debug", "info", "warning", "error", "critical")
_LEVEL_NUMBERS = logging.getLevelNamesMapping()
_PLACEHOLDER = "\x00wtflow-line\x00"
_json_stream: TextIO | None = None  # where configure() sends JSON log lines, if it does


_encode = msgspec.json.Encoder().encode


def dumps(data: Any, **options: Any) -> str:
    """A log line's JSON, by msgspec where it can, else ``json.dumps(data, **options)``.

    msgspec renders a line in about half the time json.dumps takes. A type msgspec does not
    know (a path, any object: structlog's ``default`` writes its repr) and text that is not
    ASCII (json.dumps escapes it, so a log stays ASCII wherever it is written) go to json.dumps.
    msgspec writes datetimes as ISO 8601 and a float NaN as null, where json.dumps wrote a repr
    and a bare ``NaN`` (which is not JSON).
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
    global _json_stream  # noqa: PLW0603 - logging is configured once per process, like structlog's own
    # Not sys.stderr itself: what stands in for it while the progress region is shown gets the lines.
    target = stream or cast("TextIO", _Stderr())
    stream = stream or sys.stderr
    chosen = resolve(log_format, stream)
    _json_stream = target if chosen is LogFormat.JSON else None
    processors: list[structlog.typing.Processor]
    if chosen is LogFormat.JSON:
        processors = [
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=dumps),
        ]
    else:  # for a person at a terminal: short lines, local time
        processors = [
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            shorten_lifecycle,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=stream.isatty(), pad_event_to=0),
        ]
    threshold = _LEVEL_NUMBERS[level.upper()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        # WriteLogger writes a line in one write() (print() makes two: the line, then its newline).
        logger_factory=structlog.WriteLoggerFactory(target),
        cache_logger_on_first_use=False,
    )
    return chosen


def _seconds(value: object) -> str:
    return f"{value:.2f}s" if isinstance(value, int | float) else "-"


def shorten_lifecycle(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Lifecycle lines as a person reads them on a terminal: ``lint failed in 0.42s, exit 1``.

    The run id is said once, when the run starts; a node's line names the node, what happened, how
    long it took, the attempt after the first and an exit code that is not 0. Other events pass as they are.
    """
    event = event_dict.get("event")
    if event not in {"node_started", "node_finished", "node_retrying", "run_finished"}:
        return event_dict
    fields = dict(event_dict)
    fields.pop("run_id", None)
    node = fields.pop("node", None)
    attempt = fields.pop("attempt", 1)
    again = f" (attempt {attempt})" if isinstance(attempt, int) and attempt > 1 else ""
    if event == "node_started":
        replaying = fields.pop("replaying", None)
        how = "started"
        if replaying == "cached":
            how = "cached: its earlier output follows"
        elif replaying:  # reused: a rerun takes the earlier run's result and does not show its output again
            how = f"{replaying} from the earlier run"
        fields["event"] = f"{node} {how}{again}"
    elif event == "node_retrying":
        fields["event"] = f"{node} failed{again}; retrying in {_seconds(fields.pop('delay', None))}"
        fields.pop("exit_code", None)
    elif event == "node_finished":
        code = fields.pop("exit_code", None)
        said = f", exit {code}" if code not in {0, None} else ""
        saved = fields.pop("saved", None)
        if saved is not None:
            source = str(fields.pop("reused_from", "?"))
            shown = source if "-" in source else source[:12]  # a run id whole; a cache key by its start
            said += f" (saved {_seconds(saved)}; from {shown})"
        fields["event"] = f"{node} {fields.pop('status', '?')} in {_seconds(fields.pop('duration', None))}{again}{said}"
    else:
        status, code = fields.pop("status", "?"), fields.pop("exit_code", None)
        fields["event"] = f"{fields.pop('workflow', 'the run')} {status} in {_seconds(fields.pop('duration', None))}"
        fields["event"] += f", exit {code}"
    return fields


class OutputLines:
    """Logs node output as ``output`` events, each chunk's lines in one write.

    structlog renders and writes every event on its own, a system call per line, which for a
    node printing millions of lines costs more than the node. A chunk's lines share every field but the
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

    def write(self, node: str, stream: str, lines: list[str], **fields: object) -> bool:
        """Log ``lines`` (with ``fields``); ``False`` if they cannot be written this way (then log them one by one)."""
        rendered = self._render.info("output", node=node, stream=stream, line=_PLACEHOLDER, **fields)
        if rendered is None:
            return True  # below the configured level
        if not isinstance(rendered, str) or rendered.count(self._marker) != 1:
            return False  # the placeholder is not where only the line can be
        before, after = rendered.split(self._marker)
        self._stream.write("".join([f"{before}{encode_basestring_ascii(line)}{after}\n" for line in lines]))
        self._stream.flush()
        return True
