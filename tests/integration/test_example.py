"""The Python API's reference program prints exactly its nodes' output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import wtflow

EXAMPLE = Path(__file__).parents[2] / "examples" / "python_api.py"


def test_reference_program_prints_exactly_the_nodes_output(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "main.py")
    done = subprocess.run(
        [sys.executable, "main.py"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
    )
    assert done.stdout.decode() == (
        "Starting workflow\nSTDOUT\nSTDERR\nprocessing stdout: b'STDOUT\\n'\nprocessing stderr: b'STDERR\\n'\n"
    )
    assert done.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["main.py"]  # nothing left in the working directory


def test_python_dash_m_wtflow_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "wtflow", "--version"], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"wtflow, version {wtflow.__version__}\n", "")


def test_graph_example_runs_with_its_function_and_artifacts(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLE.parent, examples, ignore=shutil.ignore_patterns("__pycache__", "build"))
    done = subprocess.run(
        [sys.executable, "-m", "wtflow", "run", "build.yml", "--db-url", "", "--artifacts-dir", str(tmp_path / "arts")],
        cwd=examples,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "[summary] summary: ALPHA\n[summary] summary: BETA\n" in done.stdout
    run_dir = next((tmp_path / "arts").iterdir())
    assert (run_dir / "summary" / "result.json").read_text() == '{"lines": 3, "first": ["ALPHA", "BETA"]}'
    assert (run_dir / "shout" / "files" / "shouted" / "build" / "shout.txt").read_text() == "ALPHA\nBETA\nGAMMA\n"
    assert not (examples / "build").exists()  # the last node cleaned up


def test_matrix_example_passes_outputs_through_its_matrix_to_an_always_report(tmp_path: Path) -> None:
    """examples/matrix.yml succeeds, skips publish (channel is not release) and reports the outputs."""
    shutil.copy(EXAMPLE.parent / "matrix.yml", tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "wtflow", "run", "matrix.yml", "--db-url", "", "--artifacts-dir", "arts"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "[test (3.12, linux, coverage)] testing 1.4.2 with python 3.12 on linux\n" in done.stdout
    assert done.stdout.endswith("[report] version 1.4.2: tests success, coverage 87%, publish skipped\n")
    record = json.loads(next((tmp_path / "arts").iterdir()).joinpath("run.json").read_text())
    assert {name: node["status"] for name, node in record["nodes"].items()} == {
        "matrix": "succeeded",
        "version": "succeeded",
        "test": "succeeded",
        "test (3.11, linux)": "succeeded",
        "test (3.12, linux, coverage)": "succeeded",
        "test (3.12, macos)": "succeeded",
        "publish": "skipped",
        "report": "succeeded",
    }
    assert record["nodes"]["test (3.12, linux, coverage)"]["outputs"] == {"coverage": "87%"}
