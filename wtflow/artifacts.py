"""Where a run's outputs live on disk, and how they are written.

Layout::

    <artifacts_dir>/<run_id>/run.json
    <artifacts_dir>/<run_id>/<node dir>/stdout.log
    <artifacts_dir>/<run_id>/<node dir>/stderr.log
    <artifacts_dir>/<run_id>/<node dir>/result.json        (PyFunc return value)
    <artifacts_dir>/<run_id>/<node dir>/files/<name>/...   (declared file artifacts)

Run ids sort by start time and carry random bits, so concurrent runs never collide. Node
directory names come from node names, made safe and unique.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wtflow.model import RESULT, STDERR, STDOUT

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 64
FILE_NAMES = {STDOUT: "stdout.log", STDERR: "stderr.log", RESULT: "result.json"}


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by start time: ``20261129T010212123456Z-1a2b3c4d``."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + os.urandom(4).hex()  # secrets.token_hex(4), without its import


def safe_dir_name(name: str) -> str:
    """A directory name for node ``name``: the name itself when safe, else a cleaned name plus a hash."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".")[:_MAX_NAME]
    if cleaned == name and name not in {"", "files"}:
        return name
    import hashlib  # rarely needed; a run's start does not wait for it

    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned or 'node'}-{digest}"


def node_dir_names(names: Iterable[str]) -> dict[str, str]:
    """Distinct, safe directory names for distinct node names."""
    taken: set[str] = set()
    result: dict[str, str] = {}
    for name in names:
        candidate = safe_dir_name(name)
        base, counter = candidate, 1
        while candidate in taken:  # two cleaned names that still meet (practically never)
            counter += 1
            candidate = f"{base}-{counter}"
        taken.add(candidate)
        result[name] = candidate
    return result


@functools.cache
def process_temp_dir() -> Path:
    """A directory that lasts until this process exits: the default artifacts directory."""
    import tempfile  # only when no artifacts directory is set

    path = Path(tempfile.mkdtemp(prefix="wtflow-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


class RunLayout:
    """The paths of one run's artifacts."""

    def __init__(self, run_dir: Path, node_names: Iterable[str]) -> None:
        self.run_dir = run_dir
        self._dirs = node_dir_names(node_names)
        # The scheduler asks for each path several times, as a node starts (W7: 500 at once).
        self._node_dirs: dict[str, Path] = {}
        self._paths: dict[tuple[str, str], Path] = {}

    def node_dir(self, node: str) -> Path:
        """The directory holding ``node``'s artifacts."""
        path = self._node_dirs.get(node)
        if path is None:
            path = self._node_dirs[node] = self.run_dir / self._dirs[node]
        return path

    def path(self, node: str, artifact: str) -> Path:
        """The file of ``node``'s artifact ``artifact``."""
        key = (node, artifact)
        path = self._paths.get(key)
        if path is None:
            file_name = FILE_NAMES.get(artifact)
            if file_name is not None:
                path = self.node_dir(node) / file_name
            else:
                path = self.node_dir(node) / "files" / safe_dir_name(artifact)
            self._paths[key] = path
        return path

    @property
    def run_file(self) -> Path:
        """``run.json``: the run's summary."""
        return self.run_dir / "run.json"


def create_run_dir(artifacts_dir: Path | None, run_id: str) -> Path:
    """Make the directory of a new run (under a temporary directory when none is configured)."""
    root = artifacts_dir if artifacts_dir is not None else process_temp_dir()
    root.mkdir(parents=True, exist_ok=True)
    run_dir = root / run_id
    run_dir.mkdir()  # exist_ok=False: a collision must not mix two runs
    return run_dir.resolve()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON so readers see the old file or the new one, never half of one.

    Top-level keys and the entries of nested objects get a line each: readable, and every line
    is encoded by the C encoder (``indent`` would switch json to its pure-Python one, which
    costs tens of milliseconds for a run of a thousand nodes).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(_json_lines(data))
    os.replace(tmp, path)


def _json_lines(data: dict[str, Any]) -> str:
    def entry(key: str, value: Any, indent: str) -> str:
        return f"{indent}{json.dumps(key)}: {json.dumps(value, default=str)}"

    parts = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            inner = ",\n".join(entry(k, v, "    ") for k, v in value.items())
            parts.append(f"  {json.dumps(key)}: {{\n{inner}\n  }}")
        else:
            parts.append(entry(key, value, "  "))
    return "{\n" + ",\n".join(parts) + "\n}\n"
