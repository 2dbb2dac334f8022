"""Observers: everything that listens to a run's events (console, run files, logs, GitHub).

The database's observer lives with the database, in :mod:`wtflow.db.recorder`; what a run
records by default is chosen in :mod:`wtflow.defaults`. :func:`shown_observers` chooses what
``wtflow run`` shows of a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wtflow.events import Observer
    from wtflow.masking import Masker


def shown_observers(
    mode: str, *, json_logs: bool, github: bool, masker: Masker, terminal: bool = False
) -> list[Observer]:
    """What shows a run as it goes: log lines, the nodes' output in ``mode``, GitHub's summary and annotations.

    ``mode`` is ``interleaved``, ``prefixed``, ``grouped`` or ``quiet``. With ``json_logs`` the
    output goes into the JSON log lines instead (unless quiet); under GitHub Actions (``github``)
    grouped output goes into ``::group::`` blocks with the annotations between them. For a person
    at a ``terminal`` the run ends with a table of its nodes.
    """
    from wtflow.observers.console import GroupedPrinter, OutputMode, SummaryTable, console_observer
    from wtflow.observers.logs import LogObserver

    observers: list[Observer] = [LogObserver(output=json_logs and mode != "quiet")]
    if terminal and not json_logs:
        observers.append(SummaryTable())
    if github:
        from wtflow.observers.github import GitHubObserver

        grouped = GroupedPrinter(github=True, masker=masker) if not json_logs and mode == "grouped" else None
        observers.append(GitHubObserver(masker, annotate=grouped.annotate if grouped else None))
        if grouped is not None:
            observers.append(grouped)
    if not (json_logs or (github and mode == "grouped")) and (printer := console_observer(OutputMode(mode), masker)):
        observers.append(printer)
    return observers
