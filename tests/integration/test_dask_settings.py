"""``wtflow run``'s Dask settings: which cluster wins among flags, variables and the INI file, and --dask-listen.

The cluster (a scheduler's address or a local cluster) is one setting: the most specific source
that gives one wins (flag, then variable, then INI file); two from the same source are a usage
error. Values are checked in the :class:`~wtflow.config.Config` the options build (parsed as the
command line would be, nothing run); errors through the real ``wtflow run``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import cli
from wtflow.cli.options import App
from wtflow.cli.run import run
from wtflow.config import DaskConfig

SCHEDULER = "tcp://127.0.0.1:8786"
EVERY_IPV4 = "0.0.0.0"  # noqa: S104 - the wildcard, parsed only
USAGE = 2


@pytest.fixture
def project(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A one-node workflow in the test's directory, with no Dask setting in the environment."""
    for variable in [name for name in os.environ if name.startswith("WTFLOW_DASK_")]:
        monkeypatch.delenv(variable)
    monkeypatch.delenv("WTFLOW_CONFIG", raising=False)
    (workdir / "wtflow.yml").write_text("name: w\nnodes:\n  - {name: a, command: touch ran}\n")
    return workdir


def dask(*args: str) -> DaskConfig:
    """The Dask settings ``wtflow run ARGS`` would run with: options parsed, nothing run."""
    with run.make_context("run", list(args)) as ctx:
        return ctx.ensure_object(App).config().dask


def ini(project: Path, text: str) -> str:
    path = project / "wtflow.ini"
    path.write_text(f"[dask]\n{text}\n")
    return str(path)


# The cluster: one setting, from the most specific source


