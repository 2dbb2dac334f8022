"""The report in Chromium: the timeline's bars, the critical path, logs on a click, the search, failures, no network.

The release workflow below runs for real, twice (its ``assets`` node is cached the second
time); the report of the second run, written by the report observer, is what the tests open.
``build`` waits until every side branch is recorded finished (in ``events.jsonl``), so the
critical path is certainly checkout, build, package, ship.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import Opened
from tests.integration.workflow_files import write
from wtflow import Command, Config, DatabaseConfig, Engine, Node, RunConfig, StorageConfig, Workflow
from wtflow.artifacts import FileStore
from wtflow.executors.fake import FakeExecutor, Step
from wtflow.loader import load_file
from wtflow.masking import Masker
from wtflow.observers.report import ReportWriter

# `sh wait-for.sh NODE...`: returns once each node's end is in the run's events.jsonl; exits 99 after 30 s.
WAIT_FOR = """\
for node in "$@"; do
  i=0
  until grep -q "\\"event\\":\\"node_finished\\",\\"run_id\\":\\"[^\\"]*\\",\\"node\\":\\"$node\\"" \\
      "$WTFLOW_RUN_DIR/events.jsonl" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 1500 ]; then echo "gave up waiting for $node" >&2; exit 99; fi
    sleep 0.02
  done
done
"""

# The sleeps only make the durations look like a real run's; build's waiting is what orders the run.
RELEASE = r"""
name: release
max_parallel: 4
nodes:
  - {name: checkout, command: "echo cloned the repository; sleep 0.2; echo HEAD is at 4f2a9c1"}
  - name: lint
    command: >-
      sleep 0.3; printf '\033[33mwarning\033[0m: line too long (131 > 120)\n\033[32mall checks passed\033[0m\n'
    needs: checkout
  - {name: docs, command: "echo building the docs; sleep 0.3; echo 42 pages written", needs: lint}
  - name: unit-tests
    command: >-
      echo 'test_add ... ok'; sleep 0.4; echo 'test_merge ... FAILED';
      echo 'AssertionError: expected 3, got 4' >&2; exit 1
    needs: checkout
    continue_on_error: true
  - name: flaky-download
    command: >-
      if [ -e "$WTFLOW_RUN_DIR/tried" ]; then sleep 0.2; echo downloaded;
      else touch "$WTFLOW_RUN_DIR/tried"; sleep 0.1; echo 'connection reset' >&2; exit 7; fi
    needs: checkout
    retries: {max: 1, delay: 0.1}
  - {name: assets, command: "sleep 0.3; echo compiled assets", needs: checkout, sources: [assets.txt]}
  - name: build
    command: "sh wait-for.sh lint docs unit-tests flaky-download assets; sleep 0.2; echo built dist/release-1.0.tar.gz"
    needs: checkout
  - {name: package, command: "sleep 0.2; echo packaged release-1.0", needs: build}
  - {name: ship, command: "sleep 0.1; echo shipped to the registry", needs: package}
"""
CRITICAL = ["checkout", "build", "package", "ship"]
ATTEMPTS = {
    "checkout": 1,
    "lint": 1,
    "docs": 1,
    "unit-tests": 1,
    "flaky-download": 2,
    "assets": 1,
    "build": 1,
    "package": 1,
    "ship": 1,
}


def in_a_process(maker: str, root: Path) -> Path:
    """The report ``maker`` (a function of this module) makes in ``root``, made by a fresh Python.

    Playwright's sync API runs its event loop in this process's thread, where no run's
    ``asyncio.run`` may start.
    """
    code = f"import sys; from tests.browser.test_report_browser import {maker}; print({maker}(sys.argv[1]))"
    repo = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code, str(root)], cwd=repo, capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def _run(workflow: Workflow, root: Path) -> Path:
    masker = Masker()
    writer = ReportWriter(masker=masker)
    config = Config(
        db=DatabaseConfig(None),
        storage=StorageConfig(root / "artifacts", root / "cache"),
        run=RunConfig(kill_grace=2.0),
    )
    engine = Engine(workflow, config, observers=[writer], masker=masker)
    asyncio.run(engine.run_async())
    assert writer.written is not None, engine.warnings
    return writer.written


def release_report(root: str) -> Path:
    """Run the release workflow twice in ``root``: the report of the second run."""
    where = Path(root)
    write(where / "wait-for.sh", WAIT_FOR)
    write(where / "assets.txt", "logo.svg\n")
    workflow = load_file(write(where / "wtflow.yml", RELEASE))[0]
    _run(workflow, where)
    return _run(workflow, where)


def wide_report(root: str) -> Path:
    """2,000 scripted nodes in chains of ten (a few fail), their output in files: the run's report."""
    nodes = [
        Node(f"n{i}", executable=Command("true"), needs=[f"n{i - 10}"] if i >= 10 else [], continue_on_error=True)
        for i in range(2000)
    ]
    workflow = Workflow("wide", Node("all", parallel=True, children=nodes), implicit_root=True)
    steps = {f"n{i}": Step(stdout=f"part {i} built\n".encode(), exit_code=int(i % 500 == 7)) for i in range(2000)}
    writer = ReportWriter()
    config = Config(db=DatabaseConfig(None), storage=StorageConfig(Path(root)), run=RunConfig(max_parallel=8))
    store = FileStore(Path(root))
    engine = Engine(workflow, config, observers=[writer], executor=FakeExecutor(steps), store=store)
    asyncio.run(engine.run_async())
    assert writer.written is not None
    return writer.written


