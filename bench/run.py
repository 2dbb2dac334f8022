"""wtflow's benchmark suite: every workload and its baselines, interleaved, repeated, compared.

    .venv/bin/python bench/run.py              # 3 repetitions of everything
    .venv/bin/python bench/run.py --reps 1 W1 W3
    .venv/bin/python bench/run.py --compare bench/results/<earlier>.json   # what changed since then

Each repetition runs every contender of every workload once, in turn, so machine noise hits
all of them alike. W7, whose target is an absolute time, also runs bench/floor.py: the least a
Python runner that keeps the output can do, so each run shows what the machine allows. Floors
of the same kind: W8's bench/database_floor.py (the reference, after waiting for wtflow's
database writer as any run must), with wtflow run without a database beside it (what is left is
the runner's own start), and W9's bench/record_floor.py (the files a run keeps per node).
Before each measure, what earlier ones wrote is synced to disk.
pypyr and doit join W1 and W2 as further baselines when they are installed
(``pip install -e '.[bench]'``), doit and Task (go-task-bin) W9. W9 and W10, the cache of
finished nodes, live in bench/caching.py: several runs of one project per repetition, each
checked (a tool that runs what it should skip, or skips what it should run, stops the suite
with exit 1). Reported: the median wall time, the ratio wtflow / baseline, and the peak
RSS of the runner process (from wait4). Results also go to bench/results/<time>.json.
wtflow is always run through its CLI, as users run it, with artifacts stored and SQLite
tracking on unless a workload says otherwise. wtflow's logs go to a file (JSON lines, as in CI);
node output to the console is on and goes to /dev/null. wtflow's modules and W4's function
module are byte-compiled first, as ``pip install`` and a first import do (under this
workspace's PYTHONDONTWRITEBYTECODE=1 they would otherwise be compiled on every start).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import caching

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
FLOOR = HERE / "floor.py"
GIB = 1 << 30


@dataclass
class Measure:
    seconds: float
    max_rss_mib: float
    ok: bool
    note: str = ""


@dataclass
class Contender:
    name: str
    argv: Callable[[Path], list[str]]  # given a fresh scratch dir
    cwd: Path | None = None
    check: Callable[[Path], str] | None = None  # returns "" when the output is complete, else why not


@dataclass
class Workload:
    id: str
    title: str
    target: str
    contenders: list[Contender]
    # (numerator, denominator, limit): wtflow's median over a baseline's, at most limit (None: shown only)
    ratios: list[tuple[str, str, float | None]] = field(default_factory=list)
    results: dict[str, list[Measure]] = field(default_factory=dict)
    # A workload of several dependent runs a repetition (W9, W10): given a fresh directory and
    # ``run``, it measures its contenders itself and returns their measures by name.
    steps: Callable[[Path, Callable[..., Measure]], dict[str, Measure]] | None = None


def run(argv: list[str], cwd: Path | None, scratch: Path) -> Measure:
    start = time.perf_counter()
    # Console output goes to /dev/null: printed, as in CI, but not written to this disk twice.
    with open(scratch / "stderr", "wb") as err:
        process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    note = ""
    if process.returncode != 0:
        note = f"exit {process.returncode}: " + tail(scratch / "stderr", 300)
    if contains(scratch / "stderr", b"Too many open files"):
        note += " too many open files"
    return Measure(seconds, usage.ru_maxrss / 1024, process.returncode == 0 and not note, note)


# A child's peak RSS counts this process's own until the child execs (posix_spawn shares its
# memory), so this process never reads a run's log whole: W8j's is 85 MB.
def tail(path: Path, size: int) -> str:
    with open(path, "rb") as file:
        file.seek(max(0, path.stat().st_size - size))
        return file.read().decode(errors="replace")


def contains(path: Path, needle: bytes, block: int = 1 << 20) -> bool:
    with open(path, "rb") as file:
        carry = b""
        while chunk := file.read(block):
            if needle in carry + chunk:
                return True
            carry = chunk[-len(needle) :]
    return False


def wtflow(workflow: Path, *extra: str) -> Callable[[Path], list[str]]:
    def argv(scratch: Path) -> list[str]:
        return [
            PYTHON, "-m", "wtflow", "run", str(workflow),
            "--artifacts-dir", str(scratch / "artifacts"),
            "--db-url", f"sqlite:///{scratch / 'wtflow.db'}",
            *extra,
        ]  # fmt: skip

    return argv


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def pypyr(folder: Path, name: str, lanes: list[list[str]]) -> Callable[[Path], list[str]]:
    """pypyr running ``lanes`` side by side, each lane's commands one after another, through the shell."""
    step = {"name": "pypyr.steps.shells", "in": {"cmds": {"run": lanes}}}
    (folder / f"{name}.yaml").write_text(json.dumps({"steps": [step]}))  # JSON is YAML
    return lambda _: [PYTHON, "-m", "pypyr", name, "--dir", str(folder)]


