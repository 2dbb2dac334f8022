"""The parent's side of the fork server (see ``forkserver_main.py``): one helper per run."""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import socket
import struct
import sys
import threading
from pathlib import Path
from typing import Any

from wtflow.executors.child import Child
from wtflow.executors.pipes import PipeReader

SERVER = str(Path(__file__).with_name("forkserver_main.py"))
_LENGTH = struct.Struct("!I")


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


class ForkServer:
    """Starts the server process and hands it jobs; a reader thread relays its replies."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._started: dict[int, asyncio.Future[int]] = {}
        self._exited: dict[int, asyncio.Future[int]] = {}
        self._reader: threading.Thread | None = None

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
        await asyncio.to_thread(self._send, header, [])
        self._reader = threading.Thread(target=self._read, name="wtflow-forkserver", daemon=True)
        self._reader.start()

    async def spawn(self, payload: bytes, result_path: str, cwd: Path | None, env: dict[str, str]) -> ForkedChild:
        """Fork a child for one job; its stdout and stderr are new pipes read here."""
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
            await asyncio.to_thread(self._send, job, [out_write, err_write])
        finally:
            os.close(out_write)
            os.close(err_write)
        try:
            pid = await started
        except BaseException:
            os.close(out_read)
            os.close(err_read)
            raise
        return ForkedChild(pid, (PipeReader(out_read, self._loop), PipeReader(err_read, self._loop)), exited)

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
                futures = self._started if kind == "started" else self._exited
                future = futures.pop(job_id, None)
                if future is not None:
                    self._loop.call_soon_threadsafe(_settle, future, value)
        for future in [*self._started.values(), *self._exited.values()]:
            self._loop.call_soon_threadsafe(_fail, future)

    async def aclose(self) -> None:
        """Stop the server: it exits when its socket closes."""
        if self._sock is not None:
            self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._process is not None:
            await self._process.wait()
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join)


def _settle(future: asyncio.Future[int], value: int) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[int]) -> None:
    if not future.done():
        future.set_exception(ConnectionError("the fork server ended"))
