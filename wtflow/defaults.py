"""What a run uses unless its caller says otherwise.

Commands and functions run on this machine, or on a Dask cluster's workers when one is
configured (:class:`~wtflow.executors.dispatch.PlacingExecutor`), artifacts are files
(:class:`~wtflow.artifacts.FileStore`), the run's record is kept in ``run.json``,
``events.jsonl`` and the configured database, and the nodes' own output goes to this process's
console. The engine asks for these only when it is given nothing else; the
implementations are imported here, on use, so the engine itself knows only their interfaces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wtflow.artifacts import ArtifactStore
    from wtflow.config import Config
    from wtflow.events import Observer
    from wtflow.executors.base import Executor
    from wtflow.reuse import NodeCache


def executor(config: Config | None = None) -> Executor:
    """Each node's executable: commands, Python functions, commands in containers.

    On this machine or, when ``config`` names a Dask cluster, on its workers (unless the node
    says ``runs_on: local``).
    """
    from wtflow.executors.dispatch import PlacingExecutor

    if config is None or not config.dask.enabled:
        return PlacingExecutor()
    from wtflow.executors.dask_executor import DaskExecutor

    return PlacingExecutor(cluster=DaskExecutor(config.dask))


def store(config: Config) -> ArtifactStore:
    """Artifacts as files in the configured directory (a temporary one when none is set)."""
    from wtflow.artifacts import FileStore

    return FileStore(config.storage.artifacts_dir, mask_files=config.run.mask_artifacts)


def record_observers(config: Config) -> list[Observer]:
    """The observers that keep the run's record: ``run.json``, ``events.jsonl``, and the database if set."""
    from wtflow.observers.eventsfile import EventsFileWriter
    from wtflow.observers.runfile import RunFileWriter

    observers: list[Observer] = [RunFileWriter(), EventsFileWriter()]
    if config.db.url:
        from wtflow.db.recorder import DatabaseRecorder

        observers.append(DatabaseRecorder(config.db.url, retry=config.db.retry))
    return observers


def console_observers() -> list[Observer]:
    """What a library user sees by default: the nodes' own output, nothing else."""
    from wtflow.observers.console import ConsolePrinter

    return [ConsolePrinter()]


def node_cache(config: Config) -> NodeCache:
    """The cache of finished nodes, in the configured directory (``.wtflow/cache`` by default)."""
    from wtflow.config import DEFAULT_CACHE_DIR
    from wtflow.reuse import NodeCache

    root = config.storage.cache_dir or DEFAULT_CACHE_DIR
    return NodeCache(root, force=config.run.force, force_nodes=config.run.force_nodes)
