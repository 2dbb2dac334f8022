"""Runs :class:`~wtflow.model.PyFunc` nodes, each in a fresh Python process.

The child's file descriptors 1 and 2 are the output pipes, so output from C extensions and
subprocesses the function starts is captured as well.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

from wtflow.artifacts import FILE_NAMES
from wtflow.executors.base import Job, Outcome, OutputSink
from wtflow.executors.process import run_process
from wtflow.model import RESULT, STDERR, PyFunc

CHILD = str(Path(__file__).with_name("pychild.py"))


def _main_header(func_module: str | None) -> dict[str, str]:
    """How the child finds functions of the parent's ``__main__``, as multiprocessing spawn does."""
    if func_module != "__main__":
        return {}
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and not spec.name.endswith("__main__"):
        return {"main_module": spec.name}
    main_file = getattr(main, "__file__", None)
    return {"main_path": str(Path(main_file).resolve())} if main_file else {}


class PyFuncExecutor:
    """Starts ``python -u pychild.py`` and sends it the function and its arguments on stdin."""

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run the function of ``job`` in its own process."""
        function = job.executable
        assert isinstance(function, PyFunc)
        try:
            body = pickle.dumps((function.func, function.args, function.kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - any pickling failure is the node's failure
            message = f"cannot send the arguments of {function.name} to its process: {exc}"
            await sink.write(STDERR, f"wtflow: {message}\n".encode())
            return Outcome(exit_code=None, error=message)
        header = {
            "sys_path": sys.path,
            "result_path": str(job.node_dir / FILE_NAMES[RESULT]),
            **_main_header(getattr(function.func, "__module__", None)),
        }
        stdin = json.dumps(header).encode() + b"\n" + body
        return await run_process([sys.executable, "-u", CHILD], job, sink, stdin=stdin)
