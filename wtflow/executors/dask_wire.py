"""What the runner and a Dask worker say to each other about one node attempt.

The runner sends the attempt as a Dask task (an :class:`Assignment`). The task connects back to
the runner over TCP, and the node's output streams over that connection while it runs, in
frames: one byte saying what the frame is, four bytes of length, the bytes themselves. TCP's
flow control is the backpressure: a runner that writes output more slowly than the node makes
it stops reading, the worker's writes wait, the worker stops reading the node's pipes, and the
node waits on its next write. Neither side holds more than a few chunks of a node's output.

Worker to runner: ``HELLO`` (the attempt's token, the worker's address, the :data:`PROTOCOL` it
speaks and its wtflow version: a runner speaking another protocol refuses it), output chunks
(``STDOUT``, ``STDERR``), files the node wrote that the runner cannot see (``FILE``), and
``DONE`` with how the attempt ended. Runner to worker: ``GO`` (start the node's process; it holds
the runner's protocol and version, and a worker speaking another says so in ``DONE`` instead),
``STOP`` (stop it: SIGTERM to its process group, SIGKILL after the grace period) and ``KILL``
(SIGKILL now). A connection that closes means the other side is gone: the worker stops the
node, the runner fails the attempt naming the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from wtflow.executors.base import Job

# This protocol's version: raised whenever a frame or a field changes what it means.
PROTOCOL = 2
HELLO = 0
STDOUT = 1
STDERR = 2
FILE = 3
DONE = 4
GO = 5
STOP = 6
KILL = 7
STREAMS = {STDOUT: "stdout", STDERR: "stderr"}
STREAM_FRAMES = {name: kind for kind, name in STREAMS.items()}
# What a node writes into its directory itself, and the runner reads afterwards: its outputs, its
# summary and a function's result. Shipped back only when the worker cannot see the run's directory.
SHIPPED_FILES = frozenset({"outputs", "summary.md", "result.json"})
_HEADER = struct.Struct("!BI")
# The most a frame may hold: output comes in pipe reads and files in pieces of 256 KiB. A peer
# announcing more is not a worker of this wtflow: the frame is refused before it is read.
MAX_FRAME = 4 << 20
MAX_HELLO = 4096
# A peer that vanished without closing the connection (a machine lost, a network cut) is known
# gone after this many seconds of silence plus a few unanswered probes (TCP keepalive).
KEEPALIVE_IDLE = 30
KEEPALIVE_INTERVAL = 10
KEEPALIVE_PROBES = 3
SILENT_PEER_TIMEOUT = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_PROBES
# A worker's output waits while the runner does not read it (backpressure): a runner stopped for
# a while (Ctrl-Z, a paused machine, a slow disk) must not look lost. Past this many seconds of
# output not taken, it is: a runner whose machine vanished while the node was writing.
WORKER_SEND_TIMEOUT = 600


@dataclass(frozen=True)
class Assignment:
    """One node attempt for a worker: the job, where to stream it, and a function's call already pickled.

    ``call`` is ``(func, args, kwargs)`` pickled in the runner (the job's executable then holds a
    stand-in function): the worker passes it to the node's process unread, so the worker itself
    never imports the node's modules. ``main`` and ``sys_path`` are how that process finds them:
    the runner's main script and ``sys.path``.
    """

    token: str
    runner: tuple[str, int]
    job: Job
    call: bytes | None = None
    main: Mapping[str, str] = field(default_factory=dict)
    sys_path: tuple[str, ...] = ()


def keep_alive(writer: asyncio.StreamWriter, send_timeout: int = SILENT_PEER_TIMEOUT) -> None:
    """Probe the connection while it is silent, so that a peer gone without a word is noticed (Linux).

    A peer that takes nothing of what is sent to it for ``send_timeout`` seconds counts as gone too.
    """
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):  # options this system does not have
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, send_timeout * 1000)


def host_port(host: str, port: int) -> str:
    """``host:port`` as written in messages, an IPv6 address in brackets (``[::1]:8786``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def frame(kind: int, payload: bytes = b"") -> bytes:
    """A frame's bytes, header included."""
    return _HEADER.pack(kind, len(payload)) + payload


async def send(writer: asyncio.StreamWriter, kind: int, payload: bytes = b"") -> None:
    """Send one frame; wait while the other side is behind (``ConnectionError`` once it is gone)."""
    writer.write(_HEADER.pack(kind, len(payload)))
    if payload:
        writer.write(payload)
    await writer.drain()


class ProtocolError(ValueError):
    """What the other side sent is not this protocol (another wtflow version, or not a wtflow at all).

    ``worker``: the worker that sent it, when known.
    """

    def __init__(self, message: str, worker: str | None = None) -> None:
        super().__init__(message)
        self.worker = worker


def speaks_ours(said: Mapping[str, object]) -> bool:
    """Whether the other side's ``HELLO`` or ``GO`` says it speaks this :data:`PROTOCOL`."""
    protocol = said.get("protocol")
    return type(protocol) is int and protocol == PROTOCOL


def mismatch(hello: Mapping[str, object], ours: str) -> str | None:
    """Why a worker whose ``HELLO`` said ``hello`` cannot serve a runner of wtflow ``ours``; ``None`` if it can."""
    if speaks_ours(hello):
        return None
    return (
        f"worker {hello.get('worker')} runs {_their_wtflow(hello)}, which speaks another worker protocol than this "
        f"runner's wtflow {ours} (protocol {PROTOCOL}): install the same wtflow version on the runner and the workers"
    )


def _their_wtflow(said: Mapping[str, object]) -> str:
    """The other side's wtflow, as its ``HELLO`` or ``GO`` names it (one from before versions were sent: older)."""
    version = said.get("wtflow")
    return f"wtflow {version}" if isinstance(version, str) else "an older wtflow"


def go_payload(ours: str) -> bytes:
    """What ``GO`` holds: the runner's protocol and wtflow version, which the worker checks in turn."""
    return json.dumps({"protocol": PROTOCOL, "wtflow": ours}).encode()


def refusal(go: bytes, worker: str, ours: str) -> str | None:
    """Why a worker of wtflow ``ours`` does not start a node told to go with ``go``; ``None`` if it does."""
    try:
        said = json.loads(go) if go else {}
    except ValueError:
        said = {}
    if not isinstance(said, dict):
        said = {}
    if speaks_ours(said):
        return None
    return (
        f"the runner ({_their_wtflow(said)}) speaks another worker protocol than worker {worker}'s "
        f"wtflow {ours} (protocol {PROTOCOL}): install the same wtflow version on the runner and the workers"
    )


async def receive(reader: asyncio.StreamReader, limit: int = MAX_FRAME) -> tuple[int, bytes]:
    """The next frame; ``asyncio.IncompleteReadError`` (an ``EOFError``) when the connection has closed.

    :class:`ProtocolError` for a frame announcing more than ``limit`` bytes, before reading them.
    """
    kind, length = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if length > limit:
        raise ProtocolError(f"a frame of {length} bytes, more than the {limit} any frame holds")
    return kind, (await reader.readexactly(length) if length else b"")


def file_payload(name: str, data: bytes) -> bytes:
    """A ``FILE`` frame's payload: the file's name, then a piece of its content (the pieces in order)."""
    encoded = name.encode()
    return bytes([len(encoded)]) + encoded + data


def split_file_payload(payload: bytes) -> tuple[str, bytes]:
    """The name and the piece of content of a ``FILE`` frame."""
    length = payload[0]
    return payload[1 : 1 + length].decode(), payload[1 + length :]
