"""Runs :class:`~wtflow.model.Command` nodes that name a container, through the docker SDK.

The SDK is synchronous: every call runs in a worker thread. stdout and stderr stay separate
(the attach stream is demultiplexed) and are streamed into the node's sink as they come. Every
container is labelled with its run and node and removed after the node, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import Any

from wtflow.errors import BackendUnavailable
from wtflow.executors.base import BaseExecutor, Job, Outcome, OutputSink
from wtflow.model import STDERR, STDOUT, Command, Container, Workflow

LABEL_RUN = "io.wtflow.run"
LABEL_NODE = "io.wtflow.node"


def client() -> Any:
    """A docker client from the environment (DOCKER_HOST...); :class:`BackendUnavailable` if unreachable."""
    try:
        import docker
    except ImportError:
        raise BackendUnavailable("container nodes need the docker SDK: pip install 'wtflow[docker]'") from None
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        raise BackendUnavailable(f"the docker engine is unavailable: no socket at {host} (is it running? DOCKER_HOST?)")
    found = None
    try:
        found = docker.from_env()
        found.ping()
    except docker.errors.DockerException as exc:
        if found is not None:
            found.close()
        raise BackendUnavailable(f"the docker engine is unavailable: {exc}") from None
    return found


def containers_of(workflow: Workflow) -> list[Container]:
    """The containers the workflow's commands run in."""
    return [
        node.executable.container
        for node in workflow.nodes.values()
        if isinstance(node.executable, Command) and node.executable.container is not None
    ]


class ContainerExecutor(BaseExecutor):
    """One container per node attempt, removed afterwards."""

    def __init__(self) -> None:
        self._client: Any = None
        self._lock = threading.Lock()

    def _docker(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = client()
            return self._client

    async def aclose(self) -> None:
        """Close the connection to the engine."""
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None

    async def preflight(self, workflow: Workflow, max_parallel: int) -> None:
        """Before any node runs: the engine answers and ``pull: never`` images exist (else exit 3)."""
        await self.check(containers_of(workflow))

    async def check(self, wanted: list[Container]) -> None:
        """The engine answers and the ``pull: never`` images of ``wanted`` exist (else exit 3); none: no check."""
        if wanted:
            await asyncio.to_thread(self._check, wanted)

    def _check(self, wanted: list[Container]) -> None:
        import docker

        docker_client = self._docker()
        for container in wanted:
            if container.pull == "never":
                try:
                    docker_client.images.get(container.image)
                except docker.errors.ImageNotFound:
                    raise BackendUnavailable(
                        f"image {container.image!r} is not on the docker engine and its pull policy is never"
                    ) from None

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run the command in a new container; stream, wait, stop on timeout or cancellation, remove."""
        command = job.executable
        assert isinstance(command, Command)
        assert command.container is not None
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        created = await asyncio.to_thread(self._create, job, command, command.container)
        streams: list[Any] = []
        try:
            await asyncio.to_thread(created.start)
            # One log stream per output, from the container's start (nothing is missed), followed live.
            for name, wanted in (
                (STDOUT, {"stdout": True, "stderr": False}),
                (STDERR, {"stdout": False, "stderr": True}),
            ):
                stream = await asyncio.to_thread(created.logs, stream=True, follow=True, **wanted)
                streams.append((name, stream))
            readers = [
                threading.Thread(target=_stream, args=(name, stream, loop, chunks), daemon=True)
                for name, stream in streams
            ]
            for reader in readers:
                reader.start()
            pump = asyncio.create_task(_pump(chunks, sink, len(readers)))
            timed_out = False
            try:
                async with asyncio.timeout(job.timeout):
                    status = await asyncio.to_thread(created.wait)
            except TimeoutError:
                timed_out = True
                status = await self._stop(created, job.kill_grace)
            except asyncio.CancelledError:
                await asyncio.shield(self._stop(created, job.kill_grace))
                raise
            finally:
                for reader in readers:
                    await asyncio.to_thread(reader.join, 30)
                await pump
        finally:
            for _, stream in streams:
                stream.close()
            await asyncio.shield(asyncio.to_thread(_remove, created))
        code = int(status.get("StatusCode", 1)) if isinstance(status, dict) else 1
        if timed_out:
            return Outcome(exit_code=code, timed_out=True, error=f"timed out after {job.timeout:g}s")
        return Outcome(exit_code=code)

    async def _stop(self, created: Any, grace: float) -> dict[str, Any]:
        """SIGTERM the container, SIGKILL after ``grace`` seconds, and wait for it."""
        await asyncio.to_thread(created.stop, timeout=max(1, round(grace)))
        result: dict[str, Any] = await asyncio.to_thread(created.wait)
        return result

    def _host_path(self, path: Path) -> Path:
        """Where ``path`` of this process is on the engine's host.

        The path itself, unless wtflow runs in a container (a Docker action): then the mounts of
        its own container translate it, so sibling containers see the same files.
        """
        mounts = self._own_mounts()
        for destination, source in sorted(mounts.items(), key=lambda item: -len(item[0])):
            if path == Path(destination) or path.is_relative_to(destination):
                return Path(source) / path.relative_to(destination)
        return path

    def _own_mounts(self) -> dict[str, str]:
        if not hasattr(self, "_mounts"):
            self._mounts: dict[str, str] = {}
            if Path("/.dockerenv").exists():
                import docker

                with contextlib.suppress(docker.errors.DockerException):
                    own = self._docker().containers.get(socket.gethostname())
                    self._mounts = {m["Destination"]: m["Source"] for m in own.attrs.get("Mounts", [])}
        return self._mounts

    def _create(self, job: Job, command: Command, container: Container) -> Any:
        workdir = str(job.cwd or Path.cwd())
        volumes = [f"{self._host_path(Path(workdir))}:{workdir}"]
        for volume in container.volumes:
            host, _, rest = volume.partition(":")
            host_path = Path(host) if Path(host).is_absolute() else (Path(workdir) / host).resolve()
            volumes.append(f"{self._host_path(host_path)}:{rest}")
        environment = dict(job.declared_env)
        environment.update(container.env or {})
        import docker

        if container.pull == "always":
            self._docker().images.pull(container.image)
        elif container.pull == "missing":
            try:
                self._docker().images.get(container.image)
            except docker.errors.ImageNotFound:
                self._docker().images.pull(container.image)
        return self._docker().containers.create(
            container.image,
            command=list(command.argv),
            environment=environment,
            working_dir=container.workdir or workdir,
            volumes=volumes,
            network_mode=container.network,
            user=container.user,
            labels={LABEL_RUN: job.run_id, LABEL_NODE: job.node},
            detach=True,
        )


def _stream(name: str, stream: Any, loop: asyncio.AbstractEventLoop, chunks: asyncio.Queue[Any]) -> None:
    try:
        for data in stream:
            loop.call_soon_threadsafe(chunks.put_nowait, (name, data))
    except Exception:  # noqa: BLE001, S110 - the stream ends when the container goes
        pass
    finally:
        with contextlib.suppress(RuntimeError):  # the loop may be closing
            loop.call_soon_threadsafe(chunks.put_nowait, None)


async def _pump(chunks: asyncio.Queue[tuple[str, bytes] | None], sink: OutputSink, streams: int) -> None:
    """Write chunks until every stream has ended."""
    while streams:
        item = await chunks.get()
        if item is None:
            streams -= 1
        else:
            await sink.write(*item)


def _remove(created: Any) -> None:
    with contextlib.suppress(Exception):  # already gone is fine
        created.remove(force=True)