# What the HTML parser would end a block at or change (the page holds each log in a block of its
# own), the escapes the page uses for them written literally, bytes that are not UTF-8, a colour.
ODD_OUTPUT = b"</script><!--<script>\r\nback\\slash \\u003c \\r \\\\\nnul\0 \xff end\n10%\r100%\n\x1b[31mred\x1b[0m\n"


def odd_report(root: str) -> Path:
    """One scripted node printing :data:`ODD_OUTPUT`: the run's report."""
    writer = ReportWriter()
    config = Config(db=DatabaseConfig(None), storage=StorageConfig(Path(root)))
    engine = Engine(
        Workflow("odd", Node("odd", executable=Command("true"))),
        config,
        observers=[writer],
        executor=FakeExecutor({"odd": Step(stdout=ODD_OUTPUT)}),
        store=FileStore(Path(root)),
    )
    asyncio.run(engine.run_async())
    assert writer.written is not None
    return writer.written


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the release workflow's second run."""
    return in_a_process("release_report", tmp_path_factory.mktemp("release"))


@pytest.fixture
def page_of(open_report: Callable[..., Opened], release: Path) -> Iterator[Opened]:
    """The release report, open; no error logged by the time the test ends."""
    opened = open_report(release)
    yield opened
    assert opened.errors == []


def bar_names(opened: Opened, selector: str = "#timeline rect.bar") -> list[str]:
    names: list[str] = opened.page.eval_on_selector_all(selector, "bars => bars.map(b => b.dataset.name)")
    return names


def test_the_timeline_has_a_bar_for_each_attempt_of_each_node(page_of: Opened) -> None:
    names = bar_names(page_of)
    assert {name: names.count(name) for name in names} == ATTEMPTS


def test_a_retried_attempt_is_its_own_bar_coloured_by_how_it_ended(page_of: Opened) -> None:
    classes = page_of.page.eval_on_selector_all(
        '#timeline rect.bar[data-name="flaky-download"]', "bars => bars.map(b => b.getAttribute('class'))"
    )
    assert ["s-failed" in c for c in classes] == [True, False]
    assert ["s-succeeded" in c for c in classes] == [False, True]


def test_the_critical_path_is_marked_in_the_timeline(page_of: Opened) -> None:
    assert bar_names(page_of, "#timeline rect.bar.critical") == CRITICAL


def test_the_critical_path_is_marked_in_the_graph(page_of: Opened) -> None:
    names = page_of.page.eval_on_selector_all("#graph g.gnode.critical", "nodes => nodes.map(n => n.dataset.name)")
    assert sorted(names) == sorted(CRITICAL)


def test_the_critical_path_is_listed_in_order_with_each_nodes_share(page_of: Opened) -> None:
    rows = page_of.page.locator("#critical-table tbody tr")
    assert [rows.nth(k).locator("td").nth(1).inner_text() for k in range(rows.count())] == CRITICAL
    assert rows.first.locator("td.share").inner_text().endswith("%")


def test_a_cached_node_is_shown_cached(page_of: Opened) -> None:
    assert page_of.page.get_attribute('#graph g.gnode[data-name="assets"]', "data-status") == "cached"
    assert "s-cached" in (page_of.page.get_attribute('#timeline rect.bar[data-name="assets"]', "class") or "")


def test_clicking_a_bar_shows_the_nodes_logs(page_of: Opened) -> None:
    page_of.page.click('#timeline rect.bar[data-name="docs"]')
    log = page_of.page.locator('#nodes .node[data-name="docs"] details.log[data-stream="stdout"] pre')
    assert log.is_visible()
    assert log.inner_text().splitlines() == ["building the docs", "42 pages written"]


def test_clicking_a_node_of_the_graph_shows_its_logs(page_of: Opened) -> None:
    page_of.page.click('#graph g.gnode[data-name="package"]')
    log = page_of.page.locator('#nodes .node[data-name="package"] details.log[data-stream="stdout"] pre')
    assert log.is_visible()
    assert "packaged release-1.0" in log.inner_text()


def test_ansi_colours_are_drawn_as_coloured_text(page_of: Opened) -> None:
    page_of.page.click('#timeline rect.bar[data-name="lint"]')
    span = page_of.page.locator('#nodes .node[data-name="lint"] pre span.ansi', has_text="warning")
    assert span.evaluate("s => getComputedStyle(s).color") == "rgb(210, 153, 34)"  # yellow, as a terminal shows it
    assert "\x1b" not in page_of.page.locator('#nodes .node[data-name="lint"] pre').inner_text()


