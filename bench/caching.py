"""W9 and W10, the cache of finished nodes (issue #18): up-to-date checks against doit's and Task's, and a replay.

bench/run.py runs them with the rest of the suite (``bench/run.py W9 W10``); each repetition
calls :func:`w9` and :func:`w10` once, which measure their contenders through ``measure``
(bench/run.py's ``run``: wall time and peak RSS from wait4) in a fresh directory.

W9: one project of 1,000 tasks for each tool, the same files and the same command in each.
Task ``tI`` reads ten 1 KiB sources ``src/tI/0.txt..9.txt`` and writes ``out/tI``; its command
also appends ``tI`` to ``ran.log``, so the suite counts what each tool really ran. Three runs
per tool and repetition: the first (nothing known), the no-op re-run (everything up to date)
and the re-run after one source changed (exactly one task must run). A tool that runs a task it
should have skipped, or skips one it should have run, fails the benchmark (exit 1).

- wtflow: a workflow of 1,000 nodes with ``sources``/``outputs``, ``max_parallel: 2``, through
  its CLI with artifacts, SQLite tracking and the cache in the project's ``.wtflow``.
- doit: a dodo.py of the same 1,000 tasks (``file_dep``, ``targets``), ``-n 2`` (two worker
  processes), its default checker (MD5 of a file whose mtime or size changed) and database.
- Task (go-task-bin): a Taskfile of the same 1,000 tasks (``sources``, ``generates``,
  ``method: checksum``), the default task depending on all of them, ``--concurrency 2``.

After the no-op re-runs, bench/record_floor.py makes what a run of 1,000 nodes must keep, a
directory and two empty files a node, and nothing else: the floor of wtflow's no-op on this
machine's file system, as doit and Task keep no record of a run.

Sources are written before the first run with their mtime set 10 s back, as if written well
before, for all tools alike: wtflow re-reads a file modified less than 2 s before it looks
("racily clean"), as git does. The one changed file keeps the mtime of its change.

W10: one cached node printing 100 MiB of 100-byte lines (W3a's command, a tenth of it). The cache
hit replays those 100 MiB to the console and the run's artifacts; it is compared with the node
running (the miss that fills the cache), W3's reference running the same command, and an empty
wtflow run (the peak RSS a hit adds, W3's measure).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MIB = 1 << 20
TASKS = 1000
SOURCES = 10  # a task's source files
SOURCE_SIZE = 1024
PARALLEL = 2
CHANGED = (TASKS // 2, 3)  # the task and source file the third run changes
WRITTEN_BEFORE = 10.0  # seconds: the sources' mtime, before the first run
W10_BYTES = 100 * MIB
W10_COMMAND = (
    "yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678"
    f" | head -c {W10_BYTES}"
)


Run = Callable[[list[str], Path | None, Path], Any]  # bench/run.py's run(argv, cwd, scratch) -> Measure


class BenchmarkFailed(Exception):
    """A tool ran what it should have skipped, or skipped what it should have run."""


def wtflow_argv(python: str, workflow: Path, state: Path) -> list[str]:
    return [
        python, "-m", "wtflow", "run", str(workflow),
        "--artifacts-dir", str(state / "artifacts"),
        "--db-url", f"sqlite:///{state / 'wtflow.db'}",
        "--cache-dir", str(state / "cache"),
    ]  # fmt: skip


def task_binary(python: str) -> str | None:
    """go-task-bin's ``task``, installed beside the interpreter (``pip install -e '.[bench]'``)."""
    found = Path(python).parent / "task"
    return str(found) if found.is_file() else None


def doit_installed(python: str) -> bool:
    return (Path(python).parent / "doit").is_file()


# --- W9 ------------------------------------------------------------------------------------------


def command(index: int) -> str:
    return f"echo t{index} >> ran.log && cat src/t{index}/*.txt > out/t{index}"


