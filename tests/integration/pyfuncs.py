"""Functions the PyFunc tests run in their own processes (importable by the child)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time

from wtflow import Artifact


def hello() -> str:
    print("hello from a function")
    return "done"


def raises() -> None:
    raise ValueError("boom")


def exits(code: int) -> None:
    raise SystemExit(code)


def low_level_output() -> None:
    os.write(1, b"fd one\n")
    os.write(2, b"fd two\n")
    libc = ctypes.CDLL(None)
    libc.puts(b"from C")
    libc.fflush(None)
    subprocess.run(["echo", "from a subprocess"], check=True)


def reads(artifacts: dict[str, list[Artifact]], single: Artifact) -> dict[str, object]:
    return {"nested": [a.data.decode() for a in artifacts["many"]], "single": single.data.decode()}


def returns_object() -> object:
    return object()


def sleeps() -> None:
    print("sleeping", flush=True)
    time.sleep(300)


def reads_stdin() -> str:
    return sys.stdin.read()


def returns_none() -> None:
    return None


def environment_value(name: str) -> str | None:
    return os.environ.get(name)


def reads_file_artifact(artifact: Artifact) -> dict[str, object]:
    """What a report function sees of a declared file artifact: its files, and its bytes or why not."""
    try:
        data: object = artifact.data.decode()
    except Exception as exc:  # the message is what is checked
        data = f"{type(exc).__name__}: {exc}"
    try:
        paths: object = [str(path.relative_to(artifact.path)) for path in artifact.paths]  # type: ignore[arg-type]
    except Exception as exc:  # the message is what is checked
        paths = f"{type(exc).__name__}: {exc}"
    return {"data": data, "paths": paths}


def returns_secret(name: str) -> dict[str, object]:
    """A result that carries a secret, in a value, a key and a list."""
    value = os.environ[name]
    return {"token": value, value: [f"Bearer {value}"], "count": 1}


def sleeps_noting_its_pid(path: str) -> None:
    """Note this process's pid, then sleep far past any timeout."""
    with open(path, "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(300)
