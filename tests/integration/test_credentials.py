"""wtflow's own credentials stay out of nodes and out of everything wtflow writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration import pyfuncs
from tests.integration.conftest import Runner
from wtflow import Command, Node, NodeStatus, PyFunc


def test_nodes_do_not_inherit_the_database_url(run_workflow: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WTFLOW_DB_URL", "postgresql://ci:hunter22@127.0.0.1/ci")
    monkeypatch.setenv("INPUT_DB-URL", "postgresql://ci:hunter22@127.0.0.1/ci")
    monkeypatch.setenv("OTHER_SETTING", "kept")
    engine = run_workflow(Node("env", executable=Command("env")))
    assert engine.result is not None
    stdout = engine.result["env"].artifacts["stdout"].data
    assert b"OTHER_SETTING=kept\n" in stdout
    assert b"WTFLOW_DB_URL" not in stdout
    assert b"INPUT_DB-URL" not in stdout
    assert b"hunter22" not in stdout


def test_the_database_password_is_masked_in_output_and_records(
    run_workflow: Runner, postgres_url: str, tmp_path: Path
) -> None:
    """PostgreSQL here trusts local connections, so any password connects: the URL's must never show."""
    password = "pw-hunter-1234"
    url = postgres_url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@")
    assert password in url
    engine = run_workflow(Node("leak", executable=Command(f"echo the password is {password}; exit 3")), db_url=url)
    assert engine.result is not None
    node = engine.result["leak"]
    assert node.status is NodeStatus.FAILED
    assert node.artifacts["stdout"].data == b"the password is ***\n"
    for path in (tmp_path / "artifacts").rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def test_a_secret_that_is_not_set_is_a_warning(run_workflow: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_TOKEN", raising=False)
    monkeypatch.setenv("SET_TOKEN", "value-1234")
    engine = run_workflow(Node("a", executable=Command("true")), secrets=("NOT_SET_TOKEN", "SET_TOKEN"))
    assert engine.warnings == ["secret NOT_SET_TOKEN is not set: there is no value of it to mask"]


def test_the_cli_logs_a_secret_that_is_not_set(tmp_path: Path) -> None:
    (tmp_path / "wtflow.yml").write_text("name: wf\nsecrets: [NOT_SET_TOKEN]\nroot: {name: a, command: 'true'}\n")
    env = {key: value for key, value in os.environ.items() if key != "NOT_SET_TOKEN"}
    process = subprocess.run(
        [sys.executable, "-m", "wtflow", "run", "--log-format", "json", "--db-url", ""],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr.decode()
    warnings = [event for event in map(json.loads, process.stderr.decode().splitlines()) if event["level"] == "warning"]
    assert warnings == [
        warnings[0]
        | {"event": "run_warning", "message": "secret NOT_SET_TOKEN is not set: there is no value of it to mask"}
    ]


def test_a_functions_result_is_stored_masked(run_workflow: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", 'tok"12\\345')  # JSON escapes quotes and backslashes: still masked
    engine = run_workflow(
        Node("f", executable=PyFunc(pyfuncs.returns_secret, args=("API_TOKEN",))), secrets=("API_TOKEN",)
    )
    assert engine.result is not None
    stored = engine.result["f"].artifacts["result"].data
    assert json.loads(stored) == {"token": "***", "***": ["Bearer ***"], "count": 1}
    assert b"345" not in stored
