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


def _run_on_a_full_disk(project: Path) -> dict[str, object]:
    """``wtflow run`` where no file may grow; its last stderr line (an error, as JSON), checked for what must hold."""
    command = f"ulimit -f 0; exec {sys.executable} -m wtflow run --db-url ''"
    env = {**os.environ, "WTFLOW_LOG_FORMAT": "json"}
    process = subprocess.run(["sh", "-c", command], cwd=project, env=env, capture_output=True, timeout=120, check=False)
    assert process.returncode == 3, process.stderr.decode()
    assert b"Traceback" not in process.stderr
    assert not (project / "ran").exists()
    leftovers = [path.name for path in (project / ".wtflow").rglob("*.tmp")]
    assert leftovers == []
    error: dict[str, object] = json.loads(process.stderr.decode().splitlines()[-1])
    assert error["event"] == "error"
    return error


def test_a_state_directory_that_cannot_be_written_exits_3_before_any_node(tmp_path: Path) -> None:
    (tmp_path / "wtflow.yml").write_text(WORKFLOW)
    error = _run_on_a_full_disk(tmp_path)
    assert "the state directory" in str(error["message"])
    assert "File too large" in str(error["message"])


def test_a_run_whose_record_cannot_be_written_is_refused_before_any_node(tmp_path: Path) -> None:
    (tmp_path / "wtflow.yml").write_text(WORKFLOW)
    (tmp_path / ".wtflow").mkdir()
    (tmp_path / ".wtflow" / ".gitignore").write_text("*\n")
    error = _run_on_a_full_disk(tmp_path)
    assert "the run's record cannot be written" in str(error["message"])
    assert "File too large" in str(error["message"])
