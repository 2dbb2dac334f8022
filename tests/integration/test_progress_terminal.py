"""The live progress region in a real terminal (tmux), and its absence everywhere else.

The runs are ``tests/integration/progress_run.py``, which composes the observers as ``wtflow
run`` will once it has ``--progress``. In tmux its nodes wait for a marker file, so the test
reads the region while they run, then lets them print at once and reads the whole scrollback.
Without tmux these tests skip, unless ``WTFLOW_REQUIRE_TMUX=1`` (then they fail).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import missing_backend
from wtflow import Command, Node, Workflow
from wtflow.events import NodeFinished, NodeStarted, NodeStatus, RunFinished, RunStarted, RunStatus
from wtflow.observers.progress import ProgressDisplay, wanted

SCRIPT = Path(__file__).with_name("progress_run.py")
LINES = 200  # each of alpha, beta and gamma prints this many numbered lines at once
EXTRA = 10  # nodes besides the five named ones: 14 run at once, more than the region names
WIDTH, HEIGHT = 120, 40


class Terminal:
    """A tmux server of the test's own, with one 120x40 pane that stays readable after its command exits."""

    def __init__(self, directory: Path) -> None:
        self.socket = directory / "tmux.sock"
        self.config = directory / "tmux.conf"
        self.config.write_text("set -g remain-on-exit on\nset -g history-limit 50000\n")

    def tmux(self, *args: str) -> str:
        command = ["tmux", "-S", str(self.socket), "-f", str(self.config), *args]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    def start(self, command: list[str]) -> None:
        """Run ``command`` in the pane, then print how it exited (tmux may not reap it: its own status is unsure)."""
        shell = f'{shlex.join(command)}; echo "[exited $?]"'
        self.tmux("new-session", "-d", "-x", str(WIDTH), "-y", str(HEIGHT), "-s", "run", shell)

    def screen(self) -> str:
        """What the pane shows now."""
        return self.tmux("capture-pane", "-p", "-t", "run")

    def scrollback(self) -> list[str]:
        """Every line the pane ever showed and kept, wrapped lines joined."""
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", "run").splitlines()

    def exit_status(self) -> int | None:
        """The command's exit status once the pane shows it (and so all the command printed), else ``None``."""
        said = re.search(r"^\[exited (\d+)\]$", self.screen(), re.MULTILINE)
        return int(said.group(1)) if said else None

    def wait_until(self, condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
        """Poll until ``condition`` holds; fail after ``seconds`` (a hang), showing the screen."""
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"{what} never happened; the screen:\n{self.screen()}")
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], check=False, capture_output=True)


@dataclass
class TerminalRun:
    """What a person saw of one run: the screen while nodes ran, the scrollback once it ended."""

    output: str
    running_screen: str
    scrollback: list[str]
    exit_status: int | None


def _node_lines(output: str) -> list[str]:
    """Every line alpha, beta and gamma print, as the console shows it in ``output`` mode."""
    return [
        f"[{node}] {node} line {number:03d}" if output == "prefixed" else f"{node} line {number:03d}"
        for node in ("alpha", "beta", "gamma")
        for number in range(1, LINES + 1)
    ]


@pytest.fixture(scope="module", params=["prefixed", "grouped"])
def terminal_run(request: pytest.FixtureRequest) -> Iterator[TerminalRun]:
    """The demo run in tmux: its screen once 14 nodes run, then its scrollback once it ended."""
    if shutil.which("tmux") is None:
        missing_backend("tmux is not installed (apt-get install tmux)", "WTFLOW_REQUIRE_TMUX")
    directory = Path(tempfile.mkdtemp(prefix="wtflow-tmux-"))  # short: a socket's path has a length limit
    terminal = Terminal(directory)
    try:
        command = [sys.executable, str(SCRIPT), str(directory), "--output", request.param]
        terminal.start([*command, "--lines", str(LINES), "--extra", str(EXTRA), "--max-parallel", "20"])
        seen: list[str] = []

        def counted_all() -> bool:  # the whole region drawn, from the running nodes to the counts
            seen[:] = [terminal.screen()]
            region = rf"^  \+ \d+ more running\n━.*\n.* {4 + EXTRA} running  1 waiting$"
            return bool(re.search(region, seen[0], re.MULTILINE))

        terminal.wait_until(lambda: counted_all() or terminal.exit_status() is not None, "the region of 14 running")
        assert terminal.exit_status() is None, f"the run ended before its nodes could:\n{terminal.screen()}"
        running_screen = seen[0]
        (directory / "go").touch()
        terminal.wait_until(lambda: terminal.exit_status() is not None, "the run's end")
        yield TerminalRun(request.param, running_screen, terminal.scrollback(), terminal.exit_status())
    finally:
        (directory / "go").touch()  # nodes still waiting (a failed test) end by themselves
        terminal.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_region_names_the_running_nodes_and_counts_the_rest(terminal_run: TerminalRun) -> None:
    screen = [line.rstrip() for line in terminal_run.running_screen.splitlines() if line.strip()]
    region = screen[-11:]  # eight running nodes, "+ N more", the bar, the counts
    names = ["alpha", "beta", "gamma", "delta", "extra-00", "extra-01", "extra-02", "extra-03"]
    assert [line.split()[:2] for line in region[:8]] == [["▸", name] for name in names], region
    assert all(re.fullmatch(r"▸ \S+ +\S+s", line) for line in region[:8]), region  # name, time running
    assert region[8] == f"  + {4 + EXTRA - 8} more running"
    assert re.fullmatch(rf"━{{40}}  0/{5 + EXTRA}  \S+s", region[9]), region[9]
    assert region[10] == f"0 succeeded  0 failed  0 cached  0 skipped  {4 + EXTRA} running  1 waiting"


