"""The HTML report: `wtflow report` from the database and from a run's directory, the observer, limits and masking.

Runs are real (`wtflow run` through Click's runner, or an `Engine`); the report's content is
checked through the data it embeds (what the page's script draws), its self-containment
through its HTML. Drawing it is `tests/browser/`'s job.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli
from tests.integration.workflow_files import assert_clean_exit, clear_settings, write
from wtflow import Command, Config, DatabaseConfig, Engine, Node, RunConfig, StorageConfig, Workflow
from wtflow.artifacts import FileStore
from wtflow.executors.fake import FakeExecutor, Step
from wtflow.masking import Masker
from wtflow.observers.report import ReportWriter
from wtflow.report import LOG_TAIL, log_caps, read_tail

# fetch, then build and check at once, then ship; check fails but may (continue_on_error).
WORKFLOW = """
name: ci
nodes:
  - {name: fetch, command: "echo fetched"}
  - {name: build, command: "printf '\\\\033[32mbuilt\\\\033[0m\\\\n'", needs: fetch}
  - {name: check, command: "echo broken >&2; exit 3", needs: fetch, continue_on_error: true}
  - {name: ship, command: "echo shipped", needs: [build, check]}
"""


@pytest.fixture
def project(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clear_settings(monkeypatch)
    monkeypatch.delenv("WTFLOW_SECRET", raising=False)
    return workdir


def run(project: Path, workflow: str = WORKFLOW, *args: str, env: dict[str, str] | None = None) -> Path:
    """Run ``workflow`` with the default database; the run's directory."""
    write(project / "wtflow.yml", workflow)
    result = cli("run", "--output", "quiet", *args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return max((project / ".wtflow" / "artifacts").iterdir())


LOG_BLOCK = re.compile(r'<script type="text/plain" id="wtflow-log-(\d+)-(\w+)">(.*?)</script>', re.DOTALL)
UNESCAPED = {"\\\\": "\\", "\\u003c": "<", "\\r": "\r", "\\u0000": "\0"}


def embedded(report: Path) -> dict[str, Any]:
    """The data a report embeds for its script to draw, each log's text read from its own block as the script does."""
    html = report.read_bytes().decode()
    match = re.search(r'<script type="application/json" id="wtflow-data">(.*?)</script>', html, re.DOTALL)
    assert match is not None
    data: dict[str, Any] = json.loads(match[1])
    for node, stream, text in LOG_BLOCK.findall(html):
        unescaped = re.sub(r"\\(?:\\|u003c|r|u0000)", lambda escape: UNESCAPED[escape[0]], text)
        data["nodes"][int(node)]["logs"][stream]["text"] = unescaped
    return data


def by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["name"]: node for node in data["nodes"]}


def critical_names(data: dict[str, Any]) -> list[str]:
    return [data["nodes"][step[0]]["name"] for step in data["critical"]["steps"]]


def engine_run(workflow: Workflow, tmp_path: Path, *observers: Any, **kwargs: Any) -> Engine:
    config = Config(
        db=DatabaseConfig(None), storage=StorageConfig(tmp_path / "artifacts"), run=RunConfig(kill_grace=2.0)
    )
    engine = Engine(workflow, config, observers=list(observers), **kwargs)
    asyncio.run(engine.run_async())
    return engine


# -- wtflow report ------------------------------------------------------------------------


def test_report_of_the_newest_run_goes_into_its_directory(project: Path) -> None:
    run_dir = run(project)
    result = cli("report")
    assert_clean_exit(result, 0)
    assert result.stdout == f"{run_dir / 'report.html'}\n"
    data = embedded(run_dir / "report.html")
    assert (data["run"]["id"], data["run"]["workflow"], data["run"]["status"]) == (run_dir.name, "ci", "succeeded")


def test_report_names_a_run_as_runs_show_does(project: Path) -> None:
    first = run(project)
    run(project)
    result = cli("report", "latest~1", "-o", "older.html")
    assert_clean_exit(result, 0)
    assert embedded(project / "older.html")["run"]["id"] == first.name
    suffix = first.name.rpartition("-")[2]
    assert_clean_exit(cli("report", suffix, "-o", "by-suffix.html"), 0)
    assert embedded(project / "by-suffix.html")["run"]["id"] == first.name