def test_the_log_search_finds_a_line_and_shows_it_in_its_log(page_of: Opened) -> None:
    page = page_of.page
    page.fill("#log-search", "expected 3")
    result = page.locator("#search-results li")
    result.first.wait_for()
    assert result.count() == 1
    assert result.first.inner_text().startswith("unit-tests · stderr:1")
    result.first.click()
    hit = page.locator('#nodes .node[data-name="unit-tests"] details.log[data-stream="stderr"] .line.hit')
    assert hit.is_visible()
    assert hit.inner_text() == "AssertionError: expected 3, got 4"


def test_a_failed_node_is_shown_failed(page_of: Opened) -> None:
    page = page_of.page
    assert page.inner_text('#nodes .node[data-name="unit-tests"] .status') == "failed"
    assert "s-failed" in (page.get_attribute('#timeline rect.bar[data-name="unit-tests"]', "class") or "")
    assert page.get_attribute('#graph g.gnode[data-name="unit-tests"]', "data-status") == "failed"
    assert page.inner_text('#header .chip[data-status="failed"]') == "1 failed"


def test_the_nodes_table_sorts_by_duration_longest_first(page_of: Opened) -> None:
    page = page_of.page
    page.click('#nodes [data-key="duration"]')
    shown = page.eval_on_selector_all("#nodes .node", "n => n.map(e => e.dataset.name)")
    data = json.loads(page.inner_text("#wtflow-data"))
    durations = {node["name"]: node["end"] - node["start"] for node in data["nodes"] if not node.get("hidden")}
    assert shown == sorted(durations, key=lambda name: -durations[name])


def test_the_nodes_table_filters_by_status_and_by_name(page_of: Opened) -> None:
    page = page_of.page
    page.select_option("#filter-status", "failed")
    assert page.eval_on_selector_all("#nodes .node:not([hidden])", "n => n.map(e => e.dataset.name)") == ["unit-tests"]
    page.select_option("#filter-status", "")
    page.fill("#filter-name", "pack")
    assert page.eval_on_selector_all("#nodes .node:not([hidden])", "n => n.map(e => e.dataset.name)") == ["package"]


def test_the_page_requests_nothing_but_itself_and_logs_no_error(page_of: Opened) -> None:
    page = page_of.page
    page.click('#timeline rect.bar[data-name="build"]')
    page.click('[data-layout="lanes"]')
    page.click('[data-zoom="in"]')
    page.fill("#log-search", "shipped")
    page.locator("#search-results li").first.click()
    page.hover('#graph g.gnode[data-name="ship"]')
    assert page.is_visible("#tooltip")
    assert all(url.startswith(("file://", "data:")) for url in page_of.requests), page_of.requests
    assert page_of.errors == []


def test_a_log_is_shown_as_the_node_wrote_it_whatever_it_holds(
    tmp_path: Path, open_report: Callable[..., Opened]
) -> None:
    opened = open_report(in_a_process("odd_report", tmp_path))
    opened.page.evaluate("window.wtflowReport.select(0)")
    lines = opened.page.locator('#nodes .node[data-name="odd"] details.log[data-stream="stdout"] pre .line')
    assert lines.all_inner_texts() == [
        "</script><!--<script>",
        "back\\slash \\u003c \\r \\\\",
        "nul \ufffd end",
        "100%",
        "red",
    ]
    assert opened.errors == []


# -- scale and the screenshot -------------------------------------------------------------


def test_a_2000_node_report_renders_quickly(
    tmp_path: Path, open_report: Callable[..., Opened], record_property: Callable[[str, object], None]
) -> None:
    """A generous bound: the time measured is recorded (pytest's junit XML, and -s prints it)."""
    report = in_a_process("wide_report", tmp_path)
    opened = open_report(report)
    opened.page.wait_for_selector("body[data-painted]")
    # From the start of the navigation to the first frame painted after the script drew the page.
    seconds = opened.page.evaluate("window.wtflowReport.paintedMs") / 1000
    script = opened.page.evaluate("window.wtflowReport.renderMs") / 1000
    record_property("render_seconds", round(seconds, 3))
    record_property("script_seconds", round(script, 3))
    size = report.stat().st_size / 2**20
    print(f"2,000 nodes: {size:.2f} MiB, painted {seconds:.2f} s after navigation (script {script:.2f} s)")
    assert opened.page.locator("#timeline rect.bar").count() == 2000
    assert opened.errors == []
    assert seconds < 10


def test_screenshot_of_a_report_stays_small(open_report: Callable[..., Opened], release: Path, tmp_path: Path) -> None:
    """docs/report.png: written there with WTFLOW_UPDATE_SCREENSHOT=1, else only made and measured."""
    opened = open_report(release, width=1280, height=900)
    page = opened.page
    page.click('#nodes .node[data-name="unit-tests"] .row')
    page.evaluate("window.scrollTo(0, 0)")
    docs = Path(__file__).parents[2] / "docs" / "report.png"
    target = docs if os.environ.get("WTFLOW_UPDATE_SCREENSHOT") == "1" else tmp_path / "report.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size < 300_000
    assert opened.errors == []
