"""How nodes ended, as conditions see them: ``success``, ``failure``, ``cancelled``, ``skipped``.

These are the values of ``needs.<node>.result`` and the inputs of the status functions
``success()``, ``failure()`` and ``cancelled()``. A node's own result is what happened to it;
what a node waiting for it sees is its *effective* result (a failure allowed by
``continue_on_error`` or ``ignore_failure`` counts as a success), and a subtree's result is
the worst among the effective results of its nodes.
"""

from __future__ import annotations

from collections.abc import Iterable

from wtflow.events import NodeStatus

SUCCESS = "success"
FAILURE = "failure"
CANCELLED = "cancelled"
SKIPPED = "skipped"

_RESULTS = {
    NodeStatus.SUCCEEDED: SUCCESS,
    NodeStatus.FAILED: FAILURE,
    NodeStatus.TIMED_OUT: FAILURE,
    NodeStatus.CANCELLED: CANCELLED,
    NodeStatus.SKIPPED: SKIPPED,
    NodeStatus.CACHED: SUCCESS,
    NodeStatus.REUSED: SUCCESS,
    NodeStatus.RUNNING: SUCCESS,  # a group whose children are starting: nothing went wrong yet
    NodeStatus.PENDING: SKIPPED,
}
_WORST = (FAILURE, CANCELLED)


def result(status: NodeStatus) -> str:
    """``needs.<node>.result`` of a node with ``status``."""
    return _RESULTS[status]


def effective(status: NodeStatus, *, allowed_to_fail: bool) -> str:
    """What a node waiting for one that ended with ``status`` sees: an allowed failure is a success."""
    seen = _RESULTS[status]
    return SUCCESS if seen == FAILURE and allowed_to_fail else seen


def worst(own: str, below: Iterable[str]) -> str:
    """The result of a subtree: a failure or cancellation anywhere in it, else its own result.

    A node skipped below one that ran (its condition was false) leaves the subtree a success.
    """
    if own in _WORST:
        return own
    found = set(below)
    for outcome in _WORST:
        if outcome in found:
            return outcome
    return own


def group_status(children: Iterable[str]) -> NodeStatus:
    """The status of a group whose children's subtrees ended so: failed, cancelled, skipped (all were) or succeeded."""
    found = list(children)
    if FAILURE in found:
        return NodeStatus.FAILED
    if CANCELLED in found:
        return NodeStatus.CANCELLED
    if found and all(outcome == SKIPPED for outcome in found):
        return NodeStatus.SKIPPED
    return NodeStatus.SUCCEEDED
