"""The repository's Dockerfile builds an image that runs a mounted workspace's wtflow.yml."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import missing_backend

pytestmark = pytest.mark.docker
ROOT = Path(__file__).parents[2]
TAG = "wtflow-test/wtflow:under-test"


@pytest.fixture(scope="module")
def wtflow_image() -> Iterator[str]:
    base = os.environ.get("WTFLOW_TEST_PYTHON_IMAGE")
    if not base:
        missing_backend(
            "WTFLOW_TEST_PYTHON_IMAGE is not set (../shared/tools/docker-up --env)", "WTFLOW_REQUIRE_DOCKER"
        )
    build = subprocess.run(
        ["docker", "build", "-q", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", "-t", TAG, str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    yield TAG
    subprocess.run(["docker", "image", "rm", "-f", TAG], capture_output=True, check=False)


def test_image_runs_the_mounted_workspaces_workflow(tmp_path: Path, wtflow_image: str, docker_client: Any) -> None:
    (tmp_path / "wtflow.yml").write_text("name: img\nroot: {name: hello, command: echo hello from the image}\n")
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "-v", f"{tmp_path}:/work", "-w", "/work", wtflow_image, "run"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello from the image\n"
    (run_dir,) = (tmp_path / ".wtflow" / "artifacts").iterdir()
    assert (run_dir / "hello" / "stdout.log").read_text() == "hello from the image\n"


def test_image_is_lean_and_compiled(wtflow_image: str, docker_client: Any) -> None:
    # No pip and no build tree; bytecode for wtflow and its dependencies, so starts compile nothing.
    script = (
        "ls /opt/wtflow/bin/pip /src 2>/dev/null;"
        "for m in wtflow/cli/__pycache__/__init__ wtflow/db/__pycache__/writer sqlalchemy/__pycache__/__init__; do"
        "  ls /opt/wtflow/lib/python3*/site-packages/$m.cpython-*.pyc >/dev/null || echo missing $m; done"
    )
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", wtflow_image, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (0, "")


def _action() -> dict[str, Any]:
    definition: dict[str, Any] = yaml.safe_load((ROOT / "action.yml").read_text())
    return definition


def test_the_action_runs_the_image_its_release_publishes() -> None:
    runs = _action()["runs"]
    assert runs["using"] == "docker"
    assert runs["image"].startswith("docker://ghcr.io/ido123net/wtflow:")  # pulled, not built per job
    release = (ROOT / ".github" / "workflows" / "release.yml").read_text()
    assert 'image="ghcr.io/${GITHUB_REPOSITORY,,}"' in release
    assert "git tag -f v1" in release


def test_image_runs_as_a_github_docker_action(tmp_path: Path, wtflow_image: str, docker_client: Any) -> None:
    """The action's definition (its args, its inputs' defaults) on the image built from this checkout.

    As the runner starts it: workspace and file commands mounted, the docker socket, INPUT_* and GITHUB_*.
    """
    action = _action()
    inputs = {f"INPUT_{name.upper()}": str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    inputs["INPUT_WORKFLOW-FILE"] = "ci.yml"
    busybox = os.environ.get("WTFLOW_TEST_IMAGE", "")
    workspace, commands = tmp_path / "workspace", tmp_path / "file_commands"
    workspace.mkdir()
    commands.mkdir()
    (workspace / "ci.yml").write_text(
        "name: action\nroot:\n  name: ci\n  command: echo from the action\n  children:\n"
        "    - name: inside\n      command: echo made by a sibling > sibling.txt\n"
        f"      container: {{image: '{busybox}', network: none, pull: never}}\n"
    )
    environment = [item for name, value in inputs.items() for item in ("-e", f"{name}={value}")]
    done = subprocess.run(
        [
            "docker", "run", "--rm", "--network", "none", "--workdir", "/github/workspace",
            "-v", f"{workspace}:/github/workspace", "-v", f"{commands}:/github/file_commands",
            "-v", "/var/run/docker.sock:/var/run/docker.sock",
            *environment, "-e", "GITHUB_ACTIONS=true",
            "-e", "GITHUB_OUTPUT=/github/file_commands/output",
            "-e", "GITHUB_STEP_SUMMARY=/github/file_commands/summary",
            wtflow_image, *action["runs"]["args"],
        ],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "::group::ci (succeeded)\nfrom the action\n::endgroup::" in done.stdout
    outputs = dict(line.split("=", 1) for line in (commands / "output").read_text().splitlines())
    assert (outputs["status"], outputs["artifacts-dir"]) == ("succeeded", "wtflow-artifacts")
    assert "| inside | ✅ succeeded |" in (commands / "summary").read_text()
    assert (workspace / "sibling.txt").read_text() == "made by a sibling\n"
    run_dir = workspace / "wtflow-artifacts" / outputs["run-id"]
    assert (run_dir / "ci" / "stdout.log").read_text() == "from the action\n"