def test_every_output_line_is_shown_once_and_whole(terminal_run: TerminalRun) -> None:
    printed = [line.rstrip() for line in terminal_run.scrollback if re.search(r"(alpha|beta|gamma) line", line)]
    assert sorted(printed) == sorted(_node_lines(terminal_run.output))  # a split or joined line would differ
    for number in range(EXTRA):
        name = f"extra-{number:02d}"
        line = f"[{name}] {name} line" if terminal_run.output == "prefixed" else f"{name} line"
        assert [shown.rstrip() for shown in terminal_run.scrollback].count(line) == 1


def test_log_lines_are_shown_whole_above_the_region(terminal_run: TerminalRun) -> None:
    log_lines = [line.rstrip() for line in terminal_run.scrollback if re.match(r"\d\d:\d\d:\d\d \[", line)]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d \[(info|error) *\] \S.*", line) for line in log_lines), log_lines
    for node in ("alpha", "beta", "gamma", "delta", "epsilon"):
        assert [line for line in log_lines if line.endswith(f"] {node} started")], node
        assert len([line for line in log_lines if f"] {node} started" in line]) == 1, node
    assert len([line for line in log_lines if re.search(r"\] delta failed in \d+\.\d\ds, exit 3$", line)]) == 1


def test_summary_table_replaces_the_region_when_the_run_ends(terminal_run: TerminalRun) -> None:
    assert terminal_run.exit_status == 1  # delta failed
    shown = [line.rstrip() for line in terminal_run.scrollback if line.strip()]
    assert not [line for line in shown if "waiting" in line or "more running" in line or "━" in line]
    header = shown.index("NODE      STATUS     DURATION  EXIT")
    rows = shown[header + 1 : header + 1 + 5 + EXTRA]
    assert re.fullmatch(r"delta +failed +\d+\.\d\ds +3", rows[0]), rows[0]  # failed nodes first
    assert [row.split()[:2] for row in rows[1:5]] == [
        ["alpha", "succeeded"],
        ["beta", "succeeded"],
        ["gamma", "succeeded"],
        ["epsilon", "succeeded"],
    ]
    critical = shown[header + 1 + 5 + EXTRA]
    assert re.fullmatch(r"critical path: alpha \(\d+\.\d\ds\) → epsilon \(\d+\.\d\ds\)  = \d+\.\d\ds", critical)


def _without_times(stderr: str) -> list[object]:
    """The log lines less what differs from run to run (times, the run's id and directory)."""
    volatile = {"timestamp", "duration", "run_id", "run_dir"}
    lines: list[object] = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            lines.append(line)
        else:
            lines.append({key: value for key, value in record.items() if key not in volatile})
    return lines


def test_without_a_terminal_the_output_is_that_of_no_progress(tmp_path: Path) -> None:
    """stderr a pipe: the default (auto) prints exactly what ``--no-progress`` prints."""
    results = []
    for progress in ("auto", "off"):
        directory = tmp_path / progress
        directory.mkdir()
        (directory / "go").touch()
        command = [sys.executable, str(SCRIPT), str(directory), "--progress", progress, "--lines", "5"]
        result = subprocess.run([*command, "--max-parallel", "1"], check=False, capture_output=True, text=True)
        assert result.returncode == 1, result.stderr
        results.append(result)
    automatic, off = results
    assert automatic.stdout == off.stdout
    assert _without_times(automatic.stderr) == _without_times(off.stderr)
    assert "[alpha] alpha line 005\n" in automatic.stdout
    assert "\x1b" not in automatic.stdout + automatic.stderr


def test_progress_is_wanted_on_a_terminal_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    assert wanted(None, _Tty())
    assert not wanted(None, io.StringIO())
    assert wanted(True, io.StringIO())
    assert not wanted(False, _Tty())


def test_progress_is_not_wanted_on_a_dumb_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    assert not wanted(None, _Tty())


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_importing_the_progress_module_imports_no_rich() -> None:
    """rich's import costs more than a short run's start: only a region shown imports it."""
    imports = "import sys, wtflow.observers.progress, wtflow.observers.console"
    code = f"{imports}; print([m for m in sys.modules if 'rich' in m])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "[]\n"


