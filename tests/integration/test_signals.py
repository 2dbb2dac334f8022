"""Signals to `wtflow run`: each stops the run, stops its nodes, and is recorded as what it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import process_alive, wait_for

SLEEPER = """
name: slow
root:
  name: root
  children:
    - {name: sleeper, command: "echo $$ > sleeper.pid; exec sleep 300"}
    - {name: after, command: "true"}
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGHUP, 129), (signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_nodes_and_is_recorded_with_its_exit_code(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    (tmp_path / "wtflow.yml").write_text(SLEEPER)
    env = {**os.environ, "WTFLOW_LOG_FORMAT": "json", "WTFLOW_DB_URL": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "wtflow", "run", "--kill-grace", "5"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    pid_file = tmp_path / "sleeper.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    node_pid = int(pid_file.read_text())
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr.decode()
    assert b"Traceback" not in stderr
    assert not process_alive(node_pid)
    events = [json.loads(line) for line in stderr.decode().splitlines()]
    assert events[-1] == events[-1] | {"event": "error", "message": f"interrupted by {sig.name}"}
    finished = next(e for e in events if e["event"] == "run_finished")
    assert (finished["status"], finished["exit_code"]) == ("cancelled", code)
    run_json = json.loads(next((tmp_path / ".wtflow" / "artifacts").glob("*/run.json")).read_text())
    assert (run_json["status"], run_json["exit_code"]) == ("cancelled", code)
    assert run_json["error"] == f"interrupted by {sig.name}"
    assert run_json["nodes"]["sleeper"]["status"] == "cancelled"
    assert run_json["nodes"]["after"]["status"] == "skipped"
