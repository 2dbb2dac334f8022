"""The ``wtflow`` command line: run workflow files, inspect them, and read run history.

Every option has a ``WTFLOW_*`` environment variable. Precedence: flag, then environment,
then the ``--config`` INI file, then defaults. The CLI keeps its state in ``.wtflow/`` of the
current directory: the SQLite database ``.wtflow/wtflow.db`` and the artifacts ``.wtflow/artifacts/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import resource
import shlex
import shutil
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from wtflow import __version__
from wtflow.config import Config, DatabaseConfig, RunConfig, StorageConfig
from wtflow.errors import EXIT_CODES, Interrupted, UsageError, WorkflowError, WtflowError
from wtflow.log import LEVELS, LogFormat

STATE_DIR = Path(".wtflow")
EXIT_CODES_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES)

F = TypeVar("F", bound=Callable[..., Any])
_LOCATED = re.compile(r"^\S.*:\d+:\d+: ")  # FILE:LINE:COL: message


class CliError(click.ClickException):
    """A wtflow error shown without a traceback, exiting with its code."""

    def __init__(self, error: WtflowError, *, as_json: bool = False) -> None:
        super().__init__(str(error))
        self.as_json = as_json
        self.located = isinstance(error, WorkflowError) and _LOCATED.match(str(error)) is not None
        self.exit_code = error.exit_code  # type: ignore[misc]  # click declares it on the class; ours varies

    def show(self, file: Any = None) -> None:
        """Print the message; as a JSON log line when logs are JSON."""
        stream = file or sys.stderr
        if self.as_json:
            stream.write(json.dumps({"event": "error", "level": "error", "message": self.message}) + "\n")
        elif self.located:
            click.echo(self.message, file=stream)  # already FILE:LINE:COL: what is wrong, a line each
        else:
            click.echo(f"error: {self.message}", file=stream)


class WtflowGroup(click.Group):
    """Turns wtflow's own errors into clean messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a :class:`WtflowError` becomes a :class:`CliError`."""
        try:
            return super().invoke(ctx)
        except WtflowError as exc:
            app = ctx.find_object(App)
            as_json = app is not None and app.log_format_given and app.log_format is LogFormat.JSON
            raise CliError(exc, as_json=as_json) from None


@dataclass
class App:
    """What the options of a command configure: where state lives and how to log."""

    config_file: Path | None = None
    db_url: str | None = None
    db_retry: float | None = None
    artifacts_dir: Path | None = None
    max_parallel: int | None = None
    ignore_failure: bool | None = None
    kill_grace: float | None = None
    secrets: tuple[str, ...] = ()
    mask_artifacts: bool = True
    log_format: LogFormat = LogFormat.AUTO
    log_format_given: bool = False
    log_level: str = "info"

    def config(self) -> Config:
        """Defaults, then the INI file, then flags and environment."""
        base = Config(
            db=DatabaseConfig(f"sqlite:///{(STATE_DIR / 'wtflow.db').resolve()}"),
            storage=StorageConfig((STATE_DIR / "artifacts").resolve()),
        )
        if self.config_file is not None:
            base = Config.from_ini(self.config_file, base=base)
        db_url = base.db.url if self.db_url is None else (self.db_url or None)
        run = base.run
        return Config(
            db=DatabaseConfig(db_url, base.db.retry if self.db_retry is None else self.db_retry),
            storage=StorageConfig(self.artifacts_dir or base.storage.artifacts_dir),
            run=RunConfig(
                ignore_failure=run.ignore_failure if self.ignore_failure is None else self.ignore_failure,
                max_parallel=self.max_parallel or run.max_parallel,
                kill_grace=run.kill_grace if self.kill_grace is None else self.kill_grace,
                secrets=self.secrets,
                mask_artifacts=self.mask_artifacts,
            ),
        )

    def prepare_state_dir(self, config: Config) -> None:
        """Create ``.wtflow/`` with a ``.gitignore`` of ``*`` when the defaults keep state there."""
        state = STATE_DIR.resolve()
        uses_state = (config.db.url or "").endswith(str(state / "wtflow.db")) or (
            config.storage.artifacts_dir is not None and config.storage.artifacts_dir.is_relative_to(state)
        )
        if uses_state and not (state / ".gitignore").exists():
            state.mkdir(parents=True, exist_ok=True)
            (state / ".gitignore").write_text("# wtflow's run history and artifacts: not for version control\n*\n")

    def configure_logging(self) -> None:
        """Set up structlog for this command (stderr)."""
        from wtflow.log import configure

        self.log_format = configure(self.log_format, self.log_level)