def test_report_from_a_run_directory_needs_no_database(project: Path) -> None:
    run_dir = run(project)
    result = cli("report", str(run_dir), "--db-url", "")
    assert_clean_exit(result, 0)
    nodes = by_name(embedded(run_dir / "report.html"))
    assert {name: node["status"] for name, node in nodes.items() if not node.get("hidden")} == {
        "fetch": "succeeded",
        "build": "succeeded",
        "check": "failed",
        "ship": "succeeded",
    }
    assert nodes["check"]["logs"]["stderr"]["text"] == "broken\n"


def test_report_from_a_copied_run_directory_reads_and_links_its_own_files(project: Path, tmp_path: Path) -> None:
    """A CI job's artifacts, downloaded: run.json names files on the runner, which is gone."""
    run_dir = run(project)
    copy = tmp_path / "downloaded" / run_dir.name
    shutil.copytree(run_dir, copy)
    shutil.rmtree(run_dir)
    assert_clean_exit(cli("report", str(copy), "--db-url", ""), 0)
    fetch = by_name(embedded(copy / "report.html"))["fetch"]
    assert fetch["logs"]["stdout"]["text"] == "fetched\n"
    assert {name: href for name, href, *_ in fetch["artifacts"]}["stdout"] == "fetch/stdout.log"


def test_output_option_writes_there_with_links_relative_to_it(project: Path) -> None:
    run_dir = run(project)
    result = cli("report", "-o", "out/ci.html")
    assert_clean_exit(result, 0)
    assert result.stdout == "out/ci.html\n"
    fetch = by_name(embedded(project / "out" / "ci.html"))["fetch"]
    href = {name: href for name, href, *_ in fetch["artifacts"]}["stdout"]
    assert href == f"../.wtflow/artifacts/{run_dir.name}/fetch/stdout.log"
    assert (project / "out" / href).resolve() == run_dir / "fetch" / "stdout.log"


def test_an_unknown_run_exits_2(project: Path) -> None:
    run(project)
    result = cli("report", "nope")
    assert_clean_exit(result, 2)
    assert result.stdout == ""
    assert result.stderr == "Error: no run 'nope'; `wtflow runs list` shows the runs\n"


def test_a_directory_that_holds_no_run_exits_2(project: Path) -> None:
    (project / "empty").mkdir()
    result = cli("report", "empty")
    assert_clean_exit(result, 2)
    assert result.stderr == "Error: empty is not a run's directory: it holds no run.json nor events.jsonl\n"


def test_a_run_id_without_a_database_exits_2(project: Path) -> None:
    result = cli("report", "latest", "--db-url", "")
    assert_clean_exit(result, 2)
    assert "no database configured" in result.stderr


def test_the_report_loads_nothing_from_the_network(project: Path) -> None:
    run_dir = run(project)
    assert_clean_exit(cli("report"), 0)
    html = (run_dir / "report.html").read_text()
    assert not re.search(r"<script[^>]*\bsrc=", html)
    assert not re.search(r"<link[^>]*\bhref=[\"']?(https?:)?//", html)
    assert not re.search(r"\b(src|href)=[\"']?(https?:)?//", html)
    assert "default-src 'none'" in html  # and the browser holds the page to it


def test_each_attempt_of_a_retried_node_is_shown(project: Path) -> None:
    marker = project / "second"
    flaky = f"if [ -e {marker} ]; then echo ok; else touch {marker}; echo no >&2; exit 4; fi"
    run_dir = run(project, f"name: ci\nroot: {{name: flaky, command: '{flaky}', retries: {{max: 1, delay: 0.1}}}}\n")
    assert_clean_exit(cli("report"), 0)
    flaky_node = by_name(embedded(run_dir / "report.html"))["flaky"]
    assert [(attempt[2], attempt[3]) for attempt in flaky_node["tries"]] == [("failed", 4), ("succeeded", 0)]
    first, second = flaky_node["tries"]
    assert first[1] <= second[0] - 0.1 + 1e-3  # the first ended before the delay before the second
    labels = [artifact[0] for artifact in flaky_node["artifacts"]]
    assert "stderr (attempt 1)" in labels


def test_logs_are_cut_to_their_last_64_kib_with_a_link_to_the_whole_file(project: Path) -> None:
    run_dir = run(project, "name: ci\nroot: {name: noisy, command: 'seq 1 40000'}\n")
    assert_clean_exit(cli("report"), 0)
    noisy = by_name(embedded(run_dir / "report.html"))["noisy"]
    log = noisy["logs"]["stdout"]
    whole = (run_dir / "noisy" / "stdout.log").stat().st_size
    assert len(log["text"].encode()) <= LOG_TAIL
    assert log["text"].endswith("\n39999\n40000\n")
    assert log["text"].startswith(str(int(log["text"].split("\n", 1)[0])))  # a whole first line
    assert (log["size"], log["cut"]) == (whole, whole - len(log["text"].encode()))
    assert ["stdout", "noisy/stdout.log", whole, False] in noisy["artifacts"]


