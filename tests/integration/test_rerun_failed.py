"""`wtflow run --rerun-failed`: only what did not succeed runs again, and what waits for it; the rest is reused.

First which nodes run again (:func:`wtflow.rerun.plan`, fed node records as the history reads
them back), then `wtflow run` itself, on SQLite files and PostgreSQL: a workflow fails, its cause
is fixed, and the rerun runs only the failed node and what waits for it (marker files count
every execution) while the others take the earlier run's streams, outputs and files.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.conftest import cli
from wtflow import Artifact, Command, Node, PyFunc, Workflow
from wtflow.db.history import NodeRecord
from wtflow.events import ArtifactInfo
from wtflow.rerun import Plan, plan

EARLIER = "20261206T080000000000Z-0a1b2c3d"
RUNS = Path("/runs") / EARLIER
START = datetime(2026, 12, 6, 8, tzinfo=UTC)


def command(name: str, **options: Any) -> Node:
    return Node(name, executable=Command("true"), **options)


def records(workflow: Workflow, statuses: dict[str, str], *, default: str = "succeeded") -> list[NodeRecord]:
    """The earlier run's records of ``workflow``'s nodes: each ended ``statuses[name]`` (else ``default``), in 2 s."""
    found = []
    for position, (name, node) in enumerate(workflow.nodes.items()):
        stored = []
        if node.executable is not None:
            stored = [
                ArtifactInfo("stderr", RUNS / name / "stderr.log", 0),
                ArtifactInfo("stdout", RUNS / name / "stdout.log", 3),
            ]
        ended = START + timedelta(seconds=2)
        status = statuses.get(name, default)
        found.append(
            NodeRecord(name, position, workflow.path(name), status, 0, 1, START, ended, None, artifacts=stored)
        )
    return found


def decided(workflow: Workflow, statuses: dict[str, str], **options: Any) -> Plan:
    return plan(workflow, records(workflow, statuses, **options), EARLIER)


def runs_again(workflow: Workflow, chosen: Plan) -> set[str]:
    """The nodes with an executable that run again."""
    return {name for name in chosen.run if workflow.nodes[name].executable is not None}


def ci(*children: Node, parallel: bool = True) -> Workflow:
    """Workflow ``ci``: its root ``ci`` holds ``children``, side by side unless not ``parallel``."""
    return Workflow("ci", Node("ci", parallel=parallel, children=list(children)))


def again_and_reused(workflow: Workflow, statuses: dict[str, str]) -> tuple[set[str], set[str]]:
    """After a run whose nodes ended as ``statuses`` say (else succeeded): those with an executable that run
    again, and those reused."""
    chosen = decided(workflow, statuses)
    return runs_again(workflow, chosen), set(chosen.reuse)


# -- which nodes run again --------------------------------------------------------------------


def test_a_failed_node_runs_again_with_what_needs_it_and_the_others_are_reused() -> None:
    workflow = ci(
        command("build"),
        command("lint"),
        command("unit"),
        command("package", needs=["unit"]),
        command("deploy", needs=["package"]),
        command("docs", needs=["build"]),
    )
    assert again_and_reused(workflow, {"unit": "failed", "package": "skipped", "deploy": "skipped"}) == (
        {"unit", "package", "deploy"},
        {"build", "lint", "docs"},
    )


def test_a_sequential_sibling_after_a_failed_node_runs_again() -> None:
    """Even where it succeeded (the failed node may fail): it waits for the failed one."""
    workflow = ci(command("a"), command("b", continue_on_error=True), command("c"), parallel=False)
    assert again_and_reused(workflow, {"b": "failed"}) == ({"b", "c"}, {"a"})


def test_a_sequential_sibling_after_a_group_with_a_failed_node_runs_again() -> None:
    """A node waits for its previous sibling with everything below it; that group's other nodes are reused."""
    checks = Node("checks", parallel=True, children=[command("lint"), command("unit")])
    workflow = ci(checks, command("package"), command("publish"), parallel=False)
    statuses = {"unit": "timed_out", "checks": "failed", "package": "skipped", "publish": "skipped"}
    assert again_and_reused(workflow, statuses) == ({"unit", "package", "publish"}, {"lint"})


