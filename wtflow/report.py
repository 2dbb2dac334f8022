"""A run's HTML report: one file, its styles, scripts and data inline, that opens from disk with no network.

What it shows is built from a :class:`RunView` of the run, made from one of three sources:

- the run's events as :class:`~wtflow.observers.report.ReportWriter` kept them, with the workflow
  (:func:`from_records` and :func:`graph_of`): what each node waited for is the workflow's;
- a run's directory alone (:func:`read_run_dir`): ``run.json`` and ``events.jsonl``;
- the database's record of a run (:func:`from_history`), with the attempts of ``events.jsonl``
  when its directory is still there.

A recorded run keeps no dependencies of its own: the report embeds them (with the git commit the
run started from), and a report made again from the run reads them back from the earlier one
(:func:`recorded`). A run without an earlier report has its critical path found by time, and its
graph drawn from the node tree only. :func:`write_report` writes the page: the data as JSON, drawn
by the inline script of ``report_assets/``, and each log's text in a block of its own; logs are
cut to their last :data:`LOG_TAIL` bytes per stream (less when a run's logs exceed
:data:`LOG_BUDGET` in all), with links to the whole files, and every text goes through the run's
:class:`~wtflow.masking.Masker`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

from wtflow.critical import CriticalPath, Timing, critical_path, seconds, waits
from wtflow.graph import _drawn
from wtflow.masking import Masker

if TYPE_CHECKING:
    from wtflow.db.history import RunRecord
    from wtflow.model import Workflow

REPORT_FILE = "report.html"
LOG_TAIL = 64 * 1024  # the end of each stream the page holds
LOG_BUDGET = 8 << 20  # all streams of a run together; beyond it each gets an equal share, failed nodes first
FORMAT = 1  # of the embedded data; a report reads back graphs of its own format only
STREAMS = ("stdout", "stderr")
_SLOT = re.compile(r"\{\{([A-Z_]+)\}\}")  # in report_assets/report.html
_DATA = re.compile(r'<script type="application/json" id="wtflow-data">(.*?)</script>', re.DOTALL)
_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_TIMED_OUT = re.compile(r"^timed out\b")


@dataclass
class Attempt:
    """One attempt of a node: when it ran and how it ended (``running`` if its end was not recorded)."""

    number: int
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "running"
    exit_code: int | None = None


@dataclass
class NodeRun:
    """One node of a run as the report shows it."""

    name: str
    path: str
    status: str = "pending"
    exit_code: int | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    artifacts: dict[str, tuple[Path, int]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    reused_from: str | None = None
    saved: float | None = None
    tries: list[Attempt] = field(default_factory=list)

    def stream_files(self) -> Iterator[tuple[str, Path]]:
        """``(stream, file)`` for each of its output streams kept: ``stdout``, ``stderr``."""
        for stream in STREAMS:
            if stream in self.artifacts:
                yield stream, self.artifacts[stream][0]


@dataclass
class Graph:
    """What each node waited for (see :class:`~wtflow.critical.Timing`) and the edges a drawing shows.

    ``edges`` are ``(from, to, label, solid)`` between drawn nodes; ``hidden`` nodes are not drawn
    (a graph-form file's implicit root); ``source`` is ``workflow`` or ``recorded`` (read back
    from an earlier report).
    """

    deps: dict[str, list[str]]
    subtrees: dict[str, list[str]]
    groups: set[str]
    edges: list[tuple[str, str, str, bool]]
    hidden: set[str] = field(default_factory=set)
    source: str = "workflow"

    def waiting(self) -> dict[str, dict[str, list[str]]]:
        """``deps`` and ``subtrees`` by name, as the page's data names them."""
        return {"deps": self.deps, "subtrees": self.subtrees}


