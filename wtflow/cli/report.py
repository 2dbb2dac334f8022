"""``wtflow report``: a recorded run's HTML report, from the database or from the run's directory alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wtflow.cli.options import App, pass_app, state_options
from wtflow.errors import UsageError

if TYPE_CHECKING:
    from wtflow.masking import Masker

_RUN = (
    "RUN is a run's directory (holding run.json and events.jsonl, as a CI job's uploaded artifacts do), or a run "
    "in the database: its id, a unique prefix of it, its random suffix (the part after '-') or a prefix of that, "
    "'latest' (the newest run) or 'latest~N' (the N-th run before the newest)."
)


@click.command(
    "report",
    epilog=f"{_RUN}\n\n\b\nExamples:\n  wtflow report\n  wtflow report bc6362ac -o failed-run.html\n"
    "  wtflow report wtflow-artifacts/20261129T010212123456Z-1a2b3c4d",
)
@click.argument("run", default="latest")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the report here.  [default: report.html in the run's directory]",
)
@click.option("--workflow", "workflow_name", help="Name a run among this workflow's runs only.")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    envvar="WTFLOW_SECRET",
    help="Mask the value of this environment variable (***) in the report; repeatable.  [env: WTFLOW_SECRET]",
)
@state_options
@pass_app
def report(app: App, run: str, output: Path | None, workflow_name: str | None, secrets: tuple[str, ...]) -> None:
    """Write the HTML report of a run (the newest by default) and print where it went.

    One file that opens from disk: header, timeline, critical path, dependency graph, and each
    node's logs (their last 64 KiB) and artifacts.
    """
    from wtflow.masking import Masker
    from wtflow.report import REPORT_FILE, write_report

    names = [name for value in secrets for name in value.split()]
    masker = Masker([os.environ[name] for name in names if os.environ.get(name)])
    password = app.config().db.password
    if password:
        masker.add(password)
    directory = Path(run)
    view = _from_directory(directory, masker) if directory.is_dir() else _from_history(app, run, workflow_name, masker)
    if output is None:  # beside the run's files; here if they are gone
        output = Path(f"report-{view.run_id}.html") if view.run_dir is None else view.run_dir / REPORT_FILE
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        written = write_report(view, output, masker)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {output}: {exc.strerror or exc}") from None
    click.echo(str(written))


def _from_directory(directory: Path, masker: Masker) -> Any:
    from wtflow.report import read_run_dir

    try:
        view = read_run_dir(directory.absolute(), masker)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the run in {directory}: {exc}") from None
    if view is None:
        raise UsageError(f"{directory} is not a run's directory: it holds no run.json nor events.jsonl")
    return view


def _from_history(app: App, run_id: str, workflow_name: str | None, masker: Masker) -> Any:
    from wtflow.db.history import get_run, open_history
    from wtflow.report import from_history, history_run_dir

    config = app.config()
    if not config.db.url:
        raise UsageError("no database configured: set --db-url or WTFLOW_DB_URL, or name a run's directory")
    engine = open_history(config.db.url)
    try:
        record = get_run(engine, run_id, workflow=workflow_name)
    finally:
        engine.dispose()
    return from_history(record, history_run_dir(record, config.storage.artifacts_dir), masker)
