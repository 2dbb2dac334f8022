"""Executors run one node's executable and stream its output to a sink.

:class:`~wtflow.executors.base.Executor` is the interface; :class:`DispatchExecutor` picks the
executor for each kind of executable; :mod:`wtflow.executors.fake` holds a scripted fake for tests.
"""

from wtflow.executors.base import DispatchExecutor, Executor, Job, Outcome, OutputSink

__all__ = ["DispatchExecutor", "Executor", "Job", "Outcome", "OutputSink"]
