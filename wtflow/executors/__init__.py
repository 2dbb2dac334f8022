"""Executors run one node's executable and stream its output to a sink.

:mod:`wtflow.executors.base` holds the interface; :mod:`wtflow.executors.dispatch` picks the
executor for each kind of executable; :mod:`wtflow.executors.fake` holds a scripted fake for tests.
"""
