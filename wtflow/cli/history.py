"""``wtflow runs``: the history of runs, read back from the database."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wtflow.cli.options import App, WtflowGroup, pass_app, state_options
from wtflow.errors import UsageError

if TYPE_CHECKING:  # the database modules load when a command needs them
    from wtflow.db.history import NodeRecord


@click.group(cls=WtflowGroup)
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
    return _seconds((end - start).total_seconds())


def _seconds(seconds: float) -> str:
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


# What `--workflow` means where a run is named, and what the RUN_ID argument may be.
_WORKFLOW_OF_RUN = click.option("--workflow", "workflow_name", help="Name a run among this workflow's runs only.")
_RUN_IDS = (
    "RUN_ID is a run's id, a unique prefix of it, its random suffix (the part after '-') or a prefix of that, "
    "'latest' (the newest run) or 'latest~N' (the N-th run before the newest)."
)


def _read_run(app: App, run_id: str, workflow_name: str | None) -> Any:
    from wtflow.db.history import get_run

    engine = _history_engine(app)
    try:
        return get_run(engine, run_id, workflow=workflow_name)
    finally:
        engine.dispose()


@runs.command(
    "show",
    epilog=f"{_RUN_IDS}\n\n\b\nExamples:\n  wtflow runs show\n  wtflow runs show bc6362ac\n"
    "  wtflow runs show latest~1 --workflow ci",
)
@click.argument("run_id", default="latest")
@_WORKFLOW_OF_RUN
@state_options
@pass_app
def runs_show(app: App, run_id: str, workflow_name: str | None) -> None:
    """Show a run (the newest by default): its nodes, their artifacts and outputs, and why any failed."""
    run_row = _read_run(app, run_id, workflow_name)
    click.echo(f"run       {run_row.id}")
    click.echo(f"workflow  {run_row.workflow}")
    code = "-" if run_row.exit_code is None else run_row.exit_code
    click.echo(f"status    {run_row.status} (exit {code}), {_duration(run_row.started_at, run_row.finished_at)}")
    click.echo(f"host      {run_row.host}, pid {run_row.pid}")
    click.echo("")
    taken = [node for node in run_row.nodes if node.status in _TAKEN]
    on_workers = any(node.worker for node in run_row.nodes)
    rows = [
        [
            node.path,
            node.status + (f" (attempt {node.attempts})" if node.attempts > 1 else ""),
            "-" if node.exit_code is None else str(node.exit_code),
            _duration(node.started_at, node.finished_at),
            ", ".join(f"{a.name} {a.size}B" for a in node.artifacts) or "-",
        ]
        for node in run_row.nodes
    ]
    headers = ["NODE", "STATUS", "EXIT", "DURATION", "ARTIFACTS"]
    if taken:  # the column only for runs where a node took a result instead of running
        for row, node in zip(rows, run_row.nodes, strict=True):
            row.insert(4, "-" if node.status not in _TAKEN or node.saved is None else _seconds(node.saved))
        headers.insert(4, "SAVED")
    if on_workers:  # the column only for runs where a node ran on a cluster's worker
        for row, node in zip(rows, run_row.nodes, strict=True):
            row.insert(-1, node.worker or "-")
        headers.insert(-1, "WORKER")
    _table(headers, rows)
    _show_critical_path(app, run_row)
    if taken:
        _show_saved(taken)
    _show_outputs(run_row.nodes)
    for node in run_row.nodes:
        if node.error:
            click.echo(f"\n{node.name}: {node.error}")
        elif node.failed:
            _show_failure_output(node)


def _show_critical_path(app: App, run_row: Any) -> None:
    from wtflow.report import history_critical_path

    path = history_critical_path(run_row, app.config().storage.artifacts_dir)
    # Only from what waited for what (the run's report keeps it): guessed by time, it could name a group.
    if path.steps and not path.by_time:
        click.echo(f"\ncritical path: {path.describe()}")


# Statuses of nodes that did not run but took a result: from the cache, or from an earlier run.
_TAKEN = frozenset({"cached", "reused"})


def _show_saved(taken: Sequence[NodeRecord]) -> None:
    """The time cached and reused nodes saved in all, and where reused nodes' results came from."""
    total = sum(node.saved or 0.0 for node in taken)
    cached = sum(1 for node in taken if node.status == "cached")
    sources: dict[str | None, int] = {}
    for node in taken:
        if node.status == "reused":
            sources[node.reused_from] = sources.get(node.reused_from, 0) + 1
    parts = [f"{count} reused" + (f" from run {source}" if source else "") for source, count in sources.items()]
    if cached:
        parts.append(f"{cached} cached")
    click.echo(f"\nsaved {_seconds(total)} by cached and reused nodes: {', '.join(parts)}")