def doit(count: int, *, parallel: int = 1, chain: bool = False) -> Callable[[Path], list[str]]:
    def argv(scratch: Path) -> list[str]:
        return [
            PYTHON, "-m", "doit", "-f", str(HERE / "dodo.py"), "--db-file", str(scratch / "doit.db"),
            *(["-n", str(parallel)] if parallel > 1 else []), f"count={count}", f"chain={int(chain)}",
        ]  # fmt: skip

    return argv


def others(*contenders: tuple[str, Contender]) -> list[Contender]:
    """The contenders whose runner is installed (pypyr and doit are optional baselines)."""
    return [contender for module, contender in contenders if installed(module)]


def write_graph(path: Path, commands: list[str], *, chain: bool = False, max_parallel: int | None = None,
                functions: bool = False) -> Path:  # fmt: skip
    lines = [f"name: {path.stem}"]
    if max_parallel:
        lines.append(f"max_parallel: {max_parallel}")
    lines.append("nodes:")
    for index, command in enumerate(commands):
        needs = f", needs: [n{index - 1}]" if chain and index else ""
        if functions:
            lines.append(f"  - {{name: n{index}, function: 'benchfuncs:noop', args: [{index}]{needs}}}")
        else:
            lines.append(f"  - {{name: n{index}, command: {json.dumps(command)}{needs}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def reference(
    commands: list[str], parallel: int, folder: Path, script: Path | None = None
) -> Callable[[Path], list[str]]:
    """The asyncio reference (or another script of the same usage) running ``commands``."""
    listing = folder / f"commands-{len(commands)}-{parallel}-{abs(hash(tuple(commands))) % 10**8}.txt"
    listing.write_text("\n".join(commands) + "\n")
    script = script or HERE / "reference.py"
    return lambda scratch: [PYTHON, str(script), str(listing), str(parallel), str(scratch / "ref")]


def xargs(count: int, parallel: int) -> Callable[[Path], list[str]]:
    return lambda _: ["sh", "-c", f"seq {count} | xargs -P{parallel} -n1 sh -c 'true' _"]


def bash_loop(count: int) -> Callable[[Path], list[str]]:
    return lambda _: ["bash", "-c", f"for i in $(seq {count}); do /bin/true; done"]


def w8_check(lines: int, nodes: int) -> Callable[[Path], str]:
    expected = sum(len(f"{n} {i}\n") for n in range(1) for i in range(lines))

    def check(scratch: Path) -> str:
        runs = list((scratch / "artifacts").iterdir())
        sizes = [p.stat().st_size for p in runs[0].glob("*/stdout.log")]
        if len(sizes) != nodes or set(sizes) != {expected}:
            return f"artifacts incomplete: {len(sizes)} files, sizes {sorted(set(sizes))[:3]}"
        return ""

    return check


