"""The critical path of a run: the chain of nodes, each waiting for the one before it, that took its wall time.

It is walked back from the node that finished last: at each step to the node it waited for
that finished last (the one it really waited for), until a node that waited for nothing. The
time between the end of what a node waited for and its own start is waiting (for a free slot,
when ``max_parallel`` nodes were running): the nodes' durations and these waits add up to the
time from the run's start to the last node's end.

What a node waits for comes from its workflow (:func:`workflow_timings`): the end of nodes (its
parent, the nodes whose artifacts it reads) and the end of whole subtrees (what it ``needs``, a
sequential parent's previous child). A group takes no time: it is done when it starts, and what
waits for it waited for what the group waited for. Where the dependencies are not known (a run
recorded without them), a node is taken to have waited for the node that finished last before
it started.

Times are seconds, from any origin (the run's start, usually); :func:`seconds` makes them from
datetimes.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wtflow.graph import SELF, TREE

if TYPE_CHECKING:
    from datetime import datetime

    from wtflow.model import Workflow

# Times recorded by one clock, a microsecond apart at worst: a node whose dependency "finished"
# within this of its start did wait for it.
_EPSILON = 1e-6


@dataclass(frozen=True)
class Timing:
    """One node of a run: when it started and finished, and what it waited for.

    ``deps`` are the nodes whose own end it waited for, ``subtrees`` the nodes whose whole
    subtree (the node and everything under it) it waited for; ``deps=None`` means not known:
    the node is taken to have waited for the node that finished last before it started.
    ``start`` is ``None`` for a node that did not run (skipped): it took no time, and what waits
    for it waited for what it waited for. A ``group`` (a node without an executable) is done
    the moment it starts; its ``finish`` is its subtree's.
    """

    name: str
    start: float | None
    finish: float
    deps: Collection[str] | None = None
    subtrees: Collection[str] = ()
    parent: str | None = None
    group: bool = False

    @property
    def done(self) -> float:
        """When what waits for this node's own end could go on: its start for a group."""
        return self.start if self.group and self.start is not None else self.finish

    @property
    def ran(self) -> bool:
        """Whether the node took time of its own: it has an executable and started."""
        return not self.group and self.start is not None


@dataclass(frozen=True)
class Step:
    """A node on the critical path, and how long it waited before it started."""

    name: str
    start: float
    finish: float
    waited: float  # from the end of the node before it on the path (the run's start for the first) to its start

    @property
    def duration(self) -> float:
        """Seconds from the node's start to its finish (all its attempts)."""
        return self.finish - self.start


@dataclass(frozen=True)
class CriticalPath:
    """The steps from the run's start to its last node's end; ``by_time`` if some were found by time."""

    steps: tuple[Step, ...]
    start: float
    finish: float
    by_time: bool = False

    @property
    def total(self) -> float:
        """The run's wall time: from its start to its finish."""
        return self.finish - self.start

    @property
    def working(self) -> float:
        """Seconds the path's nodes ran."""
        return sum(step.duration for step in self.steps)

    @property
    def waiting(self) -> float:
        """Seconds the path's nodes waited to start (for the run to start its first node, for a free slot)."""
        return sum(step.waited for step in self.steps)

    @property
    def closing(self) -> float:
        """Seconds from the last node's end to the run's finish (recording it, stopping what was left)."""
        return max(self.finish - self.steps[-1].finish, 0.0) if self.steps else self.total

    @property
    def names(self) -> list[str]:
        """The path's nodes, first to last."""
        return [step.name for step in self.steps]

    def share(self, seconds: float) -> float:
        """``seconds`` as a fraction of the run's wall time (0 for a run that took no time)."""
        return seconds / self.total if self.total > 0 else 0.0

    def describe(self) -> str:
        """One line: ``fetch 1.0s (10%) → build 6.0s (60%) → test 300ms (3%)``, then the waiting if any."""
        if not self.steps:
            return "no node ran"
        parts = [f"{step.name} {_span(step.duration)} ({self.share(step.duration):.0%})" for step in self.steps]
        text = " → ".join(parts)
        if self.waiting >= 0.05:
            text += f"; waiting {_span(self.waiting)} ({self.share(self.waiting):.0%})"
        return text


