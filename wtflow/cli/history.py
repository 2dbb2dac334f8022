"""``wtflow runs``: the history of runs, read back from the database."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from typing import Any

import click

from wtflow.cli.options import App, WtflowGroup, pass_app, state_options
from wtflow.errors import UsageError


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
