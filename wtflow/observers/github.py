"""GitHub Actions: step outputs, a step summary, error annotations (under ``GITHUB_ACTIONS=true``).

- ``$GITHUB_OUTPUT`` gets ``run-id``, ``status`` and ``artifacts-dir``;
- ``$GITHUB_STEP_SUMMARY`` gets a table of nodes (status, duration, exit code), a Mermaid graph
  coloured by status, the Markdown each node wrote to its own ``$WTFLOW_STEP_SUMMARY`` (under
  the node's heading) and the last lines of each failed node's stdout and stderr, kept under 1 MiB;
- each failed node gets an ``::error title=...::`` annotation.
Node output itself is printed in ``::group::`` blocks by :class:`~wtflow.observers.console.GroupedPrinter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from wtflow.artifacts import last_lines
from wtflow.critical import of_run
from wtflow.events import BaseObserver, Event, NodeFinished, RunFinished, RunStarted
from wtflow.graph import mermaid
from wtflow.masking import Masker
from wtflow.model import STDERR, STDOUT, Workflow

SUMMARY_LIMIT = 1 << 20  # GitHub refuses step summaries over 1 MiB
TAIL_LINES = 20
SUMMARY_FILE = "summary.md"  # in the node's directory; $WTFLOW_STEP_SUMMARY names it
_ICONS = {
    "succeeded": "✅",
    "failed": "❌",
    "timed_out": "⏱️",
    "cancelled": "🚫",
    "skipped": "⏭️",
    "cached": "♻️",
    "reused": "♻️",
}


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub requires."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value, escaped as GitHub requires."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _print(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


class GitHubObserver(BaseObserver):
    """Writes what GitHub Actions shows of a run; a no-op outside Actions."""

    def __init__(
        self,
        masker: Masker | None = None,
        environ: dict[str, str] | None = None,
        annotate: Callable[[str], None] | None = None,
    ) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        # Where ::error lines go: stdout, or the grouped printer, so none lands inside a group.
        self.annotate = annotate or _print
        self.masker = masker or Masker()
        self.workflow: Workflow | None = None
        self.run_dir: Path | None = None
        self.finished: dict[str, NodeFinished] = {}
        self.result: RunFinished | None = None

    def notify(self, event: Event) -> None:
        """Annotate failures as they happen; keep what the summary needs."""
        if isinstance(event, RunStarted):
            self.workflow, self.run_dir = event.workflow, event.run_dir
        elif isinstance(event, NodeFinished):
            self.finished[event.node] = event
            if event.status.is_failure and self.workflow and self.workflow.nodes[event.node].executable is not None:
                detail = self.masker.text(event.error or f"exit code {event.exit_code}")
                title = escape_property(f"wtflow: node {event.node} {event.status}")
                self.annotate(f"::error title={title}::{escape_data(detail)}\n")
        elif isinstance(event, RunFinished):
            self.result = event

    async def aclose(self) -> None:
        """Write the step outputs and the summary (in a thread: reading tails and writing files)."""
        await asyncio.to_thread(self.write_files)

    def write_files(self) -> None:
        """Append to ``$GITHUB_OUTPUT`` and ``$GITHUB_STEP_SUMMARY``."""
        if self.result is None or self.run_dir is None:
            return
        if output := self.environ.get("GITHUB_OUTPUT"):
            # Relative to the workspace when inside it: paths inside a Docker action's container
            # mean nothing to the steps that follow on the runner.
            artifacts_dir = self.run_dir.parent
            with contextlib.suppress(ValueError):
                artifacts_dir = artifacts_dir.relative_to(Path.cwd().resolve())
            with open(output, "a", encoding="utf-8") as handle:
                handle.write(f"run-id={self.result.run_id}\nstatus={self.result.status}\n")
                handle.write(f"artifacts-dir={artifacts_dir}\n")
        if summary := self.environ.get("GITHUB_STEP_SUMMARY"):
            text = self.summary()
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(text)

    def summary(self) -> str:
        """The step summary's Markdown, under :data:`SUMMARY_LIMIT` bytes."""
        assert self.result is not None
        assert self.workflow is not None
        result = self.result
        duration = (result.finished_at - result.started_at).total_seconds()
        parts = [
            f"## {_ICONS.get(str(result.status), '')} wtflow: {self.masker.text(result.workflow)} {result.status}\n\n",
            f"Run `{result.run_id}`, exit code {result.exit_code}, {duration:.1f} s.\n\n",
        ]
        critical = of_run(
            {name: (event.started_at, event.finished_at) for name, event in self.finished.items()},
            result.started_at,
            result.finished_at,
            workflow=self.workflow,
        )
        if critical.steps:
            parts.append(f"Critical path: {self.masker.text(critical.describe())}\n\n")
        parts.append("| node | status | duration | exit code |\n|---|---|---:|---:|\n")
        for name in self.workflow.nodes:
            event = self.finished.get(name)
            if event is None:
                continue
            seconds = f"{event.duration:.1f} s" if event.duration is not None else "-"
            if event.saved is not None:
                seconds += f" (saved {event.saved:.1f} s)"
            code = "-" if event.exit_code is None else str(event.exit_code)
            label = self.masker.text(name).replace("|", "\\|")
            parts.append(f"| {label} | {_ICONS.get(str(event.status), '')} {event.status} | {seconds} | {code} |\n")
        statuses = {name: str(event.status) for name, event in self.finished.items()}
        parts.append(f"\n```mermaid\n{self.masker.text(mermaid(self.workflow, statuses))}```\n")
        for name in self.workflow.nodes:
            event = self.finished.get(name)
            own = _node_summary(event) if event is not None else ""
            if own:
                parts.append(f"\n### {self.masker.text(name)}\n\n{self.masker.text(own)}\n")
        for name, event in self.finished.items():
            if not event.status.is_failure:
                continue
            for stream in (STDOUT, STDERR):
                path = next((info.path for info in event.artifacts if info.name == stream), None)
                tail = _tail(path, TAIL_LINES) if path is not None else ""
                if tail:
                    heading = f"{self.masker.text(name)}: last lines of {stream}"
                    parts.append(f"\n### {heading}\n\n```\n{self.masker.text(tail)}\n```\n")
        text = "".join(parts)
        if len(text.encode()) > SUMMARY_LIMIT:
            cut = text.encode()[: SUMMARY_LIMIT - 200].decode("utf-8", "ignore")
            text = cut + "\n\n(summary cut to stay under GitHub's 1 MiB limit; see the run's artifacts)\n"
        return text


def _node_summary(event: NodeFinished) -> str:
    """What the node wrote to its ``$WTFLOW_STEP_SUMMARY`` file (beside its output), at most 64 KiB of it."""
    stdout = next((info.path for info in event.artifacts if info.name == STDOUT), None)
    if stdout is None:
        return ""
    try:
        with open(stdout.with_name(SUMMARY_FILE), "rb") as handle:
            return handle.read(1 << 16).decode("utf-8", "replace").strip()
    except OSError:  # the node wrote none
        return ""


def _tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a stored stream; nothing if it is gone."""
    try:
        return "\n".join(last_lines(path, lines))
    except OSError:
        return ""