def test_the_children_of_a_node_that_runs_again_run_again() -> None:
    """Even where they succeeded: a node's children wait for it."""
    setup = command("setup", children=[command("unit"), Node("more", children=[command("integration")])])
    workflow = ci(setup, command("lint"))
    assert again_and_reused(workflow, {"setup": "failed"}) == ({"setup", "unit", "integration"}, {"lint"})


def test_a_node_that_needs_a_group_runs_again_when_a_node_in_that_group_does() -> None:
    tests = Node("tests", parallel=True, children=[command("unit"), command("integration")])
    workflow = ci(tests, command("report", needs=["tests"]), command("lint"))
    assert again_and_reused(workflow, {"integration": "failed"}) == ({"integration", "report"}, {"unit", "lint"})


def test_a_node_reading_an_artifact_of_a_node_that_runs_again_runs_again() -> None:
    build = command("build")
    workflow = ci(build, Node("count", executable=PyFunc(len, args=(build.stdout_artifact,))), command("lint"))
    assert again_and_reused(workflow, {"build": "cancelled"}) == ({"build", "count"}, {"lint"})


@pytest.mark.parametrize("status", ["failed", "timed_out", "cancelled", "skipped", "pending", "running"])
def test_a_node_that_did_not_succeed_runs_again(status: str) -> None:
    """Pending and running: the earlier run crashed before it ended."""
    assert again_and_reused(ci(command("a"), command("b")), {"b": status}) == ({"b"}, {"a"})


@pytest.mark.parametrize("status", ["succeeded", "cached", "reused"])
def test_a_node_that_did_its_work_is_reused(status: str) -> None:
    chosen = decided(ci(command("a"), command("b")), {"a": status, "b": "failed"})
    assert set(chosen.reuse) == {"a"}


def test_groups_are_never_reused_they_run() -> None:
    chosen = decided(ci(Node("checks", children=[command("lint")]), parallel=False), {})
    assert set(chosen.reuse) == {"lint"}
    assert chosen.run == {"ci", "checks"}


def test_a_node_the_earlier_run_did_not_have_runs_with_what_waits_for_it() -> None:
    workflow = ci(command("lint"), command("new"), command("after", needs=["new"]))
    earlier = [record for record in records(workflow, {}) if record.name != "new"]
    chosen = plan(workflow, earlier, EARLIER)
    assert runs_again(workflow, chosen) == {"new", "after"}
    assert set(chosen.reuse) == {"lint"}


def test_a_node_named_by_force_runs_again_with_what_waits_for_it() -> None:
    workflow = ci(command("build"), command("package", needs=["build"]), command("lint"))
    chosen = plan(workflow, records(workflow, {}), EARLIER, forced=["build"])
    assert runs_again(workflow, chosen) == {"build", "package"}
    assert set(chosen.reuse) == {"lint"}


def test_force_runs_every_node_again() -> None:
    workflow = ci(command("build"), command("lint"))
    chosen = plan(workflow, records(workflow, {"lint": "failed"}), EARLIER, force=True)
    assert (runs_again(workflow, chosen), set(chosen.reuse)) == ({"build", "lint"}, set())


def test_a_node_whose_outputs_hold_a_masked_secret_runs_again() -> None:
    """The run kept only '***': a later node would get that instead of the secret."""
    workflow = ci(command("login"), command("deploy", needs=["login"]), command("lint"))
    earlier = [
        dataclasses.replace(record, outputs={"token": "***"}) if record.name == "login" else record
        for record in records(workflow, {"deploy": "failed"})
    ]
    chosen = plan(workflow, earlier, EARLIER)
    assert runs_again(workflow, chosen) == {"login", "deploy"}
    assert set(chosen.reuse) == {"lint"}


