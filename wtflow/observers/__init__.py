"""Observers: everything that listens to a run's events (console, run files, logs, GitHub).

The database's observer lives with the database, in :mod:`wtflow.db.recorder`.
"""
