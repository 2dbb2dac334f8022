"""The parent's side of the fork server (see ``forkserver_main.py``): one helper per run."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import signal
import socket
import struct
import sys
import threading
from pathlib import Path
from typing import Any, TypeVar

from wtflow.executors.child import Child, signal_group
from wtflow.executors.pipes import CHUNK, PipeReader

SERVER = str(Path(__file__).with_name("forkserver_main.py"))
# Seconds a server that has loaded the main module may take to say it forked a job's child. It
# takes milliseconds; one that has not answered by then is stuck, and is killed (its jobs then
# start the slow way) rather than left to hang the run.
REPLY_TIMEOUT = 30.0
_LENGTH = struct.Struct("!I")
_T = TypeVar("_T")


class ForkedChild(Child):
    """A job's process, forked by the server; its exit status arrives through the server."""

    def __init__(self, pid: int, streams: tuple[PipeReader, PipeReader], exit_status: asyncio.Future[int]) -> None:
        self.pid = pid
        self.stdout, self.stderr = self._streams = streams
        self._exit = exit_status

    @property
    def returncode(self) -> int | None:
        """The exit status (negative for a signal), once the process has exited."""
        return self._exit.result() if self._exit.done() else None

    async def exited(self) -> None:
        """Wait until the server reports the process's exit."""
        await asyncio.shield(self._exit)

    def close(self) -> None:
        """Close the read ends of the pipes."""
        for stream in self._streams:
            stream.close()