def test_a_function_whose_result_holds_a_masked_secret_runs_again(tmp_path: Path) -> None:
    workflow = ci(command("login"), command("lint"))
    result = tmp_path / "result.json"
    result.write_text('{"token": "***"}')
    earlier = [
        dataclasses.replace(record, artifacts=[*record.artifacts, ArtifactInfo("result", result, 16)])
        if record.name == "login"
        else record
        for record in records(workflow, {})
    ]
    chosen = plan(workflow, earlier, EARLIER)
    assert runs_again(workflow, chosen) == {"login"}


def test_a_node_that_stored_nothing_runs_again() -> None:
    """Where its results were kept is not known: nothing to take."""
    workflow = ci(command("a"), command("b"))
    earlier = records(workflow, {})
    earlier[1] = NodeRecord("a", 1, "ci/a", "succeeded", 0, 1, START, START, None)
    chosen = plan(workflow, earlier, EARLIER)
    assert runs_again(workflow, chosen) == {"a"}


def test_a_reused_node_takes_the_earlier_runs_streams_result_outputs_and_files() -> None:
    workflow = ci(Node("f", executable=PyFunc(len, args=("abc",))), parallel=False)
    stored = [
        ArtifactInfo("junit", RUNS / "f" / "files" / "junit", 10),
        ArtifactInfo("result", RUNS / "f" / "result.json", 1),
        ArtifactInfo("stderr", RUNS / "f" / "stderr.log", 0),
        ArtifactInfo("stdout", RUNS / "f" / "stdout.log", 3),
    ]
    ended = START + timedelta(seconds=83.25)
    node = NodeRecord("f", 1, "ci/f", "succeeded", 0, 2, START, ended, None, artifacts=stored, outputs={"v": "1"})
    taken = plan(workflow, [node], EARLIER).reuse["f"]
    assert (taken.status, taken.source, taken.saved, dict(taken.outputs)) == ("reused", EARLIER, 83.25, {"v": "1"})
    assert (taken.stdout, taken.stderr, taken.result) == (
        RUNS / "f" / "stdout.log",
        RUNS / "f" / "stderr.log",
        RUNS / "f" / "result.json",
    )
    assert taken.files == RUNS / "f" / "files"
    assert taken.replay is False  # its output is not shown again (and an Earlier puts no file back: no such step)


@pytest.mark.parametrize("status", ["cached", "reused"])
def test_a_node_that_took_its_result_earlier_saves_the_time_it_took_when_it_ran(status: str) -> None:
    workflow = ci(command("a"), parallel=False)
    earlier = records(workflow, {})
    earlier[1] = NodeRecord(
        "a", 1, "ci/a", status, 0, 1, START, START, None, saved=42.5, artifacts=list(earlier[1].artifacts)
    )
    assert plan(workflow, earlier, EARLIER).reuse["a"].saved == 42.5


# -- wtflow run --rerun-failed ----------------------------------------------------------------

# Every node counts its executions in ran.NODE; unit fails until the file `fixed` exists;
# build makes a new value each time it runs, as an output and as a file artifact. One node at
# a time: a failure stops the run, and would cancel a node running beside it.
WORKFLOW = """
name: ci
root:
  name: ci
  children:
    - name: build
      command: >-
        echo . >> ran.build; v=$(cat /proc/sys/kernel/random/uuid);
        echo "version=$v" >> "$WTFLOW_OUTPUT"; echo "$v" > out.txt; echo "built $v"
      artifacts: [{{name: out, path: out.txt}}]
    - name: checks
      children:
        - {{name: lint, command: "echo . >> ran.lint; echo linted"}}
        - {{name: unit, command: "echo . >> ran.unit; test -e fixed"}}
    - name: package
      needs: [build]
      command: 'echo . >> ran.package; echo "version ${{{{ needs.build.outputs.version }}}}"'
    - name: report
      function: tests.integration.test_rerun_failed:reads_artifact
      args: [{{artifact: build.out}}, "{marks}"]
"""
OTHER = "name: docs\nroot: {name: site, command: 'echo . >> ran.site'}\n"


