"""The fork server: one per run, it forks a child for each PyFunc job.

Started by file path (only the stdlib is used until it has taken the parent's ``sys.path``).
Forking a warm interpreter costs far less than starting a new one, which imports everything anew.

Protocol on the socket given as argv[1], each message a 4-byte length and a pickle:
parent -> server: the header (``sys_path``, ``main_path``/``main_module``) with the write ends
of two pipes attached (SCM_RIGHTS), then jobs ``(job_id, payload, result_path, cwd, env)`` with
the write ends of the job's stdout and stderr pipes attached, and a third pipe for a job with a
timeout (see ``pychild.announce``). Server -> parent: ``("loaded", 0, None)`` once the parent's
main module is loaded, then ``("started", job_id, pid)`` and ``("exited", job_id, returncode)``.

The parent's main module is loaded here, once, with stdout and stderr going to the header's two
pipes: the parent passes what it printed on to the node of each function defined there, as if
that node's process had loaded it itself (as it does without the server). A function's own
module is imported by the forked child, while it unpickles the job, so what the module prints
goes to that node's output.
"""

import gc
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import traceback
import warnings

import pychild  # type: ignore[import-not-found]  # beside this file: sys.path[0] until the parent's path is taken

_LENGTH = struct.Struct("!I")


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _receive(sock: socket.socket) -> tuple[object, list[int]]:
    head, fds, _, _ = socket.recv_fds(sock, _LENGTH.size, 4)
    if not head:
        raise EOFError
    head += _read_exactly(sock, _LENGTH.size - len(head))
    (length,) = _LENGTH.unpack(head)
    return pickle.loads(_read_exactly(sock, length)), fds  # noqa: S301 - our own parent's messages


def _send(sock: socket.socket, message: object) -> None:
    body = pickle.dumps(message)
    sock.sendall(_LENGTH.pack(len(body)) + body)


def _child(sock: socket.socket, wakeup: int, job: tuple, fds: list[int]) -> int:  # type: ignore[type-arg]
    _, payload, result_path, cwd, env = job
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sock.close()
    os.close(wakeup)
    out, err, *rest = fds
    begun = rest[0] if rest else None
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    pychild.keep_private(begun)
    pychild.empty_stdin()
    _set_environment(env)
    try:
        if cwd is not None:
            os.chdir(cwd)
        func, args, kwargs = pickle.loads(payload)  # noqa: S301 - our own parent's payload
    except BaseException as exc:  # noqa: BLE001 - reported to the node's stderr
        traceback.print_exception(exc)
        return 1
    try:
        code: int = pychild.run(func, args, kwargs, result_path, begun)
    except SystemExit as exc:
        return _exit_code(exc.code)
    return code


def _set_environment(env: dict[str, str]) -> None:
    """Make ``os.environ`` exactly ``env``, touching only what differs (it mostly does not).

    Clearing and refilling it would encode and set every variable again, for every job.
    """
    for key in [key for key in os.environ if key not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _exit_code(code: object) -> int:
    """What ``SystemExit(code)`` makes the exit code, as the interpreter does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _load_main(header: dict, fds: list[int]) -> None:  # type: ignore[type-arg]
    """Load the parent's main module, its stdout and stderr going to the pipes ``fds`` meanwhile."""
    saved = [os.dup(1), os.dup(2)]
    for fd, target in zip(fds, (1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    try:
        pychild.load_main(header)
    except BaseException:  # noqa: BLE001 - jobs will fail to unpickle and say why
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, target in zip(saved, (1, 2), strict=True):
            os.dup2(fd, target)
            os.close(fd)


def main() -> None:
    """Serve jobs until the parent closes the socket."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    header, fds = _receive(sock)
    sys.path[:] = header["sys_path"]  # type: ignore[index]
    warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads a loaded module may start
    _load_main(header, fds)  # type: ignore[arg-type]
    _send(sock, ("loaded", 0, None))
    # What the server holds now goes to the collector's permanent generation, so a child's
    # collections do not walk it and copy its pages on write (the gc.freeze() docs' advice for
    # a process that forks).
    gc.freeze()
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(read_end, selectors.EVENT_READ)
    jobs: dict[int, object] = {}
    while True:
        for key, _ in selector.select():
            if key.fileobj is sock:
                try:
                    job, fds = _receive(sock)
                except (EOFError, ConnectionError):
                    return
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        code = _child(sock, write_end, job, fds)  # type: ignore[arg-type]
                    finally:
                        sys.stdout.flush()
                        sys.stderr.flush()
                        os._exit(code & 0xFF)
                for fd in fds:
                    os.close(fd)
                jobs[pid] = job[0]  # type: ignore[index]
                _send(sock, ("started", job[0], pid))  # type: ignore[index]
            else:
                os.read(read_end, 4096)
                while jobs:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                    if pid == 0:
                        break
                    job_id = jobs.pop(pid, None)
                    if job_id is not None:
                        _send(sock, ("exited", job_id, os.waitstatus_to_exitcode(status)))


if __name__ == "__main__":
    main()