# How much of an output's value `runs show` prints: the rest is cut, and the cut said.
_OUTPUT_LINES = 5
_OUTPUT_CHARS = 200


def _show_outputs(nodes: Sequence[NodeRecord]) -> None:
    """The outputs nodes wrote, ``node: key=value``, a value's further lines indented below it; nothing if none did."""
    if not any(node.outputs for node in nodes):
        return
    click.echo("\noutputs:")
    for node in nodes:
        for key, value in node.outputs.items():
            first, *rest = _value_lines(value)
            click.echo(f"  {node.name}: {key}={first}")
            for line in rest:
                click.echo(f"    {line}")


def _value_lines(value: str) -> list[str]:
    """``value`` as shown: its first lines up to a length, then how many characters were left out."""
    kept = "".join(value.splitlines(keepends=True)[:_OUTPUT_LINES])[:_OUTPUT_CHARS]
    lines = kept.splitlines() or [""]
    left_out = len(value) - len(kept)
    if left_out:
        lines[-1] += f" ... (cut: {left_out} more character{'s' if left_out > 1 else ''})"
    return lines


_FAILURE_LINES = 10


def _show_failure_output(node: NodeRecord) -> None:
    """The last lines of a failed node's stderr, else of its stdout: what a command that only exited non-zero said."""
    from wtflow.db.history import failure_output

    how = node.status.replace("_", " ") + ("" if node.exit_code is None else f", exit {node.exit_code}")
    try:
        found = failure_output(node, _FAILURE_LINES)
    except OSError:
        click.echo(f"\n{node.name} ({how}): (output removed)")
        return
    if found is None:
        click.echo(f"\n{node.name} ({how}): (no output)")
        return
    stream, lines = found
    click.echo(f"\n{node.name} ({how}), the last {len(lines)} line{'s' if len(lines) > 1 else ''} of its {stream}:")
    for line in lines:
        click.echo(f"  {line}".rstrip())


@runs.command(
    "logs",
    epilog=f"{_RUN_IDS}\n\n\b\nExamples:\n  wtflow runs logs 20261129T0102 unit --stderr\n"
    "  wtflow runs logs latest unit --attempt 1\n  wtflow runs logs bc6362ac build --artifact wheel",
)
@click.argument("run_id")
@click.argument("node")
@click.option("--stderr", "show_stderr", is_flag=True, help="Show stderr instead of stdout.")
@click.option(
    "--attempt",
    type=click.IntRange(min=1),
    help="The output of this attempt (1 is the first) of a retried node; the last attempt by default.",
)
@click.option(
    "--artifact",
    "artifact_name",
    metavar="NAME",
    help="A declared file artifact: its bytes if it is one file, else the list of its files.",
)
@_WORKFLOW_OF_RUN
@state_options
@pass_app
def runs_logs(  # noqa: PLR0917 - click passes each option positionally
    app: App,
    run_id: str,
    node: str,
    show_stderr: bool,
    attempt: int | None,
    artifact_name: str | None,
    workflow_name: str | None,
) -> None:
    """Print a node's stored output (stdout; stderr, a retried attempt's, or a declared file artifact on request)."""
    from wtflow.db.history import artifact_path, attempt_path

    if artifact_name is not None and (show_stderr or attempt is not None):
        raise UsageError("--artifact shows a file artifact: it cannot be combined with --stderr or --attempt")
    run_row = _read_run(app, run_id, workflow_name)
    stream = "stderr" if show_stderr else "stdout"
    if artifact_name is not None:
        path = artifact_path(run_row, node, artifact_name)
        if not path.is_file():
            _show_artifact_files(path, artifact_name)
            return
    elif attempt is not None:
        path = attempt_path(run_row, node, stream, attempt)
    else:
        path = artifact_path(run_row, node, stream)
    _copy_out(path)


def _copy_out(path: Path) -> None:
    try:
        with path.open("rb") as source:
            sys.stdout.flush()
            shutil.copyfileobj(source, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}; the artifacts may have been removed") from None


def _show_artifact_files(path: Path, name: str) -> None:
    """A declared file artifact's one file, printed; or its files, listed (and a line on stderr to say so)."""
    from wtflow.db.history import artifact_files

    try:
        files = artifact_files(path)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}; the artifacts may have been removed") from None
    if len(files) == 1:
        _copy_out(path / files[0])
        return
    if not files:
        click.echo(f"artifact {name!r} holds no files", err=True)
        return
    click.echo(f"artifact {name!r} holds {len(files)} files, listed here; they are under {path}", err=True)
    for file in files:
        click.echo(file)
