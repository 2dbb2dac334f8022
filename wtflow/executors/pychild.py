"""The first code a PyFunc's process runs.

Started by file path, so it uses only the stdlib
until it has taken the parent's ``sys.path``.

Protocol on stdin: one JSON line (``sys_path``, ``main_path`` or ``main_module``,
``result_path``, and ``begun_fd`` for a job with a timeout), then a pickle of
``(func, args, kwargs)``. Functions defined in the parent's ``__main__`` are found the way
:mod:`multiprocessing` spawn finds them: the parent's main script is run again as ``__mp_main__``
(its ``if __name__ == "__main__":`` block does not run).

Importing the function's module happens while the pickle is read, before the function is
called: the process writes one byte to the ``begun_fd`` pipe just before the call, which starts
the node's timeout clock (see ``pyfunc.py``). What the module prints while it is imported goes to
fds 1 and 2, the node's own stdout and stderr.
"""

import json
import os
import pickle
import runpy
import sys
import traceback
import types


def load_main(header: dict) -> None:  # type: ignore[type-arg]
    """Load the parent's main script or module as ``__mp_main__``, so its functions unpickle."""
    if header.get("main_module"):
        content = runpy.run_module(header["main_module"], run_name="__mp_main__", alter_sys=False)
    elif header.get("main_path"):
        content = runpy.run_path(header["main_path"], run_name="__mp_main__")
    else:
        return
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(content)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def run(func, args, kwargs, result_path: str, begun: int | None = None) -> int:  # type: ignore[no-untyped-def]
    """Call the function; keep a JSON-serialisable return value at ``result_path``; return the exit code.

    Just before the call, the parent is told through the pipe ``begun``, if any.
    """
    if begun is not None:
        announce(begun)
    try:
        result = func(*args, **kwargs)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the traceback goes to the stderr artifact
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        return 1
    try:
        text = json.dumps(result)
    except (TypeError, ValueError) as exc:
        print(
            f"wtflow: the return value ({type(result).__name__}) is not JSON-serialisable, "
            f"so no result artifact is kept: {exc}",
            file=sys.stderr,
        )
        return 0
    tmp = f"{result_path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, result_path)
    return 0


def keep_private(fd: int | None) -> None:
    """Keep ``fd`` (the ``begun`` pipe) from the processes the module or the function starts."""
    if fd is not None:
        os.set_inheritable(fd, False)


def announce(fd: int) -> None:
    """Tell the parent that the function is about to be called: one byte, then close the pipe."""
    try:
        os.write(fd, b"\0")
    except OSError:  # the parent has stopped listening: nothing to tell
        pass
    finally:
        os.close(fd)


def empty_stdin() -> None:
    """Give the function an empty stdin, not the rest of our protocol."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def main() -> int:
    """Read the function from stdin, run it, keep its result; return the exit code."""
    stdin = sys.stdin.buffer
    header = json.loads(stdin.readline())
    sys.path[:] = header["sys_path"]
    begun = header.get("begun_fd")
    keep_private(begun)
    try:
        load_main(header)
        func, args, kwargs = pickle.load(stdin)
    except BaseException as exc:  # noqa: BLE001 - reported to the node's stderr, like any failure
        traceback.print_exception(exc)
        return 1
    empty_stdin()
    return run(func, args, kwargs, header["result_path"], begun)


if __name__ == "__main__":
    sys.exit(main())
