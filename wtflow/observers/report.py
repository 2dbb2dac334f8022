"""Writes a run's HTML report, ``<run dir>/report.html``, when the run ends (see :mod:`wtflow.report`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wtflow.events import BaseObserver, Event, NodeOutput, RunFinished, RunStarted, to_record
from wtflow.masking import Masker
from wtflow.report import REPORT_FILE, from_records, git_commit, graph_of, write_report

if TYPE_CHECKING:
    from wtflow.model import Workflow


class ReportWriter(BaseObserver):
    """Keeps the run's events (not its output, which is in the artifacts) and writes the report at the end.

    The report goes to ``path``, else ``report.html`` in the run's directory; its texts go
    through ``masker`` (give it the run's, which learns what nodes announce). It embeds what
    each node waited for, from the workflow, and the git commit checked out where the
    workflow file is (else the current directory) when the run started. A report that cannot
    be written is a warning after the run, not a failure of it.
    """

    def __init__(self, path: Path | None = None, masker: Masker | None = None) -> None:
        self.path = path
        self.masker = masker or Masker()
        self.written: Path | None = None  # where the report went, once written
        self._workflow: Workflow | None = None
        self._run_dir: Path | None = None
        self._records: list[dict[str, Any]] = []
        self._commit: asyncio.Future[str | None] | None = None
        self._writing: asyncio.Future[None] | None = None
        self._warnings: list[str] = []

    def notify(self, event: Event) -> None:
        """Keep the event; at the run's start, look up the git commit in a thread; at its end, start writing."""
        if isinstance(event, NodeOutput):
            return
        if isinstance(event, RunStarted):
            self._workflow, self._run_dir = event.workflow, event.run_dir
            directory = event.workflow.base_dir or Path.cwd()
            self._commit = asyncio.get_running_loop().run_in_executor(None, git_commit, directory)
        self._records.append(to_record(event))
        if isinstance(event, RunFinished):  # the last event: written while the other observers close
            self._writing = asyncio.ensure_future(self._write_report())

    async def aclose(self) -> None:
        """Write the report (in a thread: it reads every node's log tails), unless it is being written already."""
        if self._writing is None:
            self._writing = asyncio.ensure_future(self._write_report())
        await self._writing

    async def _write_report(self) -> None:
        if self._workflow is None or self._run_dir is None:
            return
        commit = await self._commit if self._commit is not None else None
        if not self._run_dir.is_dir():
            return  # the run could not start: its directory was never made
        target = self.path or self._run_dir / REPORT_FILE
        try:
            self.written = await asyncio.to_thread(self._write, self._workflow, target, commit)
        except OSError as exc:
            self._warnings.append(f"the report {target} could not be written: {exc.strerror or exc}")

    def _write(self, workflow: Workflow, target: Path, commit: str | None) -> Path | None:
        view = from_records(self._records, self._run_dir)
        if view is None:  # the records hold the run's start: only a run that never started has none
            return None
        view.graph = graph_of(workflow)
        view.commit = commit
        view.nodes = {name: view.nodes[name] for name in workflow.nodes if name in view.nodes} | view.nodes
        return write_report(view, target, self.masker)

    def warnings(self) -> list[str]:
        """The report, if it could not be written."""
        return list(self._warnings)