def workloads(folder: Path, quick: bool) -> list[Workload]:
    n = 1000
    trues = ["true"] * n
    w1 = write_graph(folder / "w1.yml", trues, max_parallel=2)
    w2 = write_graph(folder / "w2.yml", trues, chain=True)
    shutil.copy(HERE / "benchfuncs.py", folder / "benchfuncs.py")
    # Byte-compiled like any imported module normally is: under this workspace's
    # PYTHONDONTWRITEBYTECODE=1 each forked function process compiled it again (1.8 ms a node).
    compileall.compile_file(folder / "benchfuncs.py", quiet=1)
    w4 = write_graph(folder / "w4.yml", ["-"] * n, max_parallel=2, functions=True)
    line_cmd = "yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -c 1073741824"
    binary_cmd = "head -c 1073741824 /dev/zero"
    w3_lines = write_graph(folder / "w3-lines.yml", [line_cmd])
    w3_binary = write_graph(folder / "w3-binary.yml", [binary_cmd])
    empty = write_graph(folder / "empty.yml", ["true"])
    big10 = write_graph(folder / "w5-10k.yml", ["true"] * 10_000)
    big20 = write_graph(folder / "w5-20k.yml", ["true"] * 20_000)
    sleeps = ["sleep 1"] * 500
    w7 = write_graph(folder / "w7.yml", sleeps, max_parallel=500)
    printer = 'i=0; while [ $i -lt 10000 ]; do echo "0 $i"; i=$((i+1)); done'
    printer = "seq 0 9999 | sed 's/^/0 /'"
    w8 = write_graph(folder / "w8.yml", [printer] * 100, max_parallel=8)
    return [
        Workload("W1", "1,000 independent `true`, max_parallel 2", "<= 1.25 x reference", [
            Contender("wtflow", wtflow(w1)),
            Contender("reference", reference(trues, 2, folder)),
            Contender("xargs -P2", xargs(n, 2)),
            Contender("bash loop", bash_loop(n)),
            *others(("pypyr", Contender("pypyr, 2 lanes", pypyr(folder, "w1", [trues[::2], trues[1::2]]))),
                    ("doit", Contender("doit -n 2", doit(n, parallel=2)))),
        ], [("wtflow", "reference", 1.25)]),
        Workload("W2", "a chain of 1,000 `true`", "<= 1.25 x reference", [
            Contender("wtflow", wtflow(w2)),
            Contender("reference", reference(trues, 1, folder)),
            Contender("bash loop", bash_loop(n)),
            *others(("pypyr", Contender("pypyr", pypyr(folder, "w2", [trues]))),
                    ("doit", Contender("doit", doit(n, chain=True)))),
        ], [("wtflow", "reference", 1.25)]),
        Workload("W3a", "1 GiB of 100-byte lines on stdout", "<= 1.5 x reference; RSS <= empty + 64 MiB", [
            Contender("wtflow", wtflow(w3_lines)),
            Contender("reference", reference([line_cmd], 1, folder)),
            Contender("wtflow empty run", wtflow(empty)),
        ], [("wtflow", "reference", 1.5)]),
        Workload("W3b", "1 GiB binary, no newline, on stdout", "<= 1.5 x reference; RSS <= empty + 64 MiB", [
            Contender("wtflow", wtflow(w3_binary)),
            Contender("reference", reference([binary_cmd], 1, folder)),
        ], [("wtflow", "reference", 1.5)]),
        Workload("W4", "1,000 PyFunc nodes returning at once, max_parallel 2", "<= 3 x W1's wtflow", [
            Contender("wtflow", wtflow(w4), cwd=folder),
            Contender("W1 wtflow", wtflow(w1)),
        ], [("wtflow", "W1 wtflow", 3.0)]),
        Workload("W5", "load, validate, --dry-run 10,000 then 20,000 nodes", "10k <= 2 s, <= 300 MiB; 20k <= 2.2 x 10k", [
            Contender("wtflow 10k", wtflow(big10, "--dry-run")),
            Contender("wtflow 20k", wtflow(big20, "--dry-run")),
        ], [("wtflow 20k", "wtflow 10k", 2.2)]),
        Workload("W6", "W1 with SQLite tracking on vs off", "<= 1.10 x", [
            Contender("wtflow sqlite", wtflow(w1)),
            Contender("wtflow no db", lambda s: [*wtflow(w1)(s), "--db-url", ""]),
        ], [("wtflow sqlite", "wtflow no db", 1.10)]),
        Workload("W7", "500 `sleep 1`, max_parallel 500", "<= 1.5 s wall, no 'too many open files'", [
            Contender("wtflow", wtflow(w7)),
            Contender("reference", reference(sleeps, 500, folder)),
            Contender("floor", reference(sleeps, 500, folder, FLOOR)),
        ]),
        Workload("W8", "100 nodes x 10,000 lines, max_parallel 8, console on", "<= 1.5 x reference, every byte kept", [
            Contender("wtflow", wtflow(w8, "--output", "prefixed"), check=w8_check(10_000, 100)),
            Contender("reference", reference([printer] * 100, 8, folder)),
            Contender("database floor", reference([printer] * 100, 8, folder, HERE / "database_floor.py")),
            # No database at all: what is left of the gap is the runner's own start.
            Contender("wtflow, no database", lambda s: [*wtflow(w8, "--output", "prefixed")(s), "--db-url", ""],
                      check=w8_check(10_000, 100)),
        ], [("wtflow", "reference", 1.5), ("database floor", "reference", None),
            ("wtflow, no database", "reference", None)]),
        # Not one of the workloads: guards the JSON-logs path, where every output line is a
        # log event (it took 27 x W8's time before eb3278d).
        Workload("W8j", "W8 with --log-format json: each line a JSON log event", "<= 3 x W8 with console output", [
            Contender("wtflow json logs", wtflow(w8, "--log-format", "json"), check=w8_check(10_000, 100)),
            Contender("wtflow console", wtflow(w8, "--output", "prefixed")),
        ], [("wtflow json logs", "wtflow console", 3.0)]),
        Workload("W9", "1,000 cached nodes x 10 sources of 1 KiB, max_parallel 2: first, no-op, one change",
                 "no-op <= 1.5 x doit and < Task; one change <= 1.5 x doit", [], [
            ("wtflow no-op re-run", "doit no-op re-run", 1.5),
            ("wtflow no-op re-run", "Task no-op re-run", 1.0),
            ("wtflow one source changed", "doit one source changed", 1.5),
            ("wtflow one source changed", "Task one source changed", None),
            ("wtflow first run", "doit first run", None),
            ("wtflow first run", "Task first run", None),
            ("record floor", "doit no-op re-run", None),
            ("wtflow no-op re-run", "record floor", None),
        ], steps=lambda scratch, measure: caching.w9(scratch, PYTHON, measure)),
        Workload("W10", "a cache hit replaying 100 MiB of 100-byte lines", "about W3's time (<= 1.5 x reference); "
                 "RSS <= empty + 64 MiB", [], [
            ("wtflow cache hit (replays)", "reference", 1.5),
            ("wtflow cache hit (replays)", "wtflow miss (runs, fills the cache)", None),
        ], steps=lambda scratch, measure: caching.w10(scratch, PYTHON, measure)),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help="workload ids to run (default: all)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--compare", type=Path, metavar="RESULTS_JSON",
                        help="also print what changed since an earlier run's bench/results/*.json")  # fmt: skip
    args = parser.parse_args()
    compileall.compile_dir(HERE.parent / "wtflow", quiet=1)
    folder = Path(tempfile.mkdtemp(prefix="wtflow-bench-"))
    try:
        chosen = [w for w in workloads(folder, args.reps == 1) if not args.only or w.id in args.only]
        for rep in range(args.reps):
            for workload in chosen:
                if workload.steps is not None:
                    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
                    try:
                        measures = workload.steps(scratch, run)
                    except caching.BenchmarkFailed as exc:
                        print(f"rep {rep + 1} {workload.id} FAILED: {exc}", file=sys.stderr, flush=True)
                        return 1
                    for name, measure in measures.items():
                        record(rep, workload, name, measure)
                    free_space(scratch)
                    continue
                for contender in workload.contenders:
                    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
                    os.sync()  # what earlier runs wrote is on disk before this one starts: no writeback during it
                    measure = run(contender.argv(scratch), contender.cwd or folder, scratch)
                    if contender.check is not None and measure.ok:
                        problem = contender.check(scratch)
                        if problem:
                            measure.ok, measure.note = False, problem
                    record(rep, workload, contender.name, measure)
                    free_space(scratch)
        data = report(chosen)
        if args.compare is not None:
            print(compare(chosen, data, args.compare))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def record(rep: int, workload: Workload, name: str, measure: Measure) -> None:
    workload.results.setdefault(name, []).append(measure)
    status = "ok" if measure.ok else f"FAILED {measure.note}"
    print(f"rep {rep + 1} {workload.id:4} {name:18} {measure.seconds:8.3f}s "
          f"{measure.max_rss_mib:7.1f} MiB {status}", file=sys.stderr, flush=True)  # fmt: skip


