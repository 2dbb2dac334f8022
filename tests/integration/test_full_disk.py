"""A disk that takes no more bytes: the run is refused before any node, cleanly, with nothing half-written.

``ulimit -f 0`` makes every write that would grow a file fail (EFBIG), as a full disk fails
them (ENOSPC), without filling a real disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WORKFLOW = """
name: full
root:
  name: root
  children:
    - {name: a, command: "touch ran"}
"""


def test_a_run_whose_record_cannot_be_written_exits_3_before_any_node(tmp_path: Path) -> None:
    (tmp_path / "wtflow.yml").write_text(WORKFLOW)
    env = {**os.environ, "WTFLOW_LOG_FORMAT": "json"}
    command = f"ulimit -f 0; exec {sys.executable} -m wtflow run --db-url ''"
    process = subprocess.run(
        ["sh", "-c", command], cwd=tmp_path, env=env, capture_output=True, timeout=120, check=False
    )
    assert process.returncode == 3, process.stderr.decode()
    assert b"Traceback" not in process.stderr
    error = json.loads(process.stderr.decode().splitlines()[-1])
    assert error["event"] == "error"
    assert "cannot be written" in error["message"]
    assert "File too large" in error["message"]
    assert not (tmp_path / "ran").exists()
    leftovers = [path.name for path in (tmp_path / ".wtflow" / "artifacts").rglob("*") if path.name.endswith(".tmp")]
    assert leftovers == []


def test_a_run_whose_record_cannot_be_written_is_refused_after_the_state_directory_exists(tmp_path: Path) -> None:
    (tmp_path / "wtflow.yml").write_text(WORKFLOW)
    (tmp_path / ".wtflow").mkdir()
    (tmp_path / ".wtflow" / ".gitignore").write_text("*\n")
    env = {**os.environ, "WTFLOW_LOG_FORMAT": "json"}
    command = f"ulimit -f 0; exec {sys.executable} -m wtflow run --db-url ''"
    process = subprocess.run(
        ["sh", "-c", command], cwd=tmp_path, env=env, capture_output=True, timeout=120, check=False
    )
    assert process.returncode == 3, process.stderr.decode()
    assert b"Traceback" not in process.stderr
    error = json.loads(process.stderr.decode().splitlines()[-1])
    assert "the run's record cannot be written" in error["message"]
    assert "File too large" in error["message"]
    assert not (tmp_path / "ran").exists()
    leftovers = [path.name for path in (tmp_path / ".wtflow" / "artifacts").rglob("*") if path.name.endswith(".tmp")]
    assert leftovers == []