@dataclass
class RunView:
    """A run as the report shows it; ``run_dir`` is where its files are now (``None`` when gone)."""

    run_id: str
    workflow: str
    status: str
    exit_code: int | None
    started_at: datetime
    finished_at: datetime | None
    host: str
    pid: int | None
    error: str | None
    run_dir: Path | None
    nodes: dict[str, NodeRun] = field(default_factory=dict)
    graph: Graph | None = None
    commit: str | None = None

    def parents(self) -> dict[str, str | None]:
        """Each node's parent, from the nodes' paths (``ci/tests/unit``)."""
        by_path = {node.path: name for name, node in self.nodes.items()}
        return {name: by_path.get(node.path.rpartition("/")[0]) for name, node in self.nodes.items()}

    def groups(self) -> set[str]:
        """The nodes without an executable: the graph's, else those that ran with children and no output."""
        if self.graph is not None:
            return self.graph.groups
        parents = {parent for parent in self.parents().values() if parent is not None}
        return {
            name
            for name, node in self.nodes.items()
            if name in parents and node.started_at is not None and not node.artifacts and node.exit_code is None
        }


# -- building a view ----------------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _artifacts(value: Any) -> dict[str, tuple[Path, int]]:
    if not isinstance(value, dict):
        return {}
    return {
        str(name): (Path(info["path"]), int(info.get("size") or 0))
        for name, info in value.items()
        if isinstance(info, dict) and isinstance(info.get("path"), str)
    }


def _node(nodes: dict[str, NodeRun], record: Mapping[str, Any]) -> NodeRun:
    name = str(record["node"])
    node = nodes.get(name)
    if node is None:
        node = nodes[name] = NodeRun(name, str(record.get("path") or name))
    return node


def _finished(node: NodeRun, record: Mapping[str, Any]) -> None:
    """Fold a ``node_finished`` record (or a node of ``run.json``) into ``node``."""
    node.status = str(record.get("status") or node.status)
    node.exit_code = record.get("exit_code")
    node.attempts = int(record.get("attempt") or record.get("attempts") or node.attempts or 0)
    node.started_at = _time(record.get("started_at")) or node.started_at
    node.finished_at = _time(record.get("finished_at"))
    node.error = record.get("error")
    node.artifacts = _artifacts(record.get("artifacts"))
    node.outputs = {str(key): str(value) for key, value in (record.get("outputs") or {}).items()}
    node.reused_from = record.get("reused_from")
    node.saved = record.get("saved")
    if node.started_at is not None and not node.tries:  # no start recorded: one attempt, its whole time
        node.tries.append(Attempt(max(node.attempts, 1), node.started_at))
    if node.tries:
        last = node.tries[-1]
        last.finished_at = node.finished_at
        last.status, last.exit_code = node.status, node.exit_code


def from_records(
    records: Iterable[Mapping[str, Any]], run_dir: Path | None = None, summary: Mapping[str, Any] | None = None
) -> RunView | None:
    """A run from its events as ``events.jsonl`` holds them, completed by ``summary`` (its ``run.json``).

    ``None`` if neither says when the run started. Artifact paths are moved under ``run_dir``
    when the run's directory has moved since (copied off a CI runner).
    """
    summary = summary or {}
    head: dict[str, Any] = {key: summary.get(key) for key in ("run_id", "workflow", "host", "pid", "started_at")}
    tail: dict[str, Any] = {key: summary.get(key) for key in ("status", "exit_code", "finished_at", "error")}
    recorded_dir: str | None = summary.get("run_dir")
    nodes: dict[str, NodeRun] = {}
    delays: dict[str, float] = {}
    for record in records:
        kind = record.get("event")
        if kind == "run_started":
            head.update({key: record.get(key) for key in head})
            recorded_dir = record.get("run_dir") or recorded_dir
        elif kind == "node_started":
            _attempt_started(_node(nodes, record), record, delays)
        elif kind == "node_retrying":
            _attempt_failed(_node(nodes, record), record, delays)
        elif kind == "node_finished":
            _finished(_node(nodes, record), record)
        elif kind == "run_finished":
            tail.update({key: record.get(key) for key in tail})
    for name, entry in (summary.get("nodes") or {}).items():
        if name not in nodes and isinstance(entry, dict):
            _finished(_node(nodes, {"node": name, **entry}), entry)
    started_at = _time(head["started_at"])
    if started_at is None:
        return None
    if run_dir is not None and recorded_dir is not None and Path(recorded_dir) != run_dir:
        for node in nodes.values():
            node.artifacts = {
                name: (_rebase(path, Path(recorded_dir), run_dir), size)
                for name, (path, size) in node.artifacts.items()
            }
    return RunView(
        run_id=str(head["run_id"] or (run_dir.name if run_dir else "")),
        workflow=str(head["workflow"] or ""),
        status=str(tail["status"] or "running"),
        exit_code=tail["exit_code"],
        started_at=started_at,
        finished_at=_time(tail["finished_at"]),
        host=str(head["host"] or ""),
        pid=head["pid"],
        error=tail["error"],
        run_dir=run_dir,
        nodes=nodes,
    )