def free_space(scratch: Path, large: int = 1 << 20) -> None:
    """Delete a finished run's large files only; the many small ones go when the suite ends.

    This machine's disk is ext4 without a journal, where creating a file first skips every
    inode of its block group deleted in the last half minute or so (``recently_deleted`` in
    the kernel; each skip looks up a block). Deleting a run's thousands of node files right
    before the next contender starts made that contender's creates cost 0.3-0.5 ms each
    instead of 0.015 ms: whoever ran next paid for whoever ran before.
    """
    # os.walk holds one directory's names at a time; rglob over W9's 44,000 files raised this
    # process's peak RSS by 26 MiB, which every later child reports as its own (see ``tail``).
    for directory, _, files in os.walk(scratch):
        for name in files:
            path = os.path.join(directory, name)  # noqa: PTH118 - strings: tens of thousands of files
            if os.stat(path, follow_symlinks=False).st_size >= large:  # noqa: PTH116
                os.unlink(path)  # noqa: PTH108


def report(chosen: list[Workload]) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE, check=False
    ).stdout.strip()
    lines = [f"commit {commit}, {os.cpu_count()} cores, Python {sys.version.split()[0]}", ""]
    lines.append("| id | workload | contender | median s | peak RSS MiB | ok |")
    lines.append("|---|---|---|---:|---:|---|")
    data: dict[str, Any] = {"commit": commit, "python": sys.version.split()[0], "workloads": {}}
    for workload in chosen:
        for name, measures in workload.results.items():
            median = statistics.median(m.seconds for m in measures)
            rss = max(m.max_rss_mib for m in measures)
            ok = all(m.ok for m in measures)
            lines.append(
                f"| {workload.id} | {workload.title} | {name} | {median:.3f} | {rss:.0f} | {'yes' if ok else 'NO'} |"
            )
            data["workloads"].setdefault(workload.id, {})[name] = {
                "median_s": median, "peak_rss_mib": rss, "ok": ok, "runs": [m.seconds for m in measures],
                "notes": [m.note for m in measures if m.note],
            }  # fmt: skip
    lines += ["", "| id | ratio | value | target | met |", "|---|---|---:|---|---|"]
    for workload in chosen:
        med = {name: statistics.median(m.seconds for m in ms) for name, ms in workload.results.items()}
        for numerator, denominator, limit in workload.ratios:
            if numerator in med and denominator in med:
                value = med[numerator] / med[denominator]
                if limit is None:
                    lines.append(f"| {workload.id} | {numerator} / {denominator} | {value:.2f} | (shown only) | |")
                    continue
                lines.append(f"| {workload.id} | {numerator} / {denominator} | {value:.2f} | <= {limit} | "
                             f"{'yes' if value <= limit else 'NO'} |")  # fmt: skip
        rss = {name: max(m.max_rss_mib for m in ms) for name, ms in workload.results.items()}
        if workload.id in {"W3a", "W10"} and "wtflow empty run" in rss:
            extra = rss["wtflow" if workload.id == "W3a" else "wtflow cache hit (replays)"] - rss["wtflow empty run"]
            lines.append(f"| {workload.id} | peak RSS over an empty run | {extra:.0f} MiB | <= 64 MiB | "
                         f"{'yes' if extra <= 64 else 'NO'} |")  # fmt: skip
        if workload.id == "W5" and "wtflow 10k" in med:
            lines.append(f"| W5 | 10k wall / RSS | {med['wtflow 10k']:.2f} s / {rss['wtflow 10k']:.0f} MiB | "
                         f"<= 2 s / 300 MiB | {'yes' if med['wtflow 10k'] <= 2 and rss['wtflow 10k'] <= 300 else 'NO'} |")  # fmt: skip
        if workload.id == "W7" and "wtflow" in med:
            lines.append(
                f"| W7 | wall | {med['wtflow']:.2f} s | <= 1.5 s | {'yes' if med['wtflow'] <= 1.5 else 'NO'} |"
            )
            if "floor" in med:  # what this machine allows at all, at this moment (bench/floor.py)
                lines.append(f"| W7 | wall above the floor ({med['floor']:.2f} s) | {med['wtflow'] - med['floor']:.2f} s "
                             "| (ours, not the issue's) | |")  # fmt: skip
    text = "\n".join(lines)
    print(text)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (results / f"{stamp}.json").write_text(json.dumps(data, indent=2))
    (results / "latest.md").write_text(text + "\n")
    return data