def test_secrets_are_masked_in_the_report_even_where_the_logs_hold_them(project: Path) -> None:
    workflow = "name: ci\nsecrets: [TOKEN]\nroot: {name: leak, command: 'echo token=$TOKEN; exit 1'}\n"
    run_dir = run(project, workflow, "--no-mask-artifacts", env={"TOKEN": "hunter2-value"})
    assert "hunter2-value" in (run_dir / "leak" / "stdout.log").read_text()
    assert_clean_exit(cli("report", "--secret", "TOKEN", env={"TOKEN": "hunter2-value"}), 0)
    html = (run_dir / "report.html").read_text()
    assert "hunter2-value" not in html
    assert by_name(embedded(run_dir / "report.html"))["leak"]["logs"]["stdout"]["text"] == "token=***\n"


# -- the observer -------------------------------------------------------------------------


def sh(name: str, command: str, **kwargs: Any) -> Node:
    return Node(name, executable=Command(command), **kwargs)


# a, then b (slow) and c (quick) at once, then d: the critical path is a, b, d. A graph-form file's shape.
DIAMOND = Workflow(
    "diamond",
    Node(
        "all",
        parallel=True,
        children=[
            sh("a", "echo a"),
            sh("b", "sleep 0.3", needs=["a"]),
            sh("c", "echo c", needs=["a"]),
            sh("d", "echo d", needs=["b", "c"]),
        ],
    ),
    implicit_root=True,  # as a graph-form file's
)


def test_the_observer_writes_the_report_when_the_run_ends(tmp_path: Path) -> None:
    writer = ReportWriter()
    engine = engine_run(DIAMOND, tmp_path, writer)
    assert engine.result is not None
    assert writer.written == engine.result.run_dir / "report.html"
    data = embedded(writer.written)
    assert data["run"]["graph"] == "workflow"
    assert critical_names(data) == ["a", "b", "d"]
    assert not data["critical"]["by_time"]


def test_the_observer_embeds_what_each_node_waited_for(tmp_path: Path) -> None:
    writer = ReportWriter()
    engine_run(DIAMOND, tmp_path, writer)
    assert writer.written is not None
    data = embedded(writer.written)
    nodes = data["nodes"]
    waits = {node["name"]: sorted(nodes[index]["name"] for index in node["subtrees"]) for node in nodes}
    assert waits["d"] == ["b", "c"]
    assert sorted((nodes[a]["name"], nodes[b]["name"]) for a, b, *_ in data["edges"]) == [
        ("a", "b"),
        ("a", "c"),
        ("b", "d"),
        ("c", "d"),
    ]


def test_a_report_made_again_reads_the_dependencies_the_first_embedded(tmp_path: Path) -> None:
    writer = ReportWriter()
    engine_run(DIAMOND, tmp_path, writer)
    assert writer.written is not None
    again = tmp_path / "again.html"
    assert_clean_exit(cli("report", str(writer.written.parent), "-o", str(again), "--db-url", ""), 0)
    data = embedded(again)
    assert data["run"]["graph"] == "recorded"
    assert critical_names(data) == ["a", "b", "d"]
    assert not data["critical"]["by_time"]