def _span(seconds: float) -> str:
    """``350ms``, ``4.2s``, ``3m05s``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def critical_path(timings: Iterable[Timing], *, start: float = 0.0, finish: float | None = None) -> CriticalPath:
    """The critical path of a run of ``timings``, which started at ``start`` and finished at ``finish``.

    ``finish`` defaults to the last node's finish. Dependencies not among ``timings`` (nodes a
    ``--target`` run left out) are ignored.
    """
    walk = _Walk({timing.name: timing for timing in timings})
    ran = [timing for timing in walk.nodes.values() if timing.ran]
    end = finish if finish is not None else max((timing.finish for timing in ran), default=start)
    if not ran:
        return CriticalPath((), start, end)
    last = max(ran, key=lambda timing: (timing.finish, -_started(timing)))
    backwards = [last]
    walk.seen.add(last.name)
    while (before := walk.waited_for(backwards[-1])) is not None:
        backwards.append(before)
    steps: list[Step] = []
    previous_end = start
    for timing in reversed(backwards):
        began = _started(timing)
        steps.append(Step(timing.name, began, timing.finish, max(began - previous_end, 0.0)))
        previous_end = timing.finish
    return CriticalPath(tuple(steps), start, end, by_time=walk.by_time)


def _started(timing: Timing) -> float:
    return timing.start if timing.start is not None else timing.finish


class _Walk:
    """One walk back along what nodes waited for; remembers where it has been, so it always ends."""

    def __init__(self, nodes: dict[str, Timing]) -> None:
        self.nodes = nodes
        self.seen: set[str] = set()
        self.by_time = False
        self.children: dict[str, list[str]] = {}
        for timing in nodes.values():
            if timing.parent is not None and timing.parent in nodes:
                self.children.setdefault(timing.parent, []).append(timing.name)
        self.tree_done = self._tree_done()
        # For time order: the nodes that ran, by when they finished.
        finished = sorted((timing.finish, timing.name) for timing in nodes.values() if timing.ran)
        self.finish_times = [moment for moment, _ in finished]
        self.finish_names = [name for _, name in finished]

    def _tree_done(self) -> dict[str, float]:
        """When each node's whole subtree was done, children before parents (no recursion: trees may be deep)."""
        done: dict[str, float] = {}
        roots = [name for name, timing in self.nodes.items() if timing.parent not in self.nodes]
        stack: list[tuple[str, bool]] = [(name, False) for name in roots]
        while stack:
            name, expanded = stack.pop()
            below = self.children.get(name, [])
            if not expanded:
                stack.append((name, True))
                stack.extend((child, False) for child in below if child not in done)
                continue
            done[name] = max([self.nodes[name].done, *(done[child] for child in below if child in done)])
        return done

    def waited_for(self, timing: Timing) -> Timing | None:
        """The node that ran and that ``timing`` waited for last, through groups, subtrees and skipped nodes."""
        ref = self._latest(timing)
        while ref is not None:
            name, kind = ref
            if name in self.seen:
                return None  # a loop (only in inconsistent data): the walk ends here
            self.seen.add(name)
            node = self.nodes[name]
            if kind == TREE:
                ref = self._latest_in_tree(node)
                self.seen.discard(name)  # a subtree's end is not a place: its own node may still be reached
            elif node.ran:
                return node
            else:  # a group or a skipped node: done when what it waited for was
                ref = self._latest(node)
        return None

    def _latest(self, timing: Timing) -> tuple[str, int] | None:
        """What ``timing`` waited for that was done last: a node's end ``(name, SELF)``, or a subtree's."""
        before = _started(timing) if timing.ran else timing.done
        if timing.deps is None:
            self.by_time = True
            return self._latest_by_time(before)
        refs = [(self.nodes[name].done, name, SELF) for name in timing.deps if name in self.nodes]
        refs += [(self.tree_done[name], name, TREE) for name in timing.subtrees if name in self.nodes]
        if not refs:
            return None
        # What it waited for ended before it started; a clock that stepped back may say otherwise: take the last.
        in_time = [ref for ref in refs if ref[0] <= before + _EPSILON] or refs
        _, name, kind = max(in_time, key=lambda ref: (ref[0], ref[2]))
        return name, kind

    def _latest_by_time(self, before: float) -> tuple[str, int] | None:
        index = bisect.bisect_right(self.finish_times, before + _EPSILON)
        while index > 0:
            index -= 1
            name = self.finish_names[index]
            if name not in self.seen:
                return name, SELF
        return None

    def _latest_in_tree(self, timing: Timing) -> tuple[str, int]:
        """Within ``timing``'s subtree, the part done last: the node's own end or a child's subtree (on a tie)."""
        best: tuple[float, int, str] = (timing.done, SELF, timing.name)
        for child in self.children.get(timing.name, []):
            best = max(best, (self.tree_done[child], TREE, child))
        return best[2], best[1]


def workflow_timings(workflow: Workflow, times: Mapping[str, tuple[float | None, float]]) -> list[Timing]:
    """Timings of the nodes of ``workflow`` in ``times`` (``name: (start, finish)``), with what each waited for.

    Nodes missing from ``times`` (left out of the run, or not finished) are left out.
    """
    timings = []
    for name, node in workflow.nodes.items():
        if name not in times:
            continue
        start, finish = times[name]
        deps, subtrees = waits(workflow, name)
        parent = workflow.parents[name]
        timings.append(
            Timing(
                name,
                start,
                finish,
                deps=tuple(deps),
                subtrees=tuple(subtrees),
                parent=parent.name if parent is not None else None,
                group=node.executable is None,
            )
        )
    return timings


def waits(workflow: Workflow, name: str) -> tuple[list[str], list[str]]:
    """What node ``name`` of ``workflow`` waits for: the nodes whose own end, and those whose subtree's (sorted)."""
    found = workflow.dependencies[(name, SELF)]
    return sorted(dep for dep, kind in found if kind == SELF), sorted(dep for dep, kind in found if kind == TREE)


def seconds(moment: datetime, origin: datetime) -> float:
    """``moment`` as seconds after ``origin``."""
    return (moment - origin).total_seconds()


def of_run(
    times: Mapping[str, tuple[datetime | None, datetime | None]],
    started_at: datetime,
    finished_at: datetime | None = None,
    *,
    workflow: Workflow | None = None,
    groups: Collection[str] = (),
) -> CriticalPath:
    """The critical path of a run from its nodes' ``(started_at, finished_at)``, by name.

    With its ``workflow``, each node's dependencies are the workflow's; without, the path is
    found by time, and ``groups`` names the nodes without an executable (which take no time).
    Nodes that never finished are left out.
    """
    spans = {
        name: (None if start is None else seconds(start, started_at), seconds(finish, started_at))
        for name, (start, finish) in times.items()
        if finish is not None
    }
    if workflow is not None:
        timings = workflow_timings(workflow, spans)
    else:
        timings = [Timing(name, start, finish, group=name in groups) for name, (start, finish) in spans.items()]
    end = None if finished_at is None else seconds(finished_at, started_at)
    return critical_path(timings, start=0.0, finish=end)
