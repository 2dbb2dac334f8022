"""``wtflow run`` (and the GitHub Action's ``action``): load, plan or run a workflow, stop it cleanly on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import os
import resource
import shlex
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wtflow.cli.options import (
    EXIT_CODES_HELP,
    FORCE_ALL,
    App,
    ChoiceOrUnsetFromEnv,
    Duration,
    app_option,
    dask_options,
    log_options,
    parse_var,
    pass_app,
    state_options,
)
from wtflow.cli.workflows import load_workflow
from wtflow.config import Config
from wtflow.errors import Interrupted, UsageError, WorkflowError
from wtflow.log import LogFormat

if TYPE_CHECKING:  # wtflow.rerun loads when --rerun-failed is given
    from wtflow.rerun import Plan


@click.command(epilog="\b\nExamples:\n  wtflow run\n  wtflow run ci.yml --target unit --output grouped\n"
              "  wtflow run --max-fail 2 --kill-grace 30s --var VERSION=1.2\n"
              "  wtflow run --dry-run\n  wtflow run ci.yml --rerun-failed\n"
              "  wtflow run --dask-scheduler tcp://scheduler:8786\n\n" + EXIT_CODES_HELP)  # fmt: skip
@click.argument("path", required=False, type=click.Path(path_type=Path), envvar="WTFLOW_PATH")
@click.option("-w", "--workflow", envvar="WTFLOW_WORKFLOW", help="Which workflow of the file.  [env: WTFLOW_WORKFLOW]")
@click.option(
    "-t",
    "--target",
    "targets",
    multiple=True,
    envvar="WTFLOW_TARGET",
    help="Run only this node and what it needs; repeatable.  [env: WTFLOW_TARGET, space-separated]",
)
@click.option("--dry-run", is_flag=True, envvar="WTFLOW_DRY_RUN", help="Print the plan and run nothing.")
@app_option(
    "--force",
    attribute="force",
    envvar=None,
    multiple=True,
    is_flag=False,
    flag_value=FORCE_ALL,
    metavar="[NODE]",
    convert=tuple,
    help="Run cached nodes even when the cache holds their result, and with --rerun-failed reuse none of them: "
    "all of them, or this node (repeatable; after the workflow file, or as --force=NODE).",
)
@click.option(
    "--rerun-failed",
    "rerun_failed",
    envvar="WTFLOW_RERUN_FAILED",
    is_flag=False,
    flag_value="latest",
    default=None,
    metavar="[RUN_ID]",
    help="Run only what failed, timed out, was cancelled or skipped in an earlier run (this workflow's latest, "
    "or RUN_ID, named as `wtflow runs show` takes it), and what waits for it; the other nodes take that run's "
    "result (after the workflow file, or as --rerun-failed=RUN_ID).  [env: WTFLOW_RERUN_FAILED]",
)
@app_option(
    "--max-parallel",
    attribute="max_parallel",
    envvar="WTFLOW_MAX_PARALLEL",
    type=click.IntRange(min=1),
    help="Nodes running at once, at most.",
)
@app_option(
    "--max-fail",
    attribute="max_fail",
    envvar="WTFLOW_MAX_FAIL",
    type=click.IntRange(min=0),
    help="Stop the run once more than N nodes have failed.  [default: 0, the first failure stops it]",
    metavar="N",
)
@app_option(
    "--ignore-failure/--no-ignore-failure",
    attribute="ignore_failure",
    envvar="WTFLOW_IGNORE_FAILURE",
    default=None,
    help="Keep going after a failed node (the run still fails).",
)
@app_option(
    "--kill-grace",
    attribute="kill_grace",
    envvar="WTFLOW_KILL_GRACE",
    type=Duration(),
    help="Time between SIGTERM and SIGKILL when stopping nodes: seconds or a duration (2s, 1m30s).  [default: 10]",
)
@app_option(
    "--var",
    attribute="vars",
    envvar=None,
    allow_from_autoenv=False,  # WTFLOW_VAR_<NAME> stands for it, one variable per name
    multiple=True,
    metavar="NAME=VALUE",
    convert=lambda values: tuple(parse_var(value) for value in values),
    help="Set the workflow variable NAME; repeatable.  [env: WTFLOW_VAR_<NAME>=VALUE, which --var overrides]",
)
@app_option(
    "--secret",
    attribute="secrets",
    envvar="WTFLOW_SECRET",
    multiple=True,
    convert=lambda values: tuple(name for value in values for name in value.split()),
    help="Mask the value of this environment variable (***) everywhere; repeatable, space-separated in the variable.",
)
@app_option(
    "--no-mask-artifacts",
    attribute="mask_artifacts",
    envvar="WTFLOW_NO_MASK_ARTIFACTS",
    is_flag=True,
    convert=lambda value: not value,
    help="Store nodes' output unmasked (console, logs and database stay masked).",
)
@click.option(
    "--output",
    cls=ChoiceOrUnsetFromEnv,  # inside a node, WTFLOW_OUTPUT is the path of the node's outputs file
    type=click.Choice(["interleaved", "prefixed", "grouped", "quiet"]),
    envvar="WTFLOW_OUTPUT",
    help="How node output is shown.  [default: prefixed when nodes can run in parallel, else interleaved] "
    "[env: WTFLOW_OUTPUT, ignored unless one of these]",
)
@click.option(
    "--report",
    "report",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="WTFLOW_REPORT",
    help="Write the run's HTML report here.  [default: <run dir>/report.html] [env: WTFLOW_REPORT]",
)
@click.option(
    "--no-report", is_flag=True, envvar="WTFLOW_NO_REPORT", help="Write no HTML report.  [env: WTFLOW_NO_REPORT]"
)
@click.option(
    "--progress/--no-progress",
    default=None,
    envvar="WTFLOW_PROGRESS",
    help="Show the running nodes, counts and a bar at the bottom of the terminal.  "
    "[default: when stderr is a terminal] [env: WTFLOW_PROGRESS]",
)
@dask_options
@state_options
@log_options
@pass_app
def run(  # noqa: PLR0917 - click passes each option positionally
    app: App,
    path: Path | None,
    workflow: str | None,
    targets: Sequence[str],
    dry_run: bool,
    rerun_failed: str | None,
    output: str | None,
    report: Path | None,
    no_report: bool,
    progress: bool | None,
) -> None:
    """Run the workflow in PATH (a file, or a directory with wtflow.yml; default: this directory)."""
    from wtflow.db import writer_process
    from wtflow.graph import stages, subset

    try:
        app.configure_logging()
        config = app.config()
        if config.db.url and not dry_run:
            writer_process.prestart(config.db.url)  # the database writer connects while the workflow loads
        else:
            writer_process.discard_prestarted()  # the spare writer wtflow.entry started is not needed
        loaded = load_workflow(path, workflow)
        for name in config.run.force_nodes:
            if name not in loaded.nodes:
                close = difflib.get_close_matches(name, list(loaded.nodes), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise WorkflowError(
                    f"--force {name!r} is not a node of workflow {loaded.name!r}; {hint}"
                    "a bare --force (every node) goes after the workflow file"
                )
        target_list = list(targets)  # WTFLOW_TARGET is split at spaces by click; a flag's value is one name
        if target_list:
            loaded = subset(loaded, target_list)
        rerun = _rerun_plan(loaded, config, app, rerun_failed) if rerun_failed is not None else None
        if dry_run:
            from wtflow.engine import secrets_masker

            _print_plan(loaded, config, secrets_masker(loaded, config))
            if rerun is not None:
                _print_rerun(loaded, rerun)
            return
        parallel = any(len(stage) > 1 for stage in stages(loaded))
        # Under GitHub Actions each node's output goes in a ::group:: block by default.
        default = "grouped" if os.environ.get("GITHUB_ACTIONS") == "true" else "prefixed" if parallel else "interleaved"
        mode = output or default
        app.prepare_state_dir(config)
        code = _run(loaded, config, app, mode, rerun, report=report, no_report=no_report, progress=progress)
    finally:
        writer_process.discard_prestarted()  # writers the run did not take (no database, or it stopped before opening)
    sys.exit(code)


def _print_plan(workflow: Any, config: Config, masker: Any) -> None:
    from wtflow.graph import stages
    from wtflow.model import Command

    cap = config.run.max_parallel or workflow.max_parallel
    count = len(workflow.user_nodes)  # the nodes the user wrote: not a graph-form file's implicit root
    click.echo(f"workflow {workflow.name!r}: {count} nodes" + (f", at most {cap} at once" if cap else ""))
    for number, stage in enumerate(stages(workflow), start=1):
        together = "  (in parallel)" if len(stage) > 1 else ""
        click.echo(f"  {number:>3}. {', '.join(stage)}{together}")
    click.echo("commands:")
    for name, node in workflow.nodes.items():
        executable = node.executable
        if executable is None:
            continue
        what = executable.cmd if isinstance(executable, Command) else f"function {executable.name}"
        shown = what if isinstance(what, str) else " ".join(what)
        condition = f"  (if: {node.condition})" if node.condition is not None else ""
        click.echo(masker.text(f"  {name}: {shown}{condition}"))


def _rerun_plan(workflow: Any, config: Config, app: App, run_id: str) -> Plan:
    """What ``--rerun-failed RUN_ID`` runs and reuses, from that run of the history (its files checked)."""
    from wtflow import rerun

    if config.db.url:
        app.prepare_state_dir(config)  # reading the history opens (and may create) the database
    try:
        earlier = rerun.earlier_run(config.db.url, run_id, workflow.name, workflow.base_dir)
    except UsageError as exc:
        if run_id != "latest" and Path(run_id).exists():  # `--rerun-failed ci.yml` took the file for a run id
            raise UsageError(f"{exc}; a bare --rerun-failed goes after the workflow file") from None
        raise
    chosen = rerun.plan(workflow, earlier.nodes, earlier.id, force=config.run.force, forced=config.run.force_nodes)
    rerun.check_stored(earlier, chosen)
    return chosen


def _print_rerun(workflow: Any, chosen: Plan) -> None:
    names = [name for name, node in workflow.user_nodes.items() if node.executable is not None]
    click.echo(f"rerun of the failed nodes of run {chosen.run_id}:")
    click.echo(f"  run:    {', '.join(name for name in names if name in chosen.run) or 'none'}")
    click.echo(f"  reused: {', '.join(name for name in names if name in chosen.reuse) or 'none'}")


def _run(
    workflow: Any,
    config: Config,
    app: App,
    mode: str,
    rerun: Plan | None = None,
    *,
    report: Path | None = None,
    no_report: bool = False,
    progress: bool | None = None,
) -> int:
    from wtflow.engine import Engine, secrets_masker
    from wtflow.observers import shown_observers
    from wtflow.observers.progress import wanted
    from wtflow.orphans import adopting_orphans

    masker = secrets_masker(workflow, config)  # one for the run: what nodes announce reaches every observer
    observers = shown_observers(
        mode,
        json_logs=app.log_format_given and app.log_format is LogFormat.JSON,
        github=os.environ.get("GITHUB_ACTIONS") == "true",
        masker=masker,
        terminal=app.log_format is LogFormat.CONSOLE,
        progress=wanted(progress) and not (app.log_format_given and app.log_format is LogFormat.JSON),
    )
    if not no_report:
        from wtflow.observers.report import ReportWriter

        observers.append(ReportWriter(path=report.resolve() if report else None, masker=masker))

    # Adopt processes that escape their node (setsid, double fork) so the run can stop them.
    with adopting_orphans() as adopting:
        reuse = None
        if rerun is not None:
            import structlog

            reuse = rerun.reuse
            executables = [name for name, node in workflow.user_nodes.items() if node.executable is not None]
            ran = [name for name in executables if name in rerun.run]
            taken = [name for name in executables if name in reuse]
            structlog.get_logger("wtflow").info("rerun_failed", of_run=rerun.run_id, rerun=ran, reused=taken)
        engine = Engine(workflow, config, observers=observers, masker=masker, stop_orphans=adopting, reuse=reuse)
        try:
            return run_interruptibly(engine)
        finally:
            if engine.warnings:
                import structlog

                for warning in engine.warnings:
                    structlog.get_logger("wtflow").warning("run_warning", message=warning)


# Signals that stop a run: Ctrl-C, a polite kill, and a closed terminal or dropped SSH session.
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_interruptibly(engine: Any) -> int:
    """Run ``engine``; SIGINT, SIGTERM or SIGHUP stops it cleanly (exit 128 + the signal), a second one at once.

    A signal that arrives once every node has finished, while the run's record is written, does
    not cut that short: the run ends as it was recorded.
    """
    received: list[int] = []
    cancelled: list[bool] = []

    async def main() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(number: int) -> None:
            received.append(number)
            if engine.result is not None and len(received) == 1:
                return  # the run is over and being recorded: let that finish
            if not cancelled:
                cancelled.append(True)
                engine.interrupt(number)  # recorded as the run's exit code
                if engine.scheduler is None:
                    task.cancel()  # no node started yet: stop at once
                # else: nodes get SIGTERM, then SIGKILL after the grace period; always() nodes still run
            elif engine.scheduler is not None:
                engine.scheduler.kill()  # a second signal: SIGKILL now, start nothing more

        for number in STOPPING_SIGNALS:
            loop.add_signal_handler(number, on_signal, number)
        try:
            result: int = await engine.run_async()
        finally:
            for number in STOPPING_SIGNALS:
                loop.remove_signal_handler(number)
        return result

    _raise_open_files_limit()
    try:
        with _pidfd_child_watcher():
            code = asyncio.run(main())
    except asyncio.CancelledError:
        if not received:
            raise
    else:
        if not (cancelled and engine.result is not None and engine.result.status == "cancelled"):
            return code
    number = engine.interrupted_by or received[0]
    raise Interrupted(f"interrupted by {signal.Signals(number).name}", signal_number=number) from None


def _raise_open_files_limit() -> None:
    """Each running node holds a few descriptors: lift the soft limit (often 1024) to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))