def _attempt_started(node: NodeRun, record: Mapping[str, Any], delays: dict[str, float]) -> None:
    started = _time(record.get("started_at"))
    if started is None:
        return
    number = int(record.get("attempt") or 1)
    if node.tries and node.tries[-1].finished_at is None:  # the attempt before was retried: it ended a delay ago
        previous = node.tries[-1]
        previous.finished_at = max(previous.started_at, started - timedelta(seconds=delays.pop(node.name, 0.0)))
    node.tries.append(Attempt(number, started))
    node.started_at = node.started_at or started
    node.attempts = max(node.attempts, number)
    node.status = str(record.get("replaying") or "running")


def _attempt_failed(node: NodeRun, record: Mapping[str, Any], delays: dict[str, float]) -> None:
    """A ``node_retrying`` record: the attempt failed (or timed out), the next starts after a delay."""
    delays[node.name] = float(record.get("delay") or 0.0)
    if node.tries:
        error = str(record.get("error") or "")
        node.tries[-1].status = "timed_out" if _TIMED_OUT.match(error) else "failed"
        node.tries[-1].exit_code = record.get("exit_code")


def _rebase(path: Path, recorded: Path, actual: Path) -> Path:
    try:
        return actual / path.relative_to(recorded)
    except ValueError:
        return path


def graph_of(workflow: Workflow) -> Graph:
    """What each node of ``workflow`` waits for, and its drawing's edges (those of ``wtflow graph``)."""
    deps: dict[str, list[str]] = {}
    subtrees: dict[str, list[str]] = {}
    for name in workflow.nodes:
        deps[name], subtrees[name] = waits(workflow, name)
    _, joined = _drawn(workflow)
    return Graph(
        deps=deps,
        subtrees=subtrees,
        groups={name for name, node in workflow.nodes.items() if node.executable is None},
        edges=[(source, target, ", ".join(labels), solid) for source, target, labels, solid in joined],
        hidden=set(workflow.nodes) - set(workflow.user_nodes),
    )


def read_events(path: Path) -> list[dict[str, Any]]:
    """The records of an ``events.jsonl``; a line cut short by a crash is left out. ``OSError`` if unreadable."""
    found = []
    with path.open("rb") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                found.append(record)
    return found


def read_run_dir(run_dir: Path, masker: Masker | None = None) -> RunView | None:
    """A run from its directory alone: ``run.json``, ``events.jsonl``, and an earlier report's graph.

    ``masker`` is the one the earlier report was made with, if it masked node names. ``None`` if
    the directory holds no run record. ``OSError`` if it cannot be read.
    """
    summary_path, events_path = run_dir / "run.json", run_dir / "events.jsonl"
    summary = json.loads(summary_path.read_bytes()) if summary_path.is_file() else None
    records = read_events(events_path) if events_path.is_file() else []
    if summary is None and not records:
        return None
    view = from_records(records, run_dir, summary if isinstance(summary, dict) else None)
    if view is not None:
        _add_recorded(view, masker)
    return view


def from_history(run: RunRecord, run_dir: Path | None = None, masker: Masker | None = None) -> RunView:
    """A run as the database recorded it; its attempts and an earlier report's graph from ``run_dir`` if there.

    ``masker`` is the one the earlier report was made with, if it masked node names.
    """
    view = RunView(
        run_id=run.id,
        workflow=run.workflow,
        status=run.status,
        exit_code=run.exit_code,
        started_at=run.started_at,
        finished_at=run.finished_at,
        host=run.host,
        pid=run.pid,
        error=run.error,
        run_dir=run_dir if run_dir is not None and run_dir.is_dir() else None,
    )
    events: dict[str, NodeRun] = {}
    if view.run_dir is not None and (view.run_dir / "events.jsonl").is_file():
        try:
            seen = from_records(read_events(view.run_dir / "events.jsonl"), view.run_dir)
        except OSError:
            seen = None
        events = seen.nodes if seen is not None else {}
    for record in run.nodes:
        node = view.nodes[record.name] = NodeRun(
            name=record.name,
            path=record.path,
            status=record.status,
            exit_code=record.exit_code,
            attempts=record.attempts,
            started_at=record.started_at,
            finished_at=record.finished_at,
            error=record.error,
            artifacts={artifact.name: (artifact.path, artifact.size) for artifact in record.artifacts},
            outputs=dict(record.outputs),
        )
        earlier = events.get(record.name)
        if earlier is not None and earlier.tries:
            node.tries, node.reused_from, node.saved = earlier.tries, earlier.reused_from, earlier.saved
            node.tries[-1].status, node.tries[-1].exit_code = node.status, node.exit_code
        elif node.started_at is not None:
            number = max(node.attempts, 1)
            node.tries = [Attempt(number, node.started_at, node.finished_at, node.status, node.exit_code)]
    _add_recorded(view, masker)
    return view