def reads_artifact(out: Artifact, marks: str) -> dict[str, str]:
    """The report node: what build's file artifact holds, as an output."""
    with open(marks, "a") as counted:
        counted.write(".\n")
    return {"out": out.text()}


@pytest.fixture
def project(workdir: Path) -> Path:
    (workdir / "wtflow.yml").write_text(WORKFLOW.format(marks=workdir / "ran.report"))
    (workdir / "other.yml").write_text(OTHER)
    return workdir


def wtflow(url: str, *args: str) -> Result:
    return cli(*args, "--db-url", url, "--output", "prefixed") if args[0] == "run" else cli(*args, "--db-url", url)


def executions(project: Path) -> dict[str, int]:
    return {path.suffix[1:]: len(path.read_text().splitlines()) for path in sorted(project.glob("ran.*"))}


def run_json(project: Path, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project / ".wtflow" / "artifacts" / run_id / "run.json").read_text())
    return data


def run_ids(project: Path) -> list[str]:
    """The runs made in ``project``, oldest first."""
    return sorted(path.name for path in (project / ".wtflow" / "artifacts").iterdir())


def failed_once(project: Path, url: str) -> str:
    """Run the workflow (unit fails), then fix unit; the failed run's id."""
    first = wtflow(url, "run")
    assert first.exit_code == 1, first.stderr
    assert executions(project) == {"build": 1, "lint": 1, "unit": 1}
    (project / "fixed").touch()
    (project / "out.txt").unlink()
    return run_ids(project)[-1]


def statuses(data: dict[str, Any]) -> dict[str, str]:
    return {name: node["status"] for name, node in data["nodes"].items()}


def test_only_the_failed_node_and_what_waits_for_it_run_again(project: Path, database_url: str) -> None:
    failed = failed_once(project, database_url)
    result = wtflow(database_url, "run", "--rerun-failed")
    assert result.exit_code == 0, result.stderr
    assert executions(project) == {"build": 1, "lint": 1, "unit": 2, "package": 1, "report": 1}
    assert "built" not in result.stdout  # reused output is not shown again
    assert "linted" not in result.stdout
    rerun = run_json(project, run_ids(project)[-1])
    assert rerun["status"] == "succeeded"
    assert statuses(rerun) == {
        "ci": "succeeded",
        "build": "reused",
        "checks": "succeeded",
        "lint": "reused",
        "unit": "succeeded",
        "package": "succeeded",
        "report": "succeeded",
    }
    earlier = run_json(project, failed)["nodes"]
    for name in ("build", "lint"):
        assert (rerun["nodes"][name]["reused_from"], rerun["nodes"][name]["saved"]) == (
            failed,
            earlier[name]["duration"],
        )


def test_nodes_after_a_reused_node_read_its_earlier_output_and_artifact(project: Path, database_url: str) -> None:
    failed = failed_once(project, database_url)
    result = wtflow(database_url, "run", "--rerun-failed", failed)
    assert result.exit_code == 0, result.stderr
    version = run_json(project, failed)["nodes"]["build"]["outputs"]["version"]
    rerun = run_json(project, run_ids(project)[-1])["nodes"]
    assert rerun["build"]["outputs"] == {"version": version}
    assert f"[package] version {version}\n" in result.stdout
    assert rerun["report"]["outputs"] == {"out": f"{version}\n"}  # the earlier bytes of build's file artifact
    assert Path(rerun["build"]["artifacts"]["stdout"]["path"]).read_text() == f"built {version}\n"