def test_without_recorded_dependencies_the_critical_path_is_found_by_time(tmp_path: Path) -> None:
    engine = engine_run(DIAMOND, tmp_path)
    assert engine.result is not None
    out = tmp_path / "report.html"
    assert_clean_exit(cli("report", str(engine.result.run_dir), "-o", str(out), "--db-url", ""), 0)
    data = embedded(out)
    assert (data["run"]["graph"], data["critical"]["by_time"]) == ("tree", True)
    assert critical_names(data)[-2:] == ["b", "d"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_observer_records_the_commit_checked_out_where_the_workflow_is(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "first"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    writer = ReportWriter()
    engine_run(Workflow("w", sh("a", "true"), base_dir=repo), tmp_path, writer)
    assert writer.written is not None
    assert embedded(writer.written)["run"]["commit"] == head


def test_outside_a_git_checkout_no_commit_is_recorded(tmp_path: Path) -> None:
    writer = ReportWriter()
    engine_run(Workflow("w", sh("a", "true"), base_dir=tmp_path), tmp_path, writer)
    assert writer.written is not None
    assert embedded(writer.written)["run"]["commit"] is None


def test_the_observer_masks_with_the_runs_masker(tmp_path: Path) -> None:
    """What a node announces with ::add-mask:: reaches the report through the run's masker."""
    masker = Masker()
    writer = ReportWriter(masker=masker)
    workflow = Workflow("w", sh("a", "echo ::add-mask::pa55word-x; echo it is pa55word-x; exit 2"))
    engine_run(workflow, tmp_path, writer, masker=masker)
    assert writer.written is not None
    assert "pa55word-x" not in writer.written.read_text()


def test_a_report_that_cannot_be_written_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "report.html"
    writer = ReportWriter(target)
    engine = engine_run(Workflow("w", sh("a", "true")), tmp_path, writer)
    assert engine.result is not None
    assert engine.result.exit_code == 0
    assert engine.warnings == [f"the report {target} could not be written: No such file or directory"]
    assert writer.written is None


# -- size ---------------------------------------------------------------------------------


def wide(count: int) -> Workflow:
    """``count`` nodes in chains of ten: node i needs node i - 10; a failure does not stop the run."""
    nodes = [
        Node(f"n{i}", executable=Command("true"), needs=[f"n{i - 10}"] if i >= 10 else [], continue_on_error=True)
        for i in range(count)
    ]
    return Workflow("wide", Node("all", parallel=True, children=nodes), implicit_root=True)


def fake_run(workflow: Workflow, tmp_path: Path, steps: dict[str, Step]) -> Path:
    """Run ``workflow`` with scripted nodes (output in real files), the report written at its end."""
    writer = ReportWriter()
    config = Config(db=DatabaseConfig(None), storage=StorageConfig(tmp_path), run=RunConfig(max_parallel=8))
    store = FileStore(tmp_path)
    engine = Engine(workflow, config, observers=[writer], executor=FakeExecutor(steps), store=store)
    asyncio.run(engine.run_async())
    assert writer.written is not None
    return writer.written


def test_the_report_of_a_2000_node_run_is_under_10_mib(tmp_path: Path) -> None:
    steps = {f"n{i}": Step(stdout=f"building part {i}\n".encode(), exit_code=int(i == 1234)) for i in range(2000)}
    report = fake_run(wide(2000), tmp_path, steps)
    assert report.stat().st_size < 10 << 20
    statuses = [node["status"] for node in embedded(report)["nodes"] if not node.get("hidden")]
    assert (len(statuses), statuses.count("failed")) == (2000, 1)


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"\x1b[32mok\x1b[0m \x1b[1mtest_something\x1b[0m passed\n", id="coloured"),
        # Near six times as large as the page escapes it.
        pytest.param(b"<" * 15 + b"\n", id="escaped"),
    ],
)
def test_the_logs_of_many_nodes_share_a_budget_that_keeps_the_page_under_10_mib(tmp_path: Path, line: bytes) -> None:
    """2,000 nodes with 20 KiB of output each: 40 MiB of logs."""
    steps = {f"n{i}": Step(stdout=line * (20 * 1024 // len(line))) for i in range(2000)}
    report = fake_run(wide(2000), tmp_path, steps)
    assert report.stat().st_size < 10 << 20
    logs = [node["logs"]["stdout"] for node in embedded(report)["nodes"] if "stdout" in node.get("logs", {})]
    assert len(logs) == 2000
    assert all(log["cut"] and log["text"].endswith(line.decode()) for log in logs)


def test_log_caps_give_failed_nodes_their_share_first() -> None:
    """Budget 100: the failed node's 60 first; the other 40 shared, equal but for a stream needing less."""
    assert log_caps([(60, True), (100, False), (10, False), (100, False)], tail=80, budget=100) == [60, 15, 10, 15]


def test_log_caps_keep_each_stream_to_its_tail_within_the_budget() -> None:
    assert log_caps([(500, False), (20, False)], tail=64, budget=1000) == [64, 20]


def test_a_secret_across_the_cut_is_masked_not_shown_in_part(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    log.write_bytes(b"x" * 100 + b"SECRETVALUE12" + b"y" * 50)
    text, cut = read_tail(log, 60, Masker(["SECRETVALUE12"]))
    assert "VALUE12" not in text
    assert text == "y" * 50
    assert cut == 113
