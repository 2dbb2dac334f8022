"""Processes that escaped their node: adopted by the runner and stopped, however they fork."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from wtflow.orphans import adopting_orphans, children, sweep


def test_the_sweep_stops_an_orphan_that_forks_again_while_it_is_stopped(tmp_path: Path) -> None:
    """One pass would miss the grandchild, adopted only once its parent died of the first SIGTERM."""
    marker = tmp_path / "grandchild"
    # On SIGTERM it starts a grandchild in a session of its own, then exits.
    grandchild = f'setsid sh -c "echo \\$\\$ > {marker}; exec sleep 300"'
    script = f"trap '{grandchild} & exit 0' TERM; echo ready; while :; do sleep 0.05; done"
    with adopting_orphans() as adopting:
        if not adopting:
            pytest.skip("this system cannot make a process a child subreaper (Linux only)")
        process = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, start_new_session=True)
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == b"ready\n"
            sweep(grace=5, spare=set())
            assert children() == []
        finally:
            if marker.exists() and marker.read_text().strip():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(marker.read_text()), signal.SIGKILL)
            process.stdout.close()  # type: ignore[union-attr]
            process.wait(timeout=10)  # reaped by the sweep already: Popen only learns it is gone
    assert marker.exists()  # the grandchild did start, and was stopped


def test_the_sweep_spares_the_processes_it_is_told_to(tmp_path: Path) -> None:
    with adopting_orphans():
        helper = subprocess.Popen(["sleep", "300"])
        try:
            sweep(grace=1, spare={helper.pid})
            assert helper.poll() is None
        finally:
            helper.kill()
            helper.wait()
