"""The database writer process's whole life, seen from the runner: started early, handed over, stopped, losses reported.

The writer (:mod:`wtflow.db.writer`) imports SQLAlchemy and connects, which takes longer than
the runner's own start. So:

1. ``wtflow run`` starts a *spare* writer on its first line (:func:`start_spare`, called by
   :mod:`wtflow.entry`), before the CLI's imports, so the two start side by side.
2. Once the configuration is known, the CLI calls :func:`prestart` with the database URL (the
   spare becomes that database's writer and imports its driver) or, with no database or a dry
   run, :func:`discard_prestarted`. The writer connects only when a run opens: a workflow file that
   turns out to be broken leaves no database behind.
3. A run's :class:`wtflow.db.recorder.DatabaseRecorder` takes it (:meth:`WriterProcess.open`:
   the prestarted one, else the spare, else a new one), tells it the URL and sends it the
   run's events.
4. After the run, :meth:`WriterProcess.aclose` lets it write what it was sent, and returns
   what went wrong: rows it could not write, a writer that died, or one that hung and was
   killed :data:`FINISH_GRACE` seconds after its retry time.
5. The CLI calls :func:`discard_prestarted` when it ends, stopping writers no run took. A writer
   whose runner died ends by itself: it reads end-of-file where it waits for its URL or events.

Only the standard library is imported here (and asyncio, once a run has its event loop):
:mod:`wtflow.entry` imports this module before anything else.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import subprocess
import sys

TYPE_CHECKING = False  # typing's flag without importing typing, which would delay the spare's start
if TYPE_CHECKING:
    import asyncio
    from typing import IO, Any

# Seconds the runner waits, beyond the writer's retry time, for the writer to finish after a run.
FINISH_GRACE = 60.0


class WriterProcess:
    """One writer process: its pipes, and the events waiting to be written to its stdin."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.WriteTransport | None = None
        self._closed: asyncio.Future[None] | None = None  # done once the transport has written everything
        self._buffer: list[bytes] = []

    @classmethod
    def start(cls) -> WriterProcess:
        """A new writer process, waiting on its stdin for the database to open."""
        # A session of its own: Ctrl-C in a terminal reaches the runner, which then closes the pipe.
        process = subprocess.Popen(
            [sys.executable, "-m", "wtflow.db.writer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        return cls(process)

    @classmethod
    async def open(cls, url: str, retry: float) -> WriterProcess:
        """The writer for ``url``, connected, with the schema up to date; ready for :meth:`send`.

        :class:`ConfigError` for a URL that cannot be used, :class:`BackendUnavailable` for a
        database that cannot be reached; the writer is stopped then.
        """
        import asyncio

        from wtflow.errors import BackendUnavailable, ConfigError

        writer = _prestarted.pop(url, None) or take_spare()
        if writer is None:
            writer = await asyncio.to_thread(cls.start)
        answer = await asyncio.to_thread(writer._connect, url, retry)
        if not answer.get("ready"):
            await asyncio.to_thread(writer._finish)
            error = answer.get("error", "the database writer did not start")
            raise (ConfigError if answer.get("exit_code") == ConfigError.exit_code else BackendUnavailable)(error)
        assert writer._process.stdin is not None
        loop = writer._loop = asyncio.get_running_loop()
        closed = writer._closed = loop.create_future()
        writer._transport, _ = await loop.connect_write_pipe(lambda: _watch_closing(closed), writer._process.stdin)
        return writer

    @property
    def pid(self) -> int:
        """The process's id."""
        return self._process.pid

    def _connect(self, url: str, retry: float) -> dict[str, Any]:
        """Tell the writer which database to open (the URL may hold a password: not in argv); its answer."""
        process = self._process
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            process.stdin.write(pickle.dumps(("open", url, retry)))
            process.stdin.flush()
            return dict(json.loads(process.stdout.readline()))
        except (OSError, ValueError):
            return {"error": f"the database writer ended before connecting (exit {process.wait()})"}

    def prepare(self, url: str) -> None:
        """Let the writer import what opening ``url`` will need, not connecting (:func:`wtflow.db.writer.prepare`)."""
        assert self._process.stdin is not None
        with contextlib.suppress(OSError):  # it ended: opening it will say so
            self._process.stdin.write(pickle.dumps(("prepare", url)))
            self._process.stdin.flush()

    def send(self, message: object) -> None:
        """Queue ``message`` for the writer; everything one turn of the event loop queues goes in one write."""
        if self._transport is None or self._loop is None:
            return
        if not self._buffer:
            self._loop.call_soon(self._flush)
        self._buffer.append(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

    def _flush(self) -> None:
        if self._buffer and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(self._buffer))
        self._buffer.clear()

    async def aclose(self, retry: float) -> str | None:
        """Let the writer write everything sent (retrying a lost database for ``retry`` s), then end it.

        What did not reach the database, if anything. A writer still busy :data:`FINISH_GRACE`
        seconds after its retry time (a database that stopped answering without closing the
        connection) is killed.
        """
        import asyncio

        self._flush()
        finishing = asyncio.ensure_future(self._end())
        try:
            await asyncio.wait_for(asyncio.shield(finishing), retry + FINISH_GRACE)
        except TimeoutError:
            self._process.kill()  # its pipes close: what waits on them ends now
            await finishing
            return (
                f"the database writer was still writing {retry + FINISH_GRACE:g} s after the run ended "
                "(the database stopped answering) and was stopped; rows may be missing"
            )
        last = finishing.result()
        if "lost" not in last:  # it died without its last word (killed, out of memory)
            return f"the database writer ended unexpectedly (exit {self._process.returncode}); rows may be missing"
        if last["lost"]:
            return f"{last['lost']} events could not be written to the database ({last.get('error')})"
        return None

    async def _end(self) -> dict[str, Any]:
        import asyncio

        if self._transport is not None and self._closed is not None:
            self._transport.close()  # what is buffered is written first, then the writer sees the end
            await self._closed
            self._transport = None
        return await asyncio.to_thread(self._finish)

    def stop(self) -> None:
        """Stop a writer that has not connected (it has done nothing yet)."""
        self._process.terminate()
        self._finish()

    def _finish(self) -> dict[str, Any]:
        """Close the writer's input, wait for it to end, and return its last answer."""
        process = self._process
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


def _watch_closing(closed: asyncio.Future[None]) -> asyncio.BaseProtocol:
    """The protocol of the writer's stdin: sets ``closed`` once everything buffered has been written."""
    import asyncio

    class Pipe(asyncio.BaseProtocol):
        def connection_lost(self, exc: Exception | None) -> None:
            if not closed.done():
                closed.set_result(None)

    return Pipe()


_spare: WriterProcess | None = None
_prestarted: dict[str, WriterProcess] = {}


def start_spare() -> WriterProcess:
    """Start a writer now, for a run whose database is not known yet (once: then the same one)."""
    global _spare  # noqa: PLW0603 - one spare per process, handed over or stopped here
    if _spare is None:
        _spare = WriterProcess.start()
    return _spare


def take_spare() -> WriterProcess | None:
    """The spare writer, if one was started and not taken yet; it is the caller's from now on."""
    global _spare
    spare, _spare = _spare, None
    return spare


def prestart(url: str) -> None:
    """Make a writer ready for ``url`` now (the spare, else a new one): it starts while the workflow loads."""
    if url not in _prestarted:
        writer = _prestarted[url] = take_spare() or WriterProcess.start()
        writer.prepare(url)


def discard_prestarted() -> None:
    """Stop the writers no run took: the spare, and those prestarted for a run that did not start."""
    spare = take_spare()
    for writer in [*_prestarted.values(), *([spare] if spare is not None else [])]:
        writer.stop()
    _prestarted.clear()
