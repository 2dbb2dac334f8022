"""Writes a run's lifecycle events to ``<run dir>/events.jsonl``, one JSON object a line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import BinaryIO

import msgspec

from wtflow.events import BaseObserver, Event, NodeOutput, RunStarted, to_record

_encode = msgspec.json.Encoder(enc_hook=str).encode


class EventsFileWriter(BaseObserver):
    """Every event but output (which is in the artifacts), written on the loop's next turn.

    The lines one turn of the loop produces go to the file in one write, and are in the file
    before the next turn's: a crash loses a turn at most.
    """

    def __init__(self) -> None:
        self.path: Path | None = None
        self._file: BinaryIO | None = None
        self._lines: list[bytes] = []
        self._error: OSError | None = None

    def notify(self, event: Event) -> None:
        """Append the event (the file is created when the run starts, in the run's directory)."""
        if isinstance(event, RunStarted):
            self.path = event.run_dir / "events.jsonl"
            self._file = open(self.path, "ab")  # noqa: SIM115 - closed in aclose
        if self._file is None or isinstance(event, NodeOutput):
            return
        if not self._lines:
            asyncio.get_running_loop().call_soon(self._flush)
        self._lines.append(_encode(to_record(event)) + b"\n")

    def _flush(self) -> None:
        if self._lines and self._file is not None:
            lines, self._lines = b"".join(self._lines), []
            try:
                self._file.write(lines)
                self._file.flush()
            except OSError as exc:  # a full disk: stop writing (once), say so when the run ends
                self._error = exc
                self._close()

    def _close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:  # what was buffered cannot be written either
                self._error = self._error or exc

    async def aclose(self) -> None:
        """Write what is left, and close the file."""
        self._flush()
        self._close()

    def warnings(self) -> list[str]:
        """The events file, if it could not be written to the end."""
        if self._error is None:
            return []
        return [f"{self.path} is incomplete: {self._error.strerror or self._error}"]
