"""Where the runner listens for the workers (--dask-listen), and the address the workers are told to connect to."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.conftest import cli
from tests.dask.conftest import Cluster, require_distributed
from wtflow import Command, Node, Workflow
from wtflow.config import DaskConfig
from wtflow.executors.dask_executor import DaskExecutor, _listen_address

EVERY_IPV4 = "0.0.0.0"  # noqa: S104 - the wildcard under test
LOCAL_SCHEDULER = "tcp://127.0.0.1:8786"


@pytest.fixture(autouse=True)
def _distributed() -> None:
    require_distributed()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        (None, ("127.0.0.1", 0, "127.0.0.1")),
        (":9000", ("127.0.0.1", 9000, "127.0.0.1")),
        ("10.0.0.5:9000", ("10.0.0.5", 9000, "10.0.0.5")),
        ("runner.example", ("runner.example", 0, "runner.example")),
        (EVERY_IPV4, (EVERY_IPV4, 0, "127.0.0.1")),
        (f"{EVERY_IPV4}:9000", (EVERY_IPV4, 9000, "127.0.0.1")),
        ("[::1]:0", ("::1", 0, "::1")),
    ],
)
def test_where_the_runner_listens_and_what_the_workers_are_told(
    listen: str | None, expected: tuple[str, int, str]
) -> None:
    assert _listen_address(listen, LOCAL_SCHEDULER) == expected


@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="this system has no dual-stack IPv6 sockets")
def test_on_the_ipv6_wildcard_the_workers_are_told_the_address_toward_the_scheduler() -> None:
    """``::`` takes IPv4 connections too: a scheduler reached over IPv4 gives an IPv4 address."""
    assert _listen_address("[::]:9000", LOCAL_SCHEDULER) == ("::", 9000, "127.0.0.1")


@needs_ipv6
def test_a_scheduler_reached_over_ipv6_gives_an_ipv6_address() -> None:
    assert _listen_address(None, "tcp://[::1]:8786") == ("::1", 0, "::1")
    assert _listen_address("::", "tcp://[::1]:8786") == ("::", 0, "::1")


def test_on_the_ipv4_wildcard_an_ipv6_scheduler_gives_the_host_name() -> None:
    """No IPv4 route to an IPv6 address: the workers get this machine's name, never the wildcard."""
    assert _listen_address(EVERY_IPV4, "tcp://[::1]:8786") == (EVERY_IPV4, 0, socket.gethostname())


def test_on_a_wildcard_the_workers_connect_to_a_real_address(cluster: Cluster) -> None:
    """Listening on 0.0.0.0, the executor tells the workers 127.0.0.1 (the route to the test's scheduler)."""

    async def announced() -> tuple[str, int]:
        executor = DaskExecutor(DaskConfig(scheduler=cluster.address, listen=EVERY_IPV4))
        try:
            await executor.preflight(Workflow("w", Node("a", Command("true"))), 1)
            assert executor._runner is not None
            host, port = executor._runner
            _, writer = await asyncio.open_connection(host, port)  # the listener takes it there
            writer.close()
            await writer.wait_closed()
            return host, port
        finally:
            await executor.aclose()

    host, port = asyncio.run(announced())
    assert host == "127.0.0.1"
    assert port > 0


@pytest.mark.parametrize(
    "listen", [EVERY_IPV4, pytest.param("[::]:0", marks=needs_ipv6), pytest.param("[::1]:0", marks=needs_ipv6)]
)
def test_nodes_run_with_the_runner_listening_on(workdir: Path, cluster: Cluster, listen: str) -> None:
    (workdir / "wtflow.yml").write_text("name: l\nnodes:\n  - {name: a, command: echo streamed back}\n")
    result = cli("run", "--dask-scheduler", cluster.address, "--dask-listen", listen, "--db-url", "")
    assert result.exit_code == 0, result.output
    assert result.stdout == "streamed back\n"