def test_a_reused_node_keeps_what_it_wrote_beside_its_streams_and_says_where_it_comes_from(project: Path) -> None:
    """Its outputs file and step summary come along: the step summary of the rerun shows them again."""
    url = f"sqlite:///{project / 'runs.db'}"
    failed = failed_once(project, url)
    summary = project / ".wtflow" / "artifacts" / failed / "build" / "summary.md"
    summary.write_text("### build\nbuilt ok\n")  # as the node would have through $WTFLOW_STEP_SUMMARY
    result = wtflow(url, "run", "--rerun-failed", "--log-format", "console")
    assert result.exit_code == 0, result.stderr
    assert "build reused from the earlier run" in result.stderr
    earlier, rerun = (project / ".wtflow" / "artifacts" / run / "build" for run in (failed, run_ids(project)[-1]))
    for name in ("outputs", "summary.md"):
        assert (rerun / name).read_text() == (earlier / name).read_text()


def test_runs_show_marks_the_reused_nodes_and_the_time_they_saved(project: Path, database_url: str) -> None:
    failed = failed_once(project, database_url)
    assert wtflow(database_url, "run", "--rerun-failed").exit_code == 0
    shown = wtflow(database_url, "runs", "show")
    assert (shown.exit_code, shown.stderr) == (0, "")
    rows = {line.split()[0]: line.split()[1] for line in shown.stdout.split("\n\n")[1].splitlines()[1:]}
    assert rows == {
        "ci": "succeeded",
        "ci/build": "reused",
        "ci/checks": "succeeded",
        "ci/checks/lint": "reused",
        "ci/checks/unit": "succeeded",
        "ci/package": "succeeded",
        "ci/report": "succeeded",
    }
    assert f"by cached and reused nodes: 2 reused from run {failed}\n" in shown.stdout


def test_a_rerun_where_nothing_failed_reuses_every_node(project: Path) -> None:
    url = f"sqlite:///{project / 'history.db'}"
    (project / "fixed").touch()
    assert wtflow(url, "run").exit_code == 0
    result = wtflow(url, "run", "--rerun-failed")
    assert result.exit_code == 0, result.stderr
    assert executions(project) == {"build": 1, "lint": 1, "unit": 1, "package": 1, "report": 1}
    taken = statuses(run_json(project, run_ids(project)[-1]))
    assert {name for name, status in taken.items() if status == "reused"} == {
        "build",
        "lint",
        "unit",
        "package",
        "report",
    }


def test_dry_run_says_what_runs_and_what_is_reused_and_runs_nothing(project: Path) -> None:
    url = f"sqlite:///{project / 'history.db'}"
    failed = failed_once(project, url)
    result = cli("run", "--rerun-failed", "--dry-run", "--db-url", url)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines()[-3:] == [
        f"rerun of the failed nodes of run {failed}:",
        "  run:    unit, package, report",
        "  reused: build, lint",
    ]
    assert executions(project) == {"build": 1, "lint": 1, "unit": 1}
    assert run_ids(project) == [failed]


def test_a_node_named_by_force_is_not_reused(project: Path) -> None:
    url = f"sqlite:///{project / 'history.db'}"
    failed = failed_once(project, url)
    result = cli("run", "--rerun-failed", "--force=lint", "--dry-run", "--db-url", url)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines()[-3:] == [
        f"rerun of the failed nodes of run {failed}:",
        "  run:    lint, unit, package, report",
        "  reused: build",
    ]


def test_latest_and_latest_n_count_this_workflows_runs_only(project: Path) -> None:
    url = f"sqlite:///{project / 'history.db'}"
    assert wtflow(url, "run").exit_code == 1
    assert wtflow(url, "run").exit_code == 1
    older, newer = run_ids(project)
    assert wtflow(url, "run", "other.yml").exit_code == 0  # the newest run, of another workflow
    for given, chosen in (("latest", newer), ("latest~1", older)):
        result = cli("run", f"--rerun-failed={given}", "--dry-run", "--db-url", url)
        assert (result.exit_code, result.stderr) == (0, "")
        assert f"rerun of the failed nodes of run {chosen}:\n" in result.stdout


