"""Run history in a SQL database (SQLAlchemy Core), written by a process of its own.

- :mod:`~wtflow.db.tables`: the schema, defined once (times stored in UTC, read back aware).
- :mod:`~wtflow.db.connect`: a URL as users write it to an engine with safe settings.
- :mod:`~wtflow.db.schema`: create or migrate the schema, under one lock.
- :mod:`~wtflow.db.crashes`: runs whose owner is gone, closed as ``crashed``.
- :mod:`~wtflow.db.history`: :func:`~wtflow.db.history.open_history`, and reading runs back.
- :mod:`~wtflow.db.recorder`: the observer that turns a run's events into messages.
- :mod:`~wtflow.db.messages`: those messages, plain tuples.
- :mod:`~wtflow.db.writer_process`: the writer process's life, seen from the runner.
- :mod:`~wtflow.db.writer`: the writer process itself, turning messages into rows.
"""