def source_text(index: int, number: int, version: int = 0) -> bytes:
    line = f"task {index} source {number} version {version} ".encode()
    return (line * (SOURCE_SIZE // len(line) + 1))[: SOURCE_SIZE - 1] + b"\n"


def write_project(project: Path) -> None:
    """The sources of the 1,000 tasks, written 10 s ago, and an empty ``out/``."""
    before = time.time() - WRITTEN_BEFORE
    for index in range(TASKS):
        folder = project / "src" / f"t{index}"
        folder.mkdir(parents=True)
        for number in range(SOURCES):
            path = folder / f"{number}.txt"
            path.write_bytes(source_text(index, number))
            os.utime(path, (before, before))
    (project / "out").mkdir()
    (project / "ran.log").touch()


def wtflow_project(project: Path) -> Path:
    lines = ["name: w9", f"max_parallel: {PARALLEL}", "nodes:"]
    lines += [
        f"  - {{name: t{i}, command: {json.dumps(command(i))}, sources: ['src/t{i}/*.txt'], outputs: [out/t{i}]}}"
        for i in range(TASKS)
    ]
    workflow = project / "w9.yml"
    workflow.write_text("\n".join(lines) + "\n")
    return workflow


def doit_project(project: Path) -> Path:
    dodo = project / "dodo.py"
    dodo.write_text(
        f'''"""W9's tasks for doit (written by bench/caching.py)."""

DOIT_CONFIG = {{"verbosity": 0}}


def task_t():
    for i in range({TASKS}):
        yield {{
            "name": str(i),
            "actions": [f"echo t{{i}} >> ran.log && cat src/t{{i}}/*.txt > out/t{{i}}"],
            "file_dep": [f"src/t{{i}}/{{n}}.txt" for n in range({SOURCES})],
            "targets": [f"out/t{{i}}"],
        }}
'''
    )
    return dodo


def task_project(project: Path) -> Path:
    lines = ["version: '3'", "tasks:", "  default:", "    deps: [" + ", ".join(f"t{i}" for i in range(TASKS)) + "]"]
    for i in range(TASKS):
        lines += [
            f"  t{i}:",
            f"    cmds: [{json.dumps(command(i))}]",
            f"    sources: ['src/t{i}/*.txt']",
            f"    generates: [out/t{i}]",
            "    method: checksum",
        ]
    taskfile = project / "Taskfile.yml"
    taskfile.write_text("\n".join(lines) + "\n")
    return taskfile


def w9_tools(python: str) -> dict[str, Callable[[Path], list[str]]]:
    """Each tool's command line for a project directory, given its (already written) project files."""
    tools: dict[str, Callable[[Path], list[str]]] = {
        "wtflow": lambda project: wtflow_argv(python, project / "w9.yml", project / ".wtflow"),
    }
    if doit_installed(python):
        tools["doit"] = lambda project: [
            python, "-m", "doit", "-f", str(project / "dodo.py"), "--db-file", str(project / ".doit.db"),
            "-n", str(PARALLEL),
        ]  # fmt: skip
    task = task_binary(python)
    if task is not None:
        tools["Task"] = lambda project: [task, "--dir", str(project), "--concurrency", str(PARALLEL)]
    return tools


def ran(project: Path) -> list[str]:
    """The tasks run since the log was last emptied, which it now is."""
    log = project / "ran.log"
    # Names, not lines: Task's built-in echo writes a name and its newline apart, so two tasks
    # running at once can leave "t616t617\n\n"; each name is one write, never split.
    names = re.findall(r"t[0-9]+", log.read_text())
    with open(log, "w"):
        pass
    return names


def expect(tool: str, phase: str, names: list[str], wanted: list[str], project: Path) -> str:
    """Why ``names`` (what ran) is not ``wanted`` (in any order) or the outputs are wrong; empty when all is right."""
    if sorted(names) != sorted(wanted):
        extra = sorted(set(names) - set(wanted))
        missing = sorted(set(wanted) - set(names))
        return (
            f"{tool}, {phase}: ran {len(names)} tasks, expected {len(wanted)}"
            f" (not expected: {extra[:5]}; missing: {missing[:5]}; run twice: {len(names) - len(set(names))})"
        )
    wrong = [i for i in range(TASKS) if size(project / "out" / f"t{i}") != SOURCES * SOURCE_SIZE]
    if wrong:
        return f"{tool}, {phase}: {len(wrong)} outputs of the wrong size, e.g. out/t{wrong[0]}"
    for name in wanted[:1] + wanted[-1:]:  # what ran holds its sources as they are now
        sources = b"".join((project / "src" / name / f"{number}.txt").read_bytes() for number in range(SOURCES))
        if (project / "out" / name).read_bytes() != sources:
            return f"{tool}, {phase}: out/{name} does not hold its sources"
    return ""


def size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def w9(folder: Path, python: str, measure: Run) -> dict[str, Any]:
    """One repetition of W9: each tool's first, no-op and one-change runs, phase by phase across tools."""
    tools = w9_tools(python)
    projects = {}
    for tool in tools:
        project = folder / f"w9-{tool.lower()}"
        write_project(project)
        {"wtflow": wtflow_project, "doit": doit_project, "Task": task_project}[tool](project)
        projects[tool] = project
    changed_task, changed_file = CHANGED
    phases = [
        ("first run", [f"t{i}" for i in range(TASKS)]),
        ("no-op re-run", []),
        ("one source changed", [f"t{changed_task}"]),
    ]
    results: dict[str, Any] = {}
    for phase, wanted in phases:
        if phase == "one source changed":
            for project in projects.values():  # the same edit, now, in every project
                path = project / "src" / f"t{changed_task}" / f"{changed_file}.txt"
                path.write_bytes(source_text(changed_task, changed_file, version=1))
        for tool, argv in tools.items():
            project = projects[tool]
            os.sync()  # what earlier runs wrote is on disk before this one starts: no writeback during it
            result = measure(argv(project), project, project)
            problem = expect(tool, phase, ran(project), wanted, project)
            if problem:
                raise BenchmarkFailed(f"W9, {problem}\n{tool}'s stderr ends: {tail(project / 'stderr')}")
            results[f"{tool} {phase}"] = result
        if phase == "no-op re-run":
            floor = [python, str(HERE / "record_floor.py"), str(folder / "record-floor"), str(TASKS)]
            results["record floor"] = measure(floor, folder, folder)
    return results


def tail(path: Path, length: int = 600) -> str:
    with open(path, "rb") as file:
        file.seek(max(0, path.stat().st_size - length))
        return file.read().decode(errors="replace")


# --- W10 -----------------------------------------------------------------------------------------


def w10(folder: Path, python: str, measure: Run) -> dict[str, Any]:
    """One repetition of W10: the miss that fills the cache, the hit that replays it, the baselines."""
    project = folder / "w10"
    project.mkdir()
    seed = project / "seed.txt"
    seed.write_text("W10\n")
    before = time.time() - WRITTEN_BEFORE
    os.utime(seed, (before, before))
    workflow = project / "w10.yml"
    workflow.write_text(
        f"name: w10\nnodes:\n  - {{name: big, command: {json.dumps(W10_COMMAND)}, sources: [seed.txt]}}\n"
    )
    empty = project / "empty.yml"
    empty.write_text("name: empty\nnodes:\n  - {name: n0, command: 'true'}\n")
    listing = project / "reference-commands.txt"
    listing.write_text(W10_COMMAND + "\n")
    state = project / ".wtflow"
    results: dict[str, Any] = {}
    for name, argv, status in [
        ("wtflow miss (runs, fills the cache)", wtflow_argv(python, workflow, state), "succeeded"),
        ("wtflow cache hit (replays)", wtflow_argv(python, workflow, state), "cached"),
        ("reference", [python, str(HERE / "reference.py"), str(listing), "1", str(project / "ref")], None),
        ("wtflow empty run", wtflow_argv(python, empty, project / ".wtflow-empty"), None),
    ]:
        os.sync()
        result = measure(argv, project, project)
        if status is not None and result.ok:
            problem = w10_check(project, state, status)
            if problem:
                raise BenchmarkFailed(f"W10, {name}: {problem}\nstderr ends: {tail(project / 'stderr')}")
        results[name] = result
    return results


def w10_check(project: Path, state: Path, status: str) -> str:
    """Why the last run's node did not end ``status`` with all 100 MiB in its stdout artifact; empty if it did."""
    cached = b'"status":"cached"' in (project / "stderr").read_bytes()  # a few log lines
    if cached != (status == "cached"):
        return f"the node did not end {status}"
    runs = sorted((state / "artifacts").iterdir(), key=lambda path: path.stat().st_mtime_ns)
    stdout = runs[-1] / "big" / "stdout.log"
    if not stdout.is_file() or stdout.stat().st_size != W10_BYTES:
        size = stdout.stat().st_size if stdout.is_file() else None
        return f"{stdout} holds {size} bytes, not {W10_BYTES}"
    return ""