def test_the_command_line_imports_no_rich() -> None:
    pytest.importorskip("rich")
    code = "import sys, wtflow.cli, wtflow.log; print([m for m in sys.modules if 'rich' in m])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "[]\n"


def test_summary_lists_failed_nodes_first_then_the_critical_path() -> None:
    stream = _Tty()
    display = ProgressDisplay(stream=stream, force_terminal=True, critical_path=["b", "c"])
    workflow = Workflow("wf", Node("all", children=[Node(name, Command("true")) for name in "abc"], parallel=True))
    start = datetime(2026, 1, 1, tzinfo=UTC)

    async def run() -> None:
        await display.aopen()
        display.notify(RunStarted("r", workflow, Path(), start, "host", 1))
        for name, status, code, seconds in (("a", NodeStatus.SUCCEEDED, 0, 1), ("b", NodeStatus.FAILED, 2, 2)):
            display.notify(NodeStarted("r", name, name, start))
            display.notify(NodeFinished("r", name, name, status, code, start, start + timedelta(seconds=seconds)))
        display.notify(NodeFinished("r", "c", "c", NodeStatus.CACHED, None, None, start))
        display.notify(RunFinished("r", "wf", RunStatus.FAILED, 1, start, start))
        await display.aclose()

    asyncio.run(run())
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", stream.getvalue())
    assert plain.splitlines()[-5:] == [
        "NODE  STATUS     DURATION  EXIT",
        "b     failed        2.00s     2",
        "a     succeeded     1.00s     0",
        "c     cached            -     -",
        "critical path: b (2.00s) → c (0.00s)  = 2.00s",
    ]


def test_output_reaches_the_terminal_in_whole_lines_with_its_bytes_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the console printers write to ``sys.stdout.buffer`` while the region is shown."""
    raw = io.BytesIO()
    terminal = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    monkeypatch.setattr(sys, "stdout", terminal)
    display = ProgressDisplay(stream=terminal, force_terminal=True)
    workflow = Workflow("wf", Node("a", Command("true")))

    async def run() -> None:
        await display.aopen()
        assert sys.stdout is not terminal  # stood in for
        display.notify(RunStarted("r", workflow, Path(), datetime(2026, 1, 1, tzinfo=UTC), "host", 1))
        sys.stdout.buffer.write(b"not utf-8: \xff\xfe, ")
        sys.stdout.buffer.write(b"one line\nthen a last line without its newline")
        print("never seen before its newline", end="")
        await display.aclose()
        assert sys.stdout is terminal  # put back

    asyncio.run(run())
    written = raw.getvalue()
    assert b"\x1b[2Knot utf-8: \xff\xfe, one line\n" in written  # after the region was erased, in one piece
    assert written.count(b"then a last line") == 1
    assert b"then a last line without its newlinenever seen before its newline" in written


def test_wtflow_run_in_a_terminal_shows_the_region_then_the_summary_and_critical_path() -> None:
    """The command itself: on a terminal ``wtflow run`` shows the region without being asked."""
    if shutil.which("tmux") is None:
        missing_backend("tmux is not installed (apt-get install tmux)", "WTFLOW_REQUIRE_TMUX")
    directory = Path(tempfile.mkdtemp(prefix="wtflow-cli-"))
    (directory / "wtflow.yml").write_text(
        "name: shown\n"
        "nodes:\n"
        "  - {name: first, command: echo first}\n"
        "  - {name: waiter, needs: first, command: 'while [ ! -e go ]; do sleep 0.05; done; echo waited'}\n"
    )
    terminal = Terminal(directory)
    try:
        wtflow = [sys.executable, "-m", "wtflow", "run", str(directory / "wtflow.yml"), "--db-url", ""]
        terminal.start(["sh", "-c", f"cd {shlex.quote(str(directory))} && {shlex.join(wtflow)}"])
        terminal.wait_until(
            lambda: "1 succeeded  0 failed  0 cached  0 skipped  1 running  0 waiting" in terminal.screen(),
            "the region counting the waiting node as running",
        )
        assert re.search(r"^▸ waiter +\S+s$", terminal.screen(), re.MULTILINE), terminal.screen()
        (directory / "go").touch()
        terminal.wait_until(lambda: terminal.exit_status() is not None, "the run's end")
        shown = [line.rstrip() for line in terminal.scrollback()]
        assert terminal.exit_status() == 0
        assert not [line for line in shown if "running" in line and "waiting" in line]
        assert [line for line in shown if re.fullmatch(r"critical path: first \(.+\) → waiter \(.+\)  = .+", line)]
    finally:
        (directory / "go").touch()
        terminal.close()
        shutil.rmtree(directory, ignore_errors=True)