def history_run_dir(run: RunRecord, artifacts_dir: Path | None = None) -> Path | None:
    """Where a recorded run's directory is: beside its nodes' output files, else ``artifacts_dir/<run id>``."""
    for node in run.nodes:
        for artifact in node.artifacts:
            if artifact.name in STREAMS:
                return artifact.path.parent.parent
    return artifacts_dir / run.id if artifacts_dir is not None else None


def _add_recorded(view: RunView, masker: Masker | None) -> None:
    if view.run_dir is None:
        return
    graph, commit = recorded(view.run_dir / REPORT_FILE, view.nodes, masker)
    view.graph = view.graph or graph
    view.commit = view.commit or commit
    if graph is not None:  # the report's order is the workflow's
        view.nodes = {name: view.nodes[name] for name in graph.deps if name in view.nodes} | view.nodes


def recorded(report: Path, names: Iterable[str], masker: Masker | None = None) -> tuple[Graph | None, str | None]:
    """The graph and the git commit an earlier report of a run embedded; ``(None, None)`` if there is none.

    The report holds names as it showed them, masked: they are matched to ``names`` masked alike.
    """
    try:
        match = _DATA.search(report.read_text("utf-8", "replace"))
        data = json.loads(match[1]) if match else None
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None, None
    run = data.get("run") or {}
    commit = run.get("commit") if isinstance(run.get("commit"), str) else None
    if run.get("graph") not in {"workflow", "recorded"}:
        return None, commit
    mask = (masker or Masker()).text
    real = {mask(name): name for name in names}
    try:
        shown = [real.get(node["name"]) for node in data["nodes"]]

        def named(indices: Iterable[int]) -> list[str]:
            return [name for index in indices if (name := shown[index]) is not None]

        graph = Graph(deps={}, subtrees={}, groups=set(), edges=[], source="recorded")
        for name, node in zip(shown, data["nodes"], strict=True):
            if name is None:
                continue
            for key, waited in graph.waiting().items():
                waited[name] = named(node.get(key, ()))
            if node.get("group"):
                graph.groups.add(name)
            if node.get("hidden"):
                graph.hidden.add(name)
        for source, target, label, solid in data["edges"]:
            if shown[source] is not None and shown[target] is not None:
                graph.edges.append((shown[source], shown[target], str(label), bool(solid)))
    except (KeyError, IndexError, TypeError, ValueError):
        return None, commit
    return graph, commit


# -- the critical path --------------------------------------------------------------------


def critical_path_of(view: RunView) -> CriticalPath:
    """The run's critical path: by its graph's dependencies when known, else by time."""
    origin = view.started_at
    groups = view.groups()
    parents = view.parents()
    end = view.finished_at
    graph = view.graph
    timings = []
    for name, node in view.nodes.items():
        finished = node.finished_at or end
        if finished is None:
            continue
        timings.append(
            Timing(
                name,
                None if node.started_at is None else seconds(node.started_at, origin),
                seconds(finished, origin),
                deps=graph.deps.get(name) if graph is not None else None,
                subtrees=graph.subtrees.get(name, ()) if graph is not None else (),
                parent=parents[name],
                group=name in groups,
            )
        )
    return critical_path(timings, start=0.0, finish=None if end is None else seconds(end, origin))