class _Collector:
    """Keeps what is written to a pipe, read by the loop as it arrives, until :meth:`close`."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._loop = loop
        self.data = bytearray()
        loop.add_reader(fd, self._read)

    def _read(self) -> bool:
        """Take what is there; ``False`` once there is nothing more for now (or ever)."""
        if self._fd < 0:
            return False
        try:
            chunk = os.read(self._fd, CHUNK)
        except BlockingIOError:
            return False
        except OSError:  # EIO and the like: the stream is over
            chunk = b""
        if not chunk:
            self._loop.remove_reader(self._fd)
            return False
        self.data += chunk
        return True

    def close(self) -> None:
        """Take what is still in the pipe, then close it (a process the module started may hold it open)."""
        if self._fd >= 0:
            while self._read():
                pass
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


class ForkServer:
    """Starts the server process and hands it jobs; a reader thread relays its replies.

    The server first loads the parent's main module (:meth:`loaded`); :meth:`load_output` is what
    that printed, for the nodes of the functions defined there.
    """

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._started: dict[int, asyncio.Future[int]] = {}
        self._exited: dict[int, asyncio.Future[int]] = {}
        self._reader: threading.Thread | None = None
        self._load_streams: tuple[_Collector, _Collector] | None = None
        self._loaded: asyncio.Future[bool] | None = None

    async def start(self, header: dict[str, Any]) -> None:
        """Start the server with the parent's ``sys.path`` and main module (blocking parts in threads)."""
        self._loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-u",
                SERVER,
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._sock = ours
        self._loaded = self._loop.create_future()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        self._load_streams = (_Collector(out_read, self._loop), _Collector(err_read, self._loop))
        try:
            await asyncio.to_thread(self._send, header, [out_write, err_write])
        finally:
            os.close(out_write)
            os.close(err_write)
        self._reader = threading.Thread(target=self._read, name="wtflow-forkserver", daemon=True)
        self._reader.start()

    @property
    def loading(self) -> bool:
        """Whether the server is still loading the main module (it serves no job meanwhile)."""
        return self._loaded is not None and not self._loaded.done()

    async def loaded(self) -> bool:
        """Wait until the server has loaded the main module: ``True``, or ``False`` if it ended first."""
        assert self._loaded is not None
        return await asyncio.shield(self._loaded)

    def load_output(self) -> tuple[bytes, bytes]:
        """What the main module wrote to stdout and to stderr while the server loaded it (so far)."""
        if self._load_streams is None:
            return b"", b""
        out, err = self._load_streams
        return bytes(out.data), bytes(err.data)

    def _loading_ended(self, served: bool) -> None:
        if self._load_streams is not None:
            for stream in self._load_streams:
                stream.close()
        if self._loaded is not None and not self._loaded.done():
            self._loaded.set_result(served)

    def kill(self) -> None:
        """Kill the server at once (one stuck loading the main module); its reader thread then ends."""
        if self._process is not None:
            signal_group(self._process.pid, signal.SIGKILL)

    async def spawn(
        self, payload: bytes, result_path: str, cwd: Path | None, env: dict[str, str], begun: int | None = None
    ) -> ForkedChild:
        """Fork a child for one job; its stdout and stderr are new pipes read here.

        ``begun`` is the write end of the pipe on which the child tells that the function is about
        to be called (``pychild.announce``); the caller keeps and closes its own copy.
        """
        assert self._loop is not None
        job_id = next(self._ids)
        started: asyncio.Future[int] = self._loop.create_future()
        exited: asyncio.Future[int] = self._loop.create_future()
        self._started[job_id] = started
        self._exited[job_id] = exited
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            job = (job_id, payload, result_path, str(cwd) if cwd is not None else None, env)
            fds = [out_write, err_write] if begun is None else [out_write, err_write, begun]
            await asyncio.to_thread(self._send, job, fds)
        finally:
            os.close(out_write)
            os.close(err_write)
        try:
            pid = await self._answer(started)
        except BaseException:
            # Cancelled, or out of time: the server may fork the child still, which no one would watch.
            started.add_done_callback(_kill_when_started)
            exited.add_done_callback(_retrieve)
            os.close(out_read)
            os.close(err_read)
            raise
        return ForkedChild(pid, (PipeReader(out_read, self._loop), PipeReader(err_read, self._loop)), exited)

    async def _answer(self, started: asyncio.Future[int]) -> int:
        """The pid the server reports for a job; :class:`ConnectionError` if it ended or is stuck.

        Loading the main module takes as long as its imports: only then does the wait start.
        """
        if not await self.loaded():
            return await asyncio.shield(started)  # failed by the reader: the server ended
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                return await asyncio.shield(started)
        except TimeoutError:
            self.kill()  # its reader then ends, failing every job still waiting on it
            raise ConnectionError(f"the fork server did not answer within {REPLY_TIMEOUT:g}s") from None

    def _send(self, message: object, fds: list[int]) -> None:
        assert self._sock is not None
        body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            socket.send_fds(self._sock, [_LENGTH.pack(len(body))], fds)
            self._sock.sendall(body)

    def _read(self) -> None:
        assert self._sock is not None
        assert self._loop is not None
        buffer = b""
        while True:
            try:
                chunk = self._sock.recv(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            while len(buffer) >= _LENGTH.size:
                (length,) = _LENGTH.unpack_from(buffer)
                if len(buffer) < _LENGTH.size + length:
                    break
                kind, job_id, value = pickle.loads(buffer[_LENGTH.size : _LENGTH.size + length])  # noqa: S301
                buffer = buffer[_LENGTH.size + length :]
                if kind == "loaded":
                    self._loop.call_soon_threadsafe(self._loading_ended, True)
                    continue
                futures = self._started if kind == "started" else self._exited
                future = futures.pop(job_id, None)
                if future is not None:
                    self._loop.call_soon_threadsafe(_settle, future, value)
        self._loop.call_soon_threadsafe(self._loading_ended, False)
        for future in [*self._started.values(), *self._exited.values()]:
            self._loop.call_soon_threadsafe(_fail, future)

    async def aclose(self) -> None:
        """Stop the server: it exits when its socket closes, or at once if still loading the main module."""
        if self.loading:
            self.kill()  # it would read the end of the socket only after loading, if ever
        if self._sock is not None:
            with contextlib.suppress(OSError):  # the server is gone already
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._process is not None:
            await self._process.wait()
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join)
        self._loading_ended(False)  # if no reader ever ran


def _settle(future: asyncio.Future[_T], value: _T) -> None:
    if not future.done():
        future.set_result(value)


def _kill_when_started(started: asyncio.Future[int]) -> None:
    if not started.cancelled() and started.exception() is None:
        signal_group(started.result(), signal.SIGKILL)


def _retrieve(future: asyncio.Future[int]) -> None:
    """Take a future's outcome that no one waits for, so it is not reported as never retrieved."""
    if not future.cancelled():
        future.exception()


def _fail(future: asyncio.Future[int]) -> None:
    if not future.done():
        future.set_exception(ConnectionError("the fork server ended"))
