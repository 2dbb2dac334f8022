"""Helpers for the CLI tests of expressions, conditions, matrices, outputs, vars and env files.

Each test writes a workflow file into a scratch directory (the ``project`` fixture of conftest.py),
runs the real ``wtflow`` command on it (Click's runner, in this process; or a real process where
signals matter) and reads what the run left: ``run.json``, ``events.jsonl``, the nodes' stored output.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.conftest import cli

# Settings a developer's shell may hold that would change what these tests see.
SETTINGS = (
    "WTFLOW_MAX_FAIL",
    "WTFLOW_KILL_GRACE",
    "WTFLOW_CONFIG",
    "WTFLOW_OUTPUT",
    "WTFLOW_TARGET",
    "WTFLOW_SECRET",
    "WTFLOW_LOG_FORMAT",
    "WTFLOW_LOG_LEVEL",
    "WTFLOW_NO_MASK_ARTIFACTS",
    "WTFLOW_DRY_RUN",
    "WTFLOW_PATH",
    "WTFLOW_WORKFLOW",
)

# `sh wait.sh FILE`: returns once FILE exists; exits 99 after 30 s (a hang, not a slow machine).
WAIT_SCRIPT = """\
i=0
while [ ! -e "$1" ]; do
  i=$((i + 1))
  if [ "$i" -gt 1500 ]; then echo "gave up waiting for $1" >&2; exit 99; fi
  sleep 0.02
done
"""


def clear_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove wtflow settings and workflow variables the environment may hold."""
    for variable in SETTINGS:
        monkeypatch.delenv(variable, raising=False)
    for variable in [name for name in os.environ if name.startswith("WTFLOW_VAR_")]:
        monkeypatch.delenv(variable)


def write(path: Path, text: str) -> Path:
    """Write ``text`` (dedented) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """``wtflow run ARGS`` without a database, node output printed raw on stdout."""
    return cli("run", *args, "--db-url", "", "--output", "interleaved", "--log-format", "console", env=env)


def run_file(
    text: str, *args: str, exit_code: int, file: str = "wtflow.yml", env: dict[str, str] | None = None
) -> Result:
    """Write the workflow ``text`` to ``file`` in the current directory, :func:`run` it, check it exits ``exit_code``.

    The file is named on the command line unless it is ``wtflow.yml``, which ``wtflow run`` finds by itself.
    """
    write(Path(file), text)
    result = run(*([] if file == "wtflow.yml" else [file]), *args, env=env)
    assert_clean_exit(result, exit_code)
    return result


def run_dir(project: Path) -> Path:
    """The newest run's directory (run ids sort by time)."""
    return max((project / ".wtflow" / "artifacts").iterdir())


def run_record(project: Path) -> dict[str, Any]:
    """The newest run's ``run.json``."""
    record: dict[str, Any] = json.loads((run_dir(project) / "run.json").read_text())
    return record


def statuses(project: Path) -> dict[str, str]:
    """Each node's status in the newest run."""
    return {name: node["status"] for name, node in run_record(project)["nodes"].items()}


def stdout_of(project: Path, node: str) -> str:
    """What ``node`` wrote to stdout in the newest run."""
    path = run_record(project)["nodes"][node]["artifacts"]["stdout"]["path"]
    return Path(path).read_text()


def events(project: Path) -> list[dict[str, Any]]:
    """The newest run's ``events.jsonl``."""
    lines = (run_dir(project) / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def assert_clean_exit(result: Result, code: int) -> None:
    """The command ended with ``code`` by exiting, not by an exception."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