def history_critical_path(run: RunRecord, artifacts_dir: Path | None = None) -> CriticalPath:
    """The critical path of a run the database recorded (for ``wtflow runs show``).

    By the dependencies an earlier report of the run embedded, when its directory holds one;
    else by time.
    """
    return critical_path_of(from_history(run, history_run_dir(run, artifacts_dir)))


# -- logs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stream:
    node: str
    number: int  # the node's, in the page's data
    stream: str
    path: Path
    size: int
    first: bool  # a failed node's: served from the budget first


def _streams(view: RunView) -> list[_Stream]:
    found = []
    for number, (name, node) in enumerate(view.nodes.items()):
        failed = node.status in {"failed", "timed_out"}
        for stream, path in node.stream_files():
            try:
                size = path.stat().st_size
            except OSError:
                continue
            found.append(_Stream(name, number, stream, path, size, failed))
    return found


def _fair_cap(sizes: list[int], budget: int) -> int:
    """The largest per-stream cap whose streams, each cut to it, fit in ``budget`` bytes."""
    left = budget
    ordered = sorted(sizes)
    for index, size in enumerate(ordered):
        if size * (len(ordered) - index) > left:
            return left // (len(ordered) - index)
        left -= size
    return ordered[-1] if ordered else 0


def log_caps(streams: list[tuple[int, bool]], *, tail: int = LOG_TAIL, budget: int = LOG_BUDGET) -> list[int]:
    """How many bytes of each stream ``(size, first)`` the page holds: at most ``tail``, ``budget`` in all.

    Streams marked ``first`` (a failed node's) share the budget first, the others what is left.
    """
    first = [min(size, tail) for size, is_first in streams if is_first]
    first_cap = _fair_cap(first, budget)
    left = budget - sum(min(size, first_cap) for size in first)
    rest_cap = _fair_cap([min(size, tail) for size, is_first in streams if not is_first], left)
    return [min(size, tail, first_cap if is_first else rest_cap) for size, is_first in streams]


def read_tail(path: Path, limit: int, masker: Masker) -> tuple[str, int]:
    """The last ``limit`` bytes of the file at ``path`` (from a line's start), masked; and how many bytes were left out.

    A secret that starts before the part read is not shown in part: what is read starts a
    secret's length earlier, and that margin is dropped once masked. ``OSError`` if unreadable.
    """
    data, cut = _tail(path, limit, masker)
    return data.decode("utf-8", "replace"), cut