pass_app = click.make_pass_decorator(App, ensure=True)


def _store(attribute: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        app = ctx.ensure_object(App)
        if value is not None:
            setattr(app, attribute, value)
            if attribute == "log_format" and param.name is not None:
                source = ctx.get_parameter_source(param.name)
                app.log_format_given = source not in {None, click.core.ParameterSource.DEFAULT}
        return value

    return callback


def app_option(
    *decls: str,
    attribute: str,
    envvar: str,
    help: str,
    convert: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> Callable[[F], F]:
    """An option stored on the :class:`App` (not passed to the command), its variable named in its help."""
    store = _store(attribute)

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        return store(ctx, param, convert(value) if convert is not None and value is not None else value)

    return click.option(
        *decls, envvar=envvar, expose_value=False, callback=callback, help=f"{help}  [env: {envvar}]", **kwargs
    )


def state_options(function: F) -> F:
    """Options saying where run history lives: --config, --db-url, --db-retry, --artifacts-dir."""
    options = [
        app_option(
            "--config",
            attribute="config_file",
            envvar="WTFLOW_CONFIG",
            type=click.Path(path_type=Path, dir_okay=False),
            help="INI file with [database], [storage] and [run] sections.",
        ),
        app_option(
            "--db-url",
            attribute="db_url",
            envvar="WTFLOW_DB_URL",
            help="sqlite:///path or postgresql://user@host/db; empty for none.  [default: sqlite:///.wtflow/wtflow.db]",
        ),
        app_option(
            "--db-retry",
            attribute="db_retry",
            envvar="WTFLOW_DB_RETRY",
            type=click.FloatRange(min=0),
            help="Seconds to keep retrying rows after the run if the database went away.  [default: 30]",
        ),
        app_option(
            "--artifacts-dir",
            attribute="artifacts_dir",
            envvar="WTFLOW_ARTIFACTS_DIR",
            type=click.Path(path_type=Path, file_okay=False),
            help="Where runs keep their output.  [default: .wtflow/artifacts]",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def log_options(function: F) -> F:
    """Options for wtflow's own logs: --log-format, --log-level."""
    function = app_option(
        "--log-level",
        attribute="log_level",
        envvar="WTFLOW_LOG_LEVEL",
        type=click.Choice(LEVELS, case_sensitive=False),
        help="Least severe log level shown.  [default: info]",
    )(function)
    return app_option(
        "--log-format",
        attribute="log_format",
        envvar="WTFLOW_LOG_FORMAT",
        convert=LogFormat,
        type=click.Choice([f.value for f in LogFormat]),
        default="auto",
        help="auto: readable on a terminal, JSON lines otherwise.",
    )(function)


@click.group(
    cls=WtflowGroup,
    # Options without an explicit variable get one too: WTFLOW_<COMMAND>_<OPTION>, e.g. WTFLOW_RUNS_LIST_LIMIT.
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "WTFLOW", "show_default": True},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(__version__, prog_name="wtflow")
@click.pass_context
def main(ctx: click.Context) -> None:
    r"""Wtflow runs workflows of shell commands and Python functions.

    \b
    Quick start:
      wtflow run                 run wtflow.yml of this directory
      wtflow runs list           what ran, newest first
    """
    ctx.ensure_object(App)


# -- run ----------------------------------------------------------------------------------


def _load(path: Path | None, workflow: str | None) -> Any:
    from wtflow import loader

    file = loader.find_file(path)
    selected = loader.select(loader.load_file(file), workflow, file)
    # What is loaded now lives for the whole command: keep the garbage collector from walking it.
    gc.freeze()
    return selected


@main.command(epilog="\b\nExamples:\n  wtflow run\n  wtflow run ci.yml --target unit --output grouped\n"
              "  wtflow run --dry-run\n\n" + EXIT_CODES_HELP)  # fmt: skip
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
    "--max-parallel",
    attribute="max_parallel",
    envvar="WTFLOW_MAX_PARALLEL",
    type=click.IntRange(min=1),
    help="Nodes running at once, at most.",
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
    type=click.FloatRange(min=0),
    help="Seconds between SIGTERM and SIGKILL when stopping nodes.  [default: 10]",
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
    type=click.Choice(["interleaved", "prefixed", "grouped", "quiet"]),
    envvar="WTFLOW_OUTPUT",
    help="How node output is shown.  [default: prefixed when nodes can run in parallel, else interleaved] "
    "[env: WTFLOW_OUTPUT]",
)
@state_options
@log_options
@pass_app
def run(  # noqa: PLR0917 - click passes each option positionally
    app: App, path: Path | None, workflow: str | None, targets: Sequence[str], dry_run: bool, output: str | None
) -> None:
    """Run the workflow in PATH (a file, or a directory with wtflow.yml; default: this directory)."""
    from wtflow.db import recorder
    from wtflow.graph import stages, subset

    try:
        app.configure_logging()
        config = app.config()
        if config.db.url and not dry_run:
            recorder.prestart(config.db.url)  # the database writer connects while the workflow loads
        else:
            recorder.discard_prestarted()  # the spare writer wtflow.entry started is not needed
        loaded = _load(path, workflow)
        target_list = [name for target in targets for name in target.split()]
        if target_list:
            loaded = subset(loaded, target_list)
        if dry_run:
            from wtflow.engine import secrets_masker

            _print_plan(loaded, config, secrets_masker(loaded, config))
            return
        parallel = any(len(stage) > 1 for stage in stages(loaded))
        # Under GitHub Actions each node's output goes in a ::group:: block by default.
        default = "grouped" if os.environ.get("GITHUB_ACTIONS") == "true" else "prefixed" if parallel else "interleaved"
        mode = output or default
        app.prepare_state_dir(config)
        code = _run(loaded, config, app, mode)
    finally:
        recorder.discard_prestarted()  # writers the run did not take (no database, or it stopped before opening)
    sys.exit(code)


def _print_plan(workflow: Any, config: Config, masker: Any) -> None:
    from wtflow.graph import stages
    from wtflow.model import Command

    cap = config.run.max_parallel or workflow.max_parallel
    click.echo(f"workflow {workflow.name!r}: {len(workflow.nodes)} nodes" + (f", at most {cap} at once" if cap else ""))
    for number, stage in enumerate(stages(workflow), start=1):
        together = "  (in parallel)" if len(stage) > 1 else ""
        click.echo(f"  {number:>3}. {', '.join(stage)}{together}")
    click.echo("commands:")
    for name, node in workflow.nodes.items():
        executable = node.executable
        if executable is None:
            continue
        what = executable.cmd if isinstance(executable, Command) else f"function {executable.name}"
        click.echo(masker.text(f"  {name}: {what if isinstance(what, str) else ' '.join(what)}"))


def _run(workflow: Any, config: Config, app: App, mode: str) -> int:
    from wtflow.engine import Engine, secrets_masker
    from wtflow.events import Observer
    from wtflow.observers.console import OutputMode, console_observer
    from wtflow.observers.logs import LogObserver

    json_output = app.log_format_given and app.log_format is LogFormat.JSON
    observers: list[Observer] = [LogObserver(output=json_output and mode != "quiet")]
    github = os.environ.get("GITHUB_ACTIONS") == "true"
    if github:
        from wtflow.observers.console import GroupedPrinter
        from wtflow.observers.github import GitHubObserver

        grouped = GroupedPrinter(github=True) if not json_output and mode == "grouped" else None
        observers.append(
            GitHubObserver(secrets_masker(workflow, config), annotate=grouped.annotate if grouped else None)
        )
        if grouped is not None:
            observers.append(grouped)
    if not (json_output or (github and mode == "grouped")) and (printer := console_observer(OutputMode(mode))):
        observers.append(printer)
    from wtflow.orphans import adopting_orphans

    # Adopt processes that escape their node (setsid, double fork) so the run can stop them.
    with adopting_orphans() as adopting:
        engine = Engine(workflow, config, observers=observers, stop_orphans=adopting)
        try:
            return run_interruptibly(engine)
        finally:
            if engine.warnings:
                import structlog

                for warning in engine.warnings:
                    structlog.get_logger("wtflow").warning("database_rows_lost", message=warning)


def run_interruptibly(engine: Any) -> int:
    """Run ``engine``; SIGINT or SIGTERM stops it cleanly (exit 130 or 143), a second one at once."""
    received: list[int] = []

    async def main() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(number: int) -> None:
            received.append(number)
            if len(received) == 1:
                task.cancel()  # stop the run: nodes get SIGTERM, then SIGKILL after the grace period
            elif engine.scheduler is not None:
                engine.scheduler.kill()  # a second signal: SIGKILL now

        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, on_signal, number)
        try:
            result: int = await engine.run_async()
            return result
        finally:
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(number)

    _raise_open_files_limit()
    try:
        with _pidfd_child_watcher():
            return asyncio.run(main())
    except asyncio.CancelledError:
        if not received:
            raise
        name = signal.Signals(received[0]).name
        raise Interrupted(f"interrupted by {name}", signal_number=received[0]) from None


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


@main.command(hidden=True)
@click.pass_context
def action(ctx: click.Context) -> None:
    """Run as the GitHub Action: the options come from INPUT_* variables (hyphens kept)."""
    environ = os.environ

    def given(name: str) -> str:
        return environ.get(f"INPUT_{name.upper()}", "").strip()

    args = [given("workflow-file") or "wtflow.yml", "--artifacts-dir", given("artifacts-dir") or "wtflow-artifacts"]
    for name, flag in (("workflow", "--workflow"), ("db-url", "--db-url"), ("max-parallel", "--max-parallel")):
        if given(name):
            args += [flag, given(name)]
    args += [item for target in given("targets").split() for item in ("--target", target)]
    if given("ignore-failure").lower() in {"1", "true", "yes"}:
        args.append("--ignore-failure")
    if given("log-format"):
        args += ["--log-format", given("log-format")]
    args += shlex.split(given("args"))
    ctx.invoke(run, **run.make_context("run", args, parent=ctx.parent).params)


# -- inspecting workflow files --------------------------------------------------------------


@main.command("list", epilog="\b\nExample:\n  wtflow list examples/ci.yml")
@click.argument("path", required=False, type=click.Path(path_type=Path))
def list_(path: Path | None) -> None:
    """List the workflows in PATH and their nodes, as a tree."""
    from wtflow import loader

    file = loader.find_file(path)
    for workflow in loader.load_file(file):
        click.echo(f"{workflow.name}  ({len(workflow.nodes)} nodes, {file})")
        _print_tree(workflow.root, "  ")


def _print_tree(node: Any, indent: str) -> None:
    from wtflow.model import Command

    executable = node.executable
    if executable is None:
        kind = "group" + (", parallel" if node.parallel else "")
    elif isinstance(executable, Command):
        kind = "command" + (", parallel children" if node.parallel else "")
    else:
        kind = f"function {executable.name}"
    needs = f", needs {', '.join(node.needs)}" if node.needs else ""
    click.echo(f"{indent}{node.name}  [{kind}{needs}]")
    for child in node.children:
        _print_tree(child, indent + "  ")


@main.command(epilog="\b\nExample:\n  wtflow validate wtflow.yml ci/*.yml\n\n" + EXIT_CODES_HELP)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def validate(paths: Sequence[Path]) -> None:
    """Check workflow files without running anything (default: this directory's)."""
    from wtflow import loader
    from wtflow.errors import WorkflowError

    failed = False
    targets: list[Path | None] = list(paths) or [None]
    for path in targets:
        try:
            file = loader.find_file(path)
            workflows = loader.load_file(file)
        except WorkflowError as exc:
            click.echo(str(exc), err=True)
            failed = True
            continue
        for workflow in workflows:
            click.echo(f"{file}: ok: workflow {workflow.name!r}, {len(workflow.nodes)} nodes")
    if failed:
        sys.exit(UsageError.exit_code)


@main.command(epilog="\b\nExamples:\n  wtflow graph > graph.mmd\n  wtflow graph --format dot | dot -Tsvg > graph.svg")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("-w", "--workflow", envvar="WTFLOW_WORKFLOW", help="Which workflow of the file.")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
def graph(path: Path | None, workflow: str | None, fmt: str) -> None:
    """Print the workflow's graph as Mermaid or Graphviz DOT."""
    from wtflow.graph import dot, mermaid

    loaded = _load(path, workflow)
    click.echo(mermaid(loaded) if fmt == "mermaid" else dot(loaded), nl=False)


@main.command(epilog="\b\nExample (VS Code, YAML extension):\n  wtflow schema > .wtflow/schema.json\n"
              '  # then in settings: "yaml.schemas": {".wtflow/schema.json": "wtflow.yml"}')  # fmt: skip
def schema() -> None:
    """Print the JSON Schema of workflow files, for editors and validators."""
    from wtflow.spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


# -- run history ----------------------------------------------------------------------------


@main.group(cls=WtflowGroup)
def runs() -> None:
    """Read the history of runs from the database."""


def _history_engine(app: App) -> Any:
    from wtflow.db.history import open_history

    url = app.config().db.url
    if not url:
        raise UsageError("no database configured: set --db-url or WTFLOW_DB_URL")
    return open_history(url)


def _duration(start: Any, end: Any) -> str:
    if start is None or end is None:
        return "-"
    seconds = (end - start).total_seconds()
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@runs.command("list", epilog="\b\nExample:\n  wtflow runs list --status failed --limit 5")
@click.option("--workflow", "workflow_name", help="Only runs of this workflow.")
@click.option("--status", type=click.Choice(["running", "succeeded", "failed", "cancelled", "crashed"]))
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@state_options
@pass_app
def runs_list(app: App, workflow_name: str | None, status: str | None, limit: int) -> None:
    """List runs, newest first."""
    from wtflow.db.history import list_runs

    engine = _history_engine(app)
    try:
        found = list_runs(engine, workflow=workflow_name, status=status, limit=limit)
    finally:
        engine.dispose()
    if not found:
        click.echo("no runs yet" if workflow_name is None and status is None else "no matching runs")
        return
    _table(
        ["RUN ID", "WORKFLOW", "STATUS", "EXIT", "STARTED", "DURATION"],
        [
            [
                r.id,
                r.workflow,
                r.status,
                "-" if r.exit_code is None else str(r.exit_code),
                r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                _duration(r.started_at, r.finished_at),
            ]
            for r in found
        ],
    )


@runs.command("show", epilog="\b\nExample:\n  wtflow runs show 20261129T0102")
@click.argument("run_id")
@state_options
@pass_app
def runs_show(app: App, run_id: str) -> None:
    """Show a run's nodes with status, exit code, duration and artifacts (RUN_ID may be a prefix)."""
    from wtflow.db.history import get_run

    engine = _history_engine(app)
    try:
        run_row = get_run(engine, run_id)
    finally:
        engine.dispose()
    click.echo(f"run       {run_row.id}")
    click.echo(f"workflow  {run_row.workflow}")
    code = "-" if run_row.exit_code is None else run_row.exit_code
    click.echo(f"status    {run_row.status} (exit {code}), {_duration(run_row.started_at, run_row.finished_at)}")
    click.echo(f"host      {run_row.host}, pid {run_row.pid}")
    click.echo("")
    _table(
        ["NODE", "STATUS", "EXIT", "DURATION", "ARTIFACTS"],
        [
            [
                node.path,
                node.status + (f" (attempt {node.attempts})" if node.attempts > 1 else ""),
                "-" if node.exit_code is None else str(node.exit_code),
                _duration(node.started_at, node.finished_at),
                ", ".join(f"{a.name} {a.size}B" for a in node.artifacts) or "-",
            ]
            for node in run_row.nodes
        ],
    )
    errors = [node for node in run_row.nodes if node.error]
    for node in errors:
        click.echo(f"\n{node.name}: {node.error}")


@runs.command("logs", epilog="\b\nExample:\n  wtflow runs logs 20261129T0102 unit --stderr")
@click.argument("run_id")
@click.argument("node")
@click.option("--stderr", "show_stderr", is_flag=True, help="Show stderr instead of stdout.")
@state_options
@pass_app
def runs_logs(app: App, run_id: str, node: str, show_stderr: bool) -> None:
    """Print a node's stored output (stdout, or stderr with --stderr)."""
    from wtflow.db.history import artifact_path, get_run

    engine = _history_engine(app)
    try:
        run_row = get_run(engine, run_id)
    finally:
        engine.dispose()
    path = artifact_path(run_row, node, "stderr" if show_stderr else "stdout")
    try:
        with path.open("rb") as source:
            sys.stdout.flush()
            shutil.copyfileobj(source, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}; the artifacts may have been removed") from None


def entry() -> None:
    """The ``wtflow`` command: :func:`main`, then a quick exit.

    When a command returns, its output is written and its processes, files and database writer
    are closed; what is left is the interpreter freeing every module, which no one needs to wait
    for. Streams are flushed, then the process ends at once.
    """
    try:
        main(prog_name="wtflow")
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            click.echo(exc.code, err=True)
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    for stream in (sys.stdout, sys.stderr):  # click and the printers flush; this is the safety net
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)
