"""Prints nodes' output on the console: stdout to stdout, stderr to stderr, as produced."""

from __future__ import annotations

import sys
from typing import TextIO

from wtflow.events import BaseObserver, Event, NodeOutput
from wtflow.model import STDERR


def write_bytes(stream: TextIO, data: bytes) -> None:
    """Write ``data`` to a text stream's binary buffer (or as text when it has none) and flush."""
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        stream.flush()
        buffer.write(data)
        buffer.flush()
    else:
        stream.write(data.decode("utf-8", "replace"))
        stream.flush()


class ConsolePrinter(BaseObserver):
    """Raw, interleaved output: every line as it comes, nothing of wtflow's own."""

    def notify(self, event: Event) -> None:
        """Print node output; ignore everything else."""
        if isinstance(event, NodeOutput):
            write_bytes(sys.stderr if event.stream == STDERR else sys.stdout, event.data)