# -- what it refuses --------------------------------------------------------------------------


def refused(result: Result, message: str) -> None:
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"Error: {message}\n"
    assert "Traceback" not in result.stderr


def test_a_run_of_another_workflow_is_refused_naming_both(project: Path, database_url: str) -> None:
    assert wtflow(database_url, "run", "other.yml").exit_code == 0
    docs_run = run_ids(project)[-1]
    result = wtflow(database_url, "run", f"--rerun-failed={docs_run[-8:]}")
    refused(
        result,
        f"run {docs_run} is a run of workflow 'docs', not of 'ci': --rerun-failed reruns a run of the same workflow",
    )
    assert run_ids(project) == [docs_run]


def test_a_run_still_running_is_refused_naming_it(workdir: Path) -> None:
    """Rerunning it would run its nodes a second time beside it."""
    (workdir / "slow.yml").write_text(
        "name: slow\nroot: {name: wait, command: 'touch started; while [ ! -e go ]; do sleep 0.05; done'}\n"
    )
    url = f"sqlite:///{workdir / 'runs.db'}"
    running = subprocess.Popen(
        [sys.executable, "-m", "wtflow", "run", "slow.yml", "--db-url", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Until the node runs and the database holds the run (its writer writes in batches).
        while not (workdir / "started").exists() or "running" not in cli("runs", "list", "--db-url", url).stdout:
            assert running.poll() is None
            time.sleep(0.01)
        result = cli("run", "slow.yml", "--rerun-failed", "--db-url", url)
        [run_id] = run_ids(workdir)
        refused(
            result,
            f"run {run_id} of workflow 'slow' is still running: rerun it once it has ended, "
            "or name an earlier run (`wtflow runs list --workflow slow`)",
        )
    finally:
        (workdir / "go").touch()
        assert running.wait(timeout=60) == 0


def test_an_unknown_run_id_is_refused_naming_it(project: Path, database_url: str) -> None:
    failed_once(project, database_url)
    result = wtflow(database_url, "run", "--rerun-failed", "ffff")
    refused(result, "no run 'ffff'; `wtflow runs list` shows the runs")


def test_without_an_earlier_run_of_the_workflow_it_is_refused(project: Path, database_url: str) -> None:
    assert wtflow(database_url, "run", "other.yml").exit_code == 0  # a run, of another workflow
    result = wtflow(database_url, "run", "--rerun-failed")
    refused(
        result,
        "no earlier run of workflow 'ci' in the run history: nothing failed to rerun; run it without --rerun-failed",
    )


def test_without_a_history_database_it_is_refused(project: Path) -> None:
    result = cli("run", "--rerun-failed", "--db-url", "")
    refused(result, "--rerun-failed reads the earlier run from the run history: set --db-url or WTFLOW_DB_URL")
    assert not (project / ".wtflow").exists()


def test_a_run_whose_artifacts_are_gone_is_refused_naming_the_directory(project: Path) -> None:
    url = f"sqlite:///{project / 'history.db'}"
    failed = failed_once(project, url)
    gone = project / ".wtflow" / "artifacts" / failed
    shutil.rmtree(gone)
    result = cli("run", "--rerun-failed", "--db-url", url)
    refused(
        result,
        f"the artifacts of run {failed} are gone: {gone} does not exist; "
        "nothing can be reused, run the workflow without --rerun-failed",
    )
    assert executions(project) == {"build": 1, "lint": 1, "unit": 1}


def test_a_reused_nodes_missing_artifact_is_refused_naming_it(project: Path) -> None:
    url = f"sqlite:///{project / 'history.db'}"
    failed = failed_once(project, url)
    stdout = project / ".wtflow" / "artifacts" / failed / "lint" / "stdout.log"
    stdout.unlink()
    result = cli("run", "--rerun-failed", "--db-url", url)
    refused(
        result,
        f"node 'lint' of run {failed} cannot be reused: its stdout artifact {stdout} is gone; "
        "run the workflow without --rerun-failed",
    )


def test_a_workflow_file_taken_for_the_run_id_is_explained(project: Path) -> None:
    url = f"sqlite:///{project / 'history.db'}"
    failed_once(project, url)
    result = cli("run", "--rerun-failed", "wtflow.yml", "--db-url", url)
    refused(
        result,
        "no run 'wtflow.yml'; `wtflow runs list` shows the runs; a bare --rerun-failed goes after the workflow file",
    )


def test_a_reused_nodes_file_artifact_is_recorded_in_the_rerun(project: Path) -> None:
    url = f"sqlite:///{project / 'history.db'}"
    failed_once(project, url)
    assert wtflow(url, "run", "--rerun-failed").exit_code == 0
    build = run_json(project, run_ids(project)[-1])["nodes"]["build"]
    assert Path(build["artifacts"]["out"]["path"], "out.txt").is_file()


CACHED_BELOW_REUSED = """
name: ci
root:
  name: ci
  children:
    - {name: made, sources: [in.txt], outputs: [made.txt], command: 'cp in.txt made.txt'}
    - {name: gate, command: 'test -e open'}
    - {name: seen, cache: true, needs: [made, gate], command: 'echo "seen $(cat made.txt)"'}
"""


def test_a_cached_node_below_a_reused_one_never_hits_an_entry_another_version_of_it_filled(workdir: Path) -> None:
    """The reused node's own key is not known: what it made counts by the run it came from."""
    (workdir / "wtflow.yml").write_text(CACHED_BELOW_REUSED)
    (workdir / "in.txt").write_text("v1\n")
    url = f"sqlite:///{workdir / 'runs.db'}"
    assert wtflow(url, "run").exit_code == 1  # gate closed
    (workdir / "open").touch()
    assert wtflow(url, "run", "--rerun-failed").exit_code == 0  # made reused (v1); seen runs and fills
    (workdir / "in.txt").write_text("v2\n")
    (workdir / "open").unlink()
    assert wtflow(url, "run").exit_code == 1  # made runs (v2); gate closed again
    (workdir / "open").touch()
    rerun = wtflow(url, "run", "--rerun-failed")  # made reused (v2)
    assert rerun.exit_code == 0, rerun.stderr
    assert "seen v2" in rerun.stdout
    assert "seen v1" not in rerun.stdout


def test_a_workflow_of_the_same_name_in_another_project_sharing_the_database_is_another_workflow(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two checkouts, one team database, a workflow named 'ci' in each: a rerun takes its own project's run."""
    url = f"sqlite:///{workdir / 'team.db'}"
    ran: dict[str, str] = {}
    for project in ("a", "b"):
        (workdir / project).mkdir()
        (workdir / project / "wtflow.yml").write_text(
            f"name: ci\nroot: {{name: ci, children: [{{name: build, command: 'echo {project}'}},"
            " {name: test, command: 'test -e fixed'}]}\n"
        )
    for project in ("b", "a"):  # a's run is the newest
        monkeypatch.chdir(workdir / project)
        assert wtflow(url, "run").exit_code == 1
        ran[project] = run_ids(workdir / project)[-1]
    result = cli("run", "--rerun-failed", "--dry-run", "--db-url", url)  # in a
    assert f"rerun of the failed nodes of run {ran['a']}:" in result.stdout
    monkeypatch.chdir(workdir / "b")
    result = cli("run", "--rerun-failed", "--dry-run", "--db-url", url)
    assert f"rerun of the failed nodes of run {ran['b']}:" in result.stdout
    refused(
        cli("run", f"--rerun-failed={ran['a']}", "--db-url", url),
        f"run {ran['a']} is a run of workflow 'ci' in {(workdir / 'a').resolve()}, not of the one in "
        f"{(workdir / 'b').resolve()}: --rerun-failed reruns a run of the same workflow file",
    )