@contextlib.contextmanager
def _pidfd_child_watcher() -> Iterator[None]:
    """On Python 3.11, learn of child exits from pidfds instead of a thread per child (3.12 does this itself).

    The watcher is process-wide: the previous one is put back afterwards.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        yield
        return
    policy = asyncio.get_event_loop_policy()
    previous = policy.get_child_watcher()
    policy.set_child_watcher(asyncio.PidfdChildWatcher())
    try:
        yield
    finally:
        policy.set_child_watcher(previous)


@click.command(hidden=True)
@click.pass_context
def action(ctx: click.Context) -> None:
    """Run as the GitHub Action: the options come from INPUT_* variables (hyphens kept)."""
    environ = os.environ

    def given(name: str) -> str:
        return environ.get(f"INPUT_{name.upper()}", "").strip()

    args = [given("workflow-file") or "wtflow.yml", "--artifacts-dir", given("artifacts-dir") or "wtflow-artifacts"]
    for name, flag in (
        ("workflow", "--workflow"),
        ("db-url", "--db-url"),
        ("cache-dir", "--cache-dir"),
        ("max-parallel", "--max-parallel"),
        ("max-fail", "--max-fail"),
        ("dask-scheduler", "--dask-scheduler"),
    ):
        if given(name):
            args += [flag, given(name)]
    args += [item for target in given("targets").split() for item in ("--target", target)]
    if given("ignore-failure").lower() in {"1", "true", "yes"}:
        args.append("--ignore-failure")
    if given("log-format"):
        args += ["--log-format", given("log-format")]
    args += shlex.split(given("args"))
    ctx.invoke(run, **run.make_context("run", args, parent=ctx.parent).params)