def median_of(data: dict[str, Any], workload: str, contender: str) -> float | None:
    found = data.get("workloads", {}).get(workload, {}).get(contender)
    return float(found["median_s"]) if found else None


def compare(chosen: list[Workload], now: dict[str, Any], before_path: Path) -> str:
    """The ratios and wtflow's medians of this run beside those of an earlier one."""
    before = json.loads(before_path.read_text())
    lines = [f"\nsince {before_path.name} (commit {before.get('commit', '?')})", "",
             "| id | what | before | now | change |", "|---|---|---:|---:|---:|"]  # fmt: skip

    def row(workload: str, what: str, old: float | None, new: float | None, unit: str) -> None:
        if old is not None and new is not None:
            lines.append(f"| {workload} | {what} | {old:.3f}{unit} | {new:.3f}{unit} | {new / old - 1:+.0%} |")

    for workload in chosen:
        for numerator, denominator, _ in workload.ratios:
            ratios = []
            for data in (before, now):
                top, bottom = median_of(data, workload.id, numerator), median_of(data, workload.id, denominator)
                ratios.append(top / bottom if top and bottom else None)
            row(workload.id, f"{numerator} / {denominator}", *ratios, "")
        for name in workload.results:
            if name.startswith("wtflow"):
                row(
                    workload.id,
                    f"{name}, median",
                    median_of(before, workload.id, name),
                    median_of(now, workload.id, name),
                    " s",
                )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
