"""Observers: everything that listens to a run's events (console, run file, logs, database)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from wtflow.config import Config
    from wtflow.events import Observer


def record_observers(config: Config, run_file: Path) -> list[Observer]:
    """The observers that keep the run's record: ``run.json``, ``events.jsonl``, and the database if set."""
    from wtflow.observers.eventsfile import EventsFileWriter
    from wtflow.observers.runfile import RunFileWriter

    observers: list[Observer] = [RunFileWriter(run_file), EventsFileWriter(run_file.with_name("events.jsonl"))]
    if config.db.url:
        from wtflow.db.recorder import DatabaseRecorder

        observers.append(DatabaseRecorder(config.db.url, retry=config.db.retry))
    return observers


def console_observers() -> list[Observer]:
    """What a library user sees by default: the nodes' own output, nothing else."""
    from wtflow.observers.console import ConsolePrinter

    return [ConsolePrinter()]
