"""Observers: everything that listens to a run's events (console, run files, logs, GitHub).

The database's observer lives with the database, in :mod:`wtflow.db.recorder`; what a run
records by default is chosen in :mod:`wtflow.defaults`. :func:`shown_observers` chooses what
``wtflow run`` shows of a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wtflow.events import NodeFinished, Observer
    from wtflow.masking import Masker
    from wtflow.model import Workflow


def shown_observers(
    mode: str,
    *,
    json_logs: bool,
    github: bool,
    masker: Masker,
    terminal: bool = False,
    progress: bool = False,
) -> list[Observer]:
    """What shows a run as it goes: log lines, the nodes' output in ``mode``, GitHub's summary and annotations.

    ``mode`` is ``interleaved``, ``prefixed``, ``grouped`` or ``quiet``. With ``json_logs`` the
    output goes into the JSON log lines instead (unless quiet); under GitHub Actions (``github``)
    grouped output goes into ``::group::`` blocks with the annotations between them. For a person
    at a ``terminal`` the run ends with a table of its nodes; with ``progress`` a live region at
    the bottom of the terminal shows the running nodes and counts, and that table and the
    critical path replace it at the end.
    """
    from wtflow.observers.console import GroupedPrinter, OutputMode, SummaryTable, console_observer
    from wtflow.observers.logs import LogObserver

    observers: list[Observer] = [LogObserver(output=json_logs and mode != "quiet")]
    if terminal and not json_logs and not progress:
        observers.append(SummaryTable())
    if github:
        from wtflow.observers.github import GitHubObserver

        grouped = GroupedPrinter(github=True, masker=masker) if not json_logs and mode == "grouped" else None
        observers.append(GitHubObserver(masker, annotate=grouped.annotate if grouped else None))
        if grouped is not None:
            observers.append(grouped)
    if not (json_logs or (github and mode == "grouped")) and (printer := console_observer(OutputMode(mode), masker)):
        observers.append(printer)
    if progress:  # last: it closes once the printers have printed everything
        from wtflow.observers.progress import ProgressDisplay

        observers.append(ProgressDisplay(force_terminal=True, critical_path=_critical_path))
    return observers


def _critical_path(workflow: Workflow, finished: Mapping[str, NodeFinished]) -> list[str]:
    """The names along the run's critical path, for the progress region's last lines."""
    from wtflow.critical import of_run

    times = {name: (event.started_at, event.finished_at) for name, event in finished.items()}
    starts = [event.started_at for event in finished.values() if event.started_at is not None]
    if not starts:
        return []
    ends = [event.finished_at for event in finished.values()]
    return [step.name for step in of_run(times, min(starts), max(ends), workflow=workflow).steps]
