"""Writes a run's lifecycle events to ``<run dir>/events.jsonl``, one JSON object a line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TextIO

from wtflow.events import BaseObserver, Event, NodeOutput, to_record


class EventsFileWriter(BaseObserver):
    """Every event but output (which is in the artifacts), flushed line by line so a crash loses none."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = None

    async def aopen(self) -> None:
        """Create the file."""
        self._file = await asyncio.to_thread(open, self.path, "a", encoding="utf-8", buffering=1)

    def notify(self, event: Event) -> None:
        """Append the event."""
        if self._file is not None and not isinstance(event, NodeOutput):
            self._file.write(json.dumps(to_record(event), default=str) + "\n")

    async def aclose(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
