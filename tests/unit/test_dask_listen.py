"""Where the runner listens for the Dask workers: the forms ``--dask-listen`` takes, and the errors for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from wtflow import Config, ConfigError
from wtflow.config import DaskConfig, parse_listen

EVERY_IPV4 = "0.0.0.0"  # noqa: S104 - the wildcard, parsed only


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.5:9000", ("10.0.0.5", 9000)),
        ("runner.example:9000", ("runner.example", 9000)),
        ("runner", ("runner", 0)),
        ("10.0.0.5", ("10.0.0.5", 0)),
        (":9000", (None, 9000)),
        (":0", (None, 0)),
        (EVERY_IPV4, (EVERY_IPV4, 0)),
        (f"{EVERY_IPV4}:9000", (EVERY_IPV4, 9000)),
        ("::", ("::", 0)),
        ("[::]:9000", ("::", 9000)),
        ("[::1]:0", ("::1", 0)),
        ("[fd00::5]:65535", ("fd00::5", 65535)),
        ("[fd00::5]", ("fd00::5", 0)),
        ("fd00::5", ("fd00::5", 0)),
        ("  runner:1  ", ("runner", 1)),
    ],
)
def test_listen_forms(value: str, expected: tuple[str | None, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        ":",
        "runner:",
        "runner:port",
        "runner:65536",
        "runner:-1",
        "runner:1:2",
        "tcp://runner:9000",
        "run ner",
        "[::1",
        "[::1]9000",
        "[::1]:",
        "[runner]:9000",
        "fd00::zz",
        "999.1.1.1",
        "10.0.0.5.",
    ],
)
def test_other_values_say_the_forms_expected(value: str) -> None:
    with pytest.raises(ValueError, match=r"expected HOST, HOST:PORT, :PORT or \[IPv6\]:PORT") as caught:
        parse_listen(value)
    assert str(caught.value).startswith(repr(value))


def test_a_bad_listen_address_in_the_ini_file_names_the_file_and_key(tmp_path: Path) -> None:
    ini = tmp_path / "wtflow.ini"
    ini.write_text("[dask]\nlisten = runner:port\n")
    with pytest.raises(ConfigError, match=rf"^{ini} \[dask\] listen: 'runner:port': 'port' is no port; expected"):
        Config.from_ini(ini)


def test_a_bad_listen_address_in_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^WTFLOW_DASK_LISTEN: '\[::1': expected"):
        Config.from_env({"WTFLOW_DASK_LISTEN": "[::1"})


def test_a_bad_listen_address_from_python_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"^dask\.listen: 'a b': expected"):
        DaskConfig(scheduler="tcp://s:1", listen="a b")


def test_an_empty_listen_address_is_the_default(tmp_path: Path) -> None:
    ini = tmp_path / "wtflow.ini"
    ini.write_text("[dask]\nlisten =\n")
    assert Config.from_ini(ini).dask.listen is None
    assert Config.from_env({"WTFLOW_DASK_LISTEN": " "}).dask.listen is None