def _tail(path: Path, limit: int, masker: Masker) -> tuple[bytes, int]:
    """:func:`read_tail`'s bytes, not decoded."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if limit <= 0:
            return b"", size
        margin = max(masker.longest - 1, 0)
        offset = max(size - limit - margin, 0)
        handle.seek(offset)
        data = masker.bytes(handle.read(size - offset))
    if not offset and len(data) <= limit:
        return data, 0
    data = data[margin:][-limit:] if offset else data[-limit:]
    newline = data.find(b"\n")
    if 0 <= newline < len(data) - 1:
        data = data[newline + 1 :]
    return data, max(size - len(data), 1)


# The page holds each log in a script element of type text/plain, which the browser neither runs
# nor decodes: it reads the text as written, but for what the HTML parser ends the element at or
# changes: "<" (of "</script>"), CR (newlines are normalised to LF) and NUL (replaced). Those are
# written as JSON escapes, and so the backslash itself: report.js reads them back.
_PLAIN_ESCAPES = ((b"\\", b"\\\\"), (b"<", b"\\u003c"), (b"\r", b"\\r"), (b"\0", b"\\u0000"))


def _plain_script(data: bytes) -> bytes:
    """``data`` as the text of a text/plain script element: valid UTF-8 (what is not shown replaced), escaped."""
    if not data.isascii():
        try:
            data.decode()
        except UnicodeDecodeError:
            data = data.decode("utf-8", "replace").encode()
    for char, escape in _PLAIN_ESCAPES:
        data = data.replace(char, escape)
    return data


def _write_logs(
    handle: BinaryIO, view: RunView, masker: Masker, budget: int = LOG_BUDGET
) -> dict[tuple[str, str], dict[str, int]]:
    """Write each stream's tail as the page holds it, within ``budget`` bytes; ``{size, cut}`` by ``(node, stream)``.

    Each is a text/plain script element, ``wtflow-log-<node's number>-<stream>``, written as it
    is read: the tails are never all in memory. ``cut`` is how many bytes of the stream's
    ``size`` were left out. The budget is of the page's bytes: escapes and characters shown
    replaced make a log larger there than on disk, so a run whose tails grow past it is
    written again, with a budget smaller by as much.
    """
    streams = _streams(view)
    sizes = [(stream.size, stream.first) for stream in streams]
    start = handle.tell()
    logs: dict[tuple[str, str], dict[str, int]] = {}
    limit = budget  # of the bytes read
    for _ in range(3):  # the second writing fits but in pathological cases: stop then anyway
        handle.seek(start)
        handle.truncate()
        logs.clear()
        read = shown = 0
        for stream, cap in zip(streams, log_caps(sizes, budget=limit), strict=True):
            try:
                # Most streams of most runs are empty: nothing to open for those.
                data, cut = _tail(stream.path, cap, masker) if stream.size else (b"", 0)
            except OSError:
                continue
            text = _plain_script(data)
            read, shown = read + len(data), shown + len(text)
            handle.write(f'<script type="text/plain" id="wtflow-log-{stream.number}-{stream.stream}">'.encode())
            handle.write(text)
            handle.write(b"</script>\n")
            logs[(stream.node, stream.stream)] = {"size": stream.size, "cut": cut}
        if shown <= budget or not read:
            break
        limit = int(budget * read / shown * 0.98)
    return logs


# -- the page -----------------------------------------------------------------------------


def _href(path: Path, base: Path) -> str:
    """The link to ``path`` from a page in ``base`` (an absolute directory)."""
    text, prefix = str(path), f"{base}{os.sep}"
    # Most files are below the page (its run's directory): no walk of both paths for those.
    relative = text[len(prefix) :] if text.startswith(prefix) else os.path.relpath(path, base)
    return quote(relative.replace(os.sep, "/"))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _attempt_files(node: NodeRun) -> Iterator[tuple[str, Path]]:
    """Output kept of a retried node's earlier attempts: ``stdout.attempt-N.log`` beside its stream's file."""
    for stream, path in node.stream_files():
        for number in range(1, node.attempts):
            earlier = path.with_name(f"{path.stem}.attempt-{number}{path.suffix}")
            if earlier.exists():
                yield f"{stream} (attempt {number})", earlier


def report_data(
    view: RunView,
    out_dir: Path,
    logs: Mapping[tuple[str, str], dict[str, int]],
    masker: Masker | None = None,
    *,
    generated: datetime | None = None,
) -> dict[str, Any]:
    """What the page shows, as JSON-ready data (names and texts masked; times in seconds from the run's start).

    Of the logs, only their sizes (``logs``, by ``(node, stream)``): the page holds their texts apart.
    """
    mask = (masker or Masker()).text
    origin = view.started_at
    names = list(view.nodes)
    index = {name: number for number, name in enumerate(names)}
    parents = view.parents()
    groups = view.groups()
    graph = view.graph
    hidden = graph.hidden if graph is not None else _implicit_root(view, parents, groups)

    def when(moment: datetime | None) -> float | None:
        return None if moment is None else _round(seconds(moment, origin))

    nodes = []
    for name, node in view.nodes.items():
        entry: dict[str, Any] = {
            "name": mask(name),
            "path": mask(node.path),
            "status": node.status,
            "exit": node.exit_code,
            "attempts": node.attempts,
            "start": when(node.started_at),
            "end": when(node.finished_at),
            "error": mask(node.error) if node.error else None,
            "group": name in groups,
            "parent": index.get(parents[name] or ""),
            "tries": [
                [when(attempt.started_at), when(attempt.finished_at), attempt.status, attempt.exit_code]
                for attempt in node.tries
            ],
            "artifacts": [
                [mask(label), _href(path, out_dir), size, label not in STREAMS and path.is_dir()]
                for label, (path, size) in node.artifacts.items()
            ]
            + [[label, _href(path, out_dir), None, False] for label, path in _attempt_files(node)],
            "outputs": [[mask(key), mask(value)] for key, value in node.outputs.items()],
            "logs": {stream: logs[(name, stream)] for stream in STREAMS if (name, stream) in logs},
        }
        if node.reused_from is not None:
            entry.update(reused_from=mask(node.reused_from), saved=node.saved)
        if graph is not None:
            for key, waited in graph.waiting().items():
                entry[key] = [index[dep] for dep in waited.get(name, ()) if dep in index]
        if name in hidden:
            entry["hidden"] = True
        nodes.append(entry)
    if graph is not None:
        edges = [
            [index[source], index[target], mask(label), solid]
            for source, target, label, solid in graph.edges
            if source in index and target in index
        ]
    else:  # only the tree is known
        edges = [
            [index[parent], index[name], "", True]
            for name, parent in parents.items()
            if parent in index and parent not in hidden
        ]
    path = critical_path_of(view)
    return {
        "format": FORMAT,
        "generated": (generated or datetime.now(UTC)).isoformat(),
        "run": {
            "id": view.run_id,
            "workflow": mask(view.workflow),
            "status": view.status,
            "exit_code": view.exit_code,
            "started": view.started_at.isoformat(),
            "finished": view.finished_at.isoformat() if view.finished_at else None,
            "duration": when(view.finished_at),
            "host": mask(view.host),
            "pid": view.pid,
            "error": mask(view.error) if view.error else None,
            "commit": view.commit,
            "graph": graph.source if graph is not None else "tree",
        },
        "nodes": nodes,
        "edges": edges,
        "critical": {
            "steps": [
                [index[step.name], _round(step.start), _round(step.finish), _round(step.waited)] for step in path.steps
            ],
            "total": _round(path.total),
            "working": _round(path.working),
            "waiting": _round(path.waiting),
            "closing": _round(path.closing),
            "by_time": path.by_time,
        },
    }


def _implicit_root(view: RunView, parents: dict[str, str | None], groups: set[str]) -> set[str]:
    """A graph-form file's root, as a run without its graph shows it: a group named after the workflow."""
    return {
        name
        for name, parent in parents.items()
        if parent is None and name in groups and name in {view.workflow, f"{view.workflow} (workflow)"}
    }


def _asset(name: str) -> str:
    return resources.files("wtflow").joinpath("report_assets", name).read_text("utf-8")


def write_report(view: RunView, out: Path, masker: Masker | None = None, *, generated: datetime | None = None) -> Path:
    """Write the report to ``out`` (atomically: readers see the old file or the new one). Blocking."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            _write_page(handle, view, out.parent.absolute(), masker or Masker(), generated)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _write_page(handle: BinaryIO, view: RunView, out_dir: Path, masker: Masker, generated: datetime | None) -> None:
    """The report's HTML, its links relative to ``out_dir``.

    Its data is one JSON block, and each log's text a block of its own, as it is but for a few
    escapes (:func:`_plain_script`): a run's logs, most of the page, are read and written once.
    """
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    slots = {
        "TITLE": _title_text(f"{masker.text(view.workflow)} {view.status} · {view.run_id} · wtflow"),
        "SCRIPT_HASH": f"sha256-{digest}",
        "STYLE": _asset("report.css"),
        "SCRIPT": script,
    }
    head, tail = _asset("report.html").split("{{LOGS}}")
    handle.write(_fill(head, slots))
    logs = _write_logs(handle, view, masker)
    data = report_data(view, out_dir, logs, masker, generated=generated)
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # JSON has "<" only inside strings, where \u003c means the same: no "</script>" can end the block early.
    handle.write(_fill(tail, {**slots, "DATA": payload.replace("<", "\\u003c")}))


def _title_text(text: str) -> str:
    """``text`` as the content of a ``<title>``, where only a character reference or the end tag could start."""
    # Not html.escape: its module loads every named character reference, for html.unescape.
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _fill(template: str, slots: Mapping[str, str]) -> bytes:
    """``template`` with each ``{{NAME}}`` replaced by ``slots[NAME]``, as UTF-8."""
    # A name no decoding made (a lone surrogate) cannot be UTF-8: shown replaced.
    return _SLOT.sub(lambda match: slots[match[1]], template).encode("utf-8", "replace")


def git_commit(directory: Path) -> str | None:
    """The commit checked out in ``directory`` (``git rev-parse HEAD``); ``None`` outside a checkout, or without git."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, "rev-parse", "--verify", "--quiet", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and _COMMIT.fullmatch(commit) else None