def test_a_scheduler_flag_wins_over_a_local_cluster_variable(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WTFLOW_DASK_LOCAL", "2")
    config = dask("--dask-scheduler", SCHEDULER)
    assert (config.scheduler, config.local) == (SCHEDULER, None)


def test_a_local_cluster_flag_wins_over_a_scheduler_variable(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WTFLOW_DASK_SCHEDULER", SCHEDULER)
    config = dask("--dask-local", "2")
    assert (config.scheduler, config.local) == (None, 2)


def test_a_scheduler_flag_wins_over_the_ini_files_local_cluster(project: Path) -> None:
    config = dask("--config", ini(project, "local = 2\nwait = 5s"), "--dask-scheduler", SCHEDULER)
    assert (config.scheduler, config.local, config.wait) == (SCHEDULER, None, 5.0)


def test_a_local_cluster_flag_wins_over_the_ini_files_scheduler(project: Path) -> None:
    config = dask("--config", ini(project, f"scheduler = {SCHEDULER}"), "--dask-local", "3")
    assert (config.scheduler, config.local) == (None, 3)


def test_a_scheduler_variable_wins_over_the_ini_files_local_cluster(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WTFLOW_DASK_SCHEDULER", SCHEDULER)
    config = dask("--config", ini(project, "local = 2"))
    assert (config.scheduler, config.local) == (SCHEDULER, None)


def test_a_local_cluster_variable_wins_over_the_ini_files_scheduler(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WTFLOW_DASK_LOCAL", "2")
    config = dask("--config", ini(project, f"scheduler = {SCHEDULER}"))
    assert (config.scheduler, config.local) == (None, 2)


def test_the_ini_files_cluster_stands_without_a_flag_or_variable(project: Path) -> None:
    config = dask("--config", ini(project, "local = 2"))
    assert (config.scheduler, config.local) == (None, 2)


def test_a_flag_wins_over_the_same_options_variable(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WTFLOW_DASK_SCHEDULER", "tcp://elsewhere:8786")
    monkeypatch.setenv("WTFLOW_DASK_LISTEN", "10.0.0.9")
    config = dask("--dask-scheduler", SCHEDULER, "--dask-listen", ":9000")
    assert (config.scheduler, config.listen) == (SCHEDULER, ":9000")


@pytest.mark.parametrize(
    ("flag", "expected"), [(("--dask-scheduler", SCHEDULER), (SCHEDULER, None)), (("--dask-local", "4"), (None, 4))]
)
def test_a_flag_decides_even_when_both_variables_are_set(
    project: Path, monkeypatch: pytest.MonkeyPatch, flag: tuple[str, str], expected: tuple[str | None, int | None]
) -> None:
    """The two variables would clash, but the command line chose the cluster."""
    monkeypatch.setenv("WTFLOW_DASK_SCHEDULER", "tcp://elsewhere:8786")
    monkeypatch.setenv("WTFLOW_DASK_LOCAL", "2")
    config = dask(*flag)
    assert (config.scheduler, config.local) == expected


def test_both_cluster_flags_are_a_usage_error_naming_both(project: Path) -> None:
    result = cli("run", "--dask-local", "2", "--dask-scheduler", SCHEDULER, "--db-url", "")
    assert result.exit_code == USAGE
    assert result.stdout == ""
    assert result.stderr.endswith(
        f"Error: --dask-scheduler {SCHEDULER} and --dask-local 2 both choose the Dask cluster: "
        "give a scheduler's address or a number of local workers, not both\n"
    )
    assert not (project / "ran").exists()


def test_both_cluster_variables_are_a_usage_error_naming_both(project: Path) -> None:
    result = cli("run", "--db-url", "", env={"WTFLOW_DASK_SCHEDULER": SCHEDULER, "WTFLOW_DASK_LOCAL": "2"})
    assert result.exit_code == USAGE
    assert result.stdout == ""
    assert f"Error: WTFLOW_DASK_SCHEDULER={SCHEDULER} and WTFLOW_DASK_LOCAL=2 both choose" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "ran").exists()


def test_both_cluster_keys_of_the_ini_file_are_a_usage_error(project: Path) -> None:
    result = cli("run", "--db-url", "", "--config", ini(project, f"scheduler = {SCHEDULER}\nlocal = 2"))
    assert result.exit_code == USAGE
    assert f"give a scheduler ({SCHEDULER}) or a local cluster (2 workers), not both" in result.stderr
    assert not (project / "ran").exists()


# --dask-listen


@pytest.mark.parametrize("value", [EVERY_IPV4, ":9000", "[::1]:0", "runner.example:9000", "::"])
def test_listen_addresses_reach_the_config(project: Path, value: str) -> None:
    assert dask("--dask-listen", value).listen == value


def test_the_listen_flag_wins_over_the_ini_file(project: Path) -> None:
    assert dask("--config", ini(project, "listen = 10.0.0.9"), "--dask-listen", "0.0.0.0:9000").listen == "0.0.0.0:9000"


def test_a_bad_listen_flag_exits_2_saying_the_forms(project: Path) -> None:
    result = cli("run", "--dask-listen", "runner:port", "--db-url", "")
    assert result.exit_code == USAGE
    assert result.stdout == ""
    assert result.stderr.endswith(
        "Error: Invalid value for '--dask-listen': 'runner:port': 'port' is no port; "
        "expected HOST, HOST:PORT, :PORT or [IPv6]:PORT (PORT from 0, any free port, to 65535)\n"
    )
    assert not (project / "ran").exists()


def test_a_bad_listen_variable_exits_2_naming_it(project: Path) -> None:
    result = cli("run", "--db-url", "", env={"WTFLOW_DASK_LISTEN": "[::1"})
    assert result.exit_code == USAGE
    assert "Error: Invalid value for '--dask-listen' (from WTFLOW_DASK_LISTEN): '[::1': expected HOST" in result.stderr
    assert not (project / "ran").exists()


def test_a_bad_listen_key_exits_2_naming_the_file(project: Path) -> None:
    path = ini(project, "listen = a b")
    result = cli("run", "--db-url", "", "--config", path)
    assert result.exit_code == USAGE
    assert f"{path} [dask] listen: 'a b': expected HOST" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "ran").exists()
