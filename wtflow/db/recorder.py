"""Records a run in the database through a writer process (see :mod:`wtflow.db.writer`).

The event loop only pickles the events that change rows and hands them to a pipe; the
writer process does the SQL. The CLI starts the writer before its own imports
(:mod:`wtflow.db.launch`), so the writer's start and connection overlap with the runner's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import subprocess
from typing import IO, Any

from wtflow.db import launch
from wtflow.db.messages import Message, to_micros
from wtflow.errors import BackendUnavailable, ConfigError
from wtflow.events import BaseObserver, Event, NodeFinished, NodeStarted, RunFinished, RunStarted


def message(event: Event) -> Message | None:
    """What the writer needs of ``event``; ``None`` for events that change no row."""
    if isinstance(event, NodeStarted):
        return ("started", event.node, event.path, event.attempt, to_micros(event.started_at))
    if isinstance(event, NodeFinished):
        return (
            "finished",
            event.node,
            event.path,
            str(event.status),
            event.exit_code,
            event.attempt,
            to_micros(event.started_at) if event.started_at is not None else None,
            to_micros(event.finished_at),
            event.error,
            tuple((a.name, str(a.path), a.size) for a in event.artifacts),
        )
    if isinstance(event, RunStarted):
        workflow = event.workflow
        started = to_micros(event.started_at)
        return ("opened", event.run_id, workflow.name, started, event.host, event.pid, tuple(workflow.nodes))
    if isinstance(event, RunFinished):
        finished = to_micros(event.finished_at)
        return ("closed", event.run_id, str(event.status), event.exit_code, finished, event.error)
    return None


_prestarted: dict[str, subprocess.Popen[bytes]] = {}
# Seconds the runner waits, beyond the writer's retry time, for the writer to finish after a run.
FINISH_GRACE = 60.0


def _connect(process: subprocess.Popen[bytes], url: str, retry: float) -> dict[str, Any]:
    """Tell the writer which database to open (the URL may hold a password: not in argv); its answer."""
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        process.stdin.write(pickle.dumps(("open", url, retry)))
        process.stdin.flush()
        return dict(json.loads(process.stdout.readline()))
    except (OSError, ValueError):
        return {"error": f"the database writer ended before connecting (exit {process.wait()})"}


def prestart(url: str) -> None:
    """Start the writer for ``url`` now, so its imports overlap with loading the workflow.

    It connects only when a run opens its :class:`DatabaseRecorder`: a workflow file that
    turns out to be broken leaves no database behind.
    """
    if url not in _prestarted:
        _prestarted[url] = launch.take_spare() or launch.start()


def discard_prestarted() -> None:
    """Stop writers started for a run that did not start (they have done nothing yet)."""
    spare = launch.take_spare()
    for process in [*_prestarted.values(), *([spare] if spare is not None else [])]:
        process.terminate()
        _finish(process)
    _prestarted.clear()


def _finish(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Close the writer's input, wait for it to end, and return its last answer."""
    assert process.stdin is not None
    assert process.stdout is not None
    with contextlib.suppress(OSError):
        process.stdin.close()
    last = _last_answer(process.stdout)
    process.wait()
    process.stdout.close()
    return last


def _last_answer(stream: IO[bytes]) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    for line in stream:
        with contextlib.suppress(ValueError):
            answer = json.loads(line)
    return answer


class _Pipe(asyncio.BaseProtocol):
    """The writer's end of the pipe; ``closed`` is done once everything buffered has been written."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class DatabaseRecorder(BaseObserver):
    """Writes runs, node executions and artifacts as the events arrive."""

    def __init__(self, url: str, *, retry: float) -> None:
        self.url = url
        self.retry = retry  # seconds to keep retrying rows after the run if the database went away
        self._process: subprocess.Popen[bytes] | None = None
        self._transport: asyncio.WriteTransport | None = None
        self._pipe: _Pipe | None = None
        self._buffer: list[bytes] = []
        self.problem: str | None = None  # after the run: what did not reach the database, if anything

    @property
    def pid(self) -> int | None:
        """The writer process's pid while it runs (it is not an orphan to stop)."""
        return self._process.pid if self._process is not None else None

    async def aopen(self) -> None:
        """Connect and create the schema; fails the run before it starts if the database is unreachable."""
        process = _prestarted.pop(self.url, None)
        if process is None:
            process = await asyncio.to_thread(launch.start)
        assert process.stdin is not None
        answer = await asyncio.to_thread(_connect, process, self.url, self.retry)
        if not answer.get("ready"):
            await asyncio.to_thread(_finish, process)
            error = answer.get("error", "the database writer did not start")
            raise (ConfigError if answer.get("exit_code") == ConfigError.exit_code else BackendUnavailable)(error)
        self._process = process
        loop = asyncio.get_running_loop()
        self._transport, self._pipe = await loop.connect_write_pipe(_Pipe, process.stdin)

    def notify(self, event: Event) -> None:
        """Send the events that change rows to the writer."""
        if self._transport is None or (row := message(event)) is None:
            return
        if not self._buffer:
            # Everything one turn of the loop produces goes to the pipe in one write.
            asyncio.get_running_loop().call_soon(self._flush)
        self._buffer.append(pickle.dumps(row, pickle.HIGHEST_PROTOCOL))

    async def _end_writer(self, process: subprocess.Popen[bytes]) -> dict[str, Any]:
        if self._transport is not None and self._pipe is not None:
            self._transport.close()  # what is buffered is written first, then the writer sees the end
            await self._pipe.closed
            self._transport = None
        return await asyncio.to_thread(_finish, process)

    def _flush(self) -> None:
        if self._buffer and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(self._buffer))
        self._buffer.clear()

    async def aclose(self) -> None:
        """Let the writer write everything sent (retrying a lost database for a while), then end it.

        A writer still busy :data:`FINISH_GRACE` seconds after its retry time (a database that
        stopped answering without closing the connection) is killed, with a warning.
        """
        if self._process is None:
            return
        self._flush()
        process, self._process = self._process, None
        finishing = asyncio.ensure_future(self._end_writer(process))
        try:
            await asyncio.wait_for(asyncio.shield(finishing), self.retry + FINISH_GRACE)
        except TimeoutError:
            process.kill()  # its pipes close: what waits on them ends now
            await finishing
            self.problem = (
                f"the database writer was still writing {self.retry + FINISH_GRACE:g} s after the run ended "
                "(the database stopped answering) and was stopped; rows may be missing"
            )
            return
        last = finishing.result()
        if "lost" not in last:  # it died without its last word (killed, out of memory)
            self.problem = f"the database writer ended unexpectedly (exit {process.returncode}); rows may be missing"
        elif last["lost"]:
            self.problem = f"{last['lost']} events could not be written to the database ({last.get('error')})"
