"""wtflow's own credentials stay out of nodes and out of everything wtflow writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import Runner
from wtflow import Command, Node, NodeStatus


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
