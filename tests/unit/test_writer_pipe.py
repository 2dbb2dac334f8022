"""How the database writer reads the runner's pipe: in gulps, pausing only while events trickle in."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator

import pytest

from wtflow.db import writer


class Pipe:
    """A pipe whose read end is the writer's input; the pauses it takes are counted, not waited."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.input = writer._Input(self.read_fd)
        self.pauses: list[float] = []
        monkeypatch.setattr(self.input, "_hang_up", self)

    def poll(self, timeout_ms: float) -> list[tuple[int, int]]:
        self.pauses.append(timeout_ms)
        return []

    def send(self, *messages: object) -> None:
        os.write(self.write_fd, b"".join(pickle.dumps(message) for message in messages))

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            os.close(fd)


@pytest.fixture
def pipe(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipe]:
    made = Pipe(monkeypatch)
    yield made
    made.close()


def test_after_a_few_events_the_writer_pauses_to_let_more_gather(pipe: Pipe) -> None:
    pipe.send({"event": "node_started"})
    assert pipe.input.read() == [{"event": "node_started"}]
    pipe.input.pause()
    assert pipe.pauses == [writer.READ_SECONDS * 1000]


def test_after_a_full_read_the_writer_reads_on_without_a_pause(pipe: Pipe) -> None:
    """A runner writing faster than pauses would empty the pipe is not held up by them."""
    events = [{"event": "node_finished", "node": f"n{index}", "pad": "x" * 100} for index in range(400)]
    pipe.send(*events)
    assert pipe.input.read() == events
    pipe.input.pause()
    assert pipe.pauses == []
