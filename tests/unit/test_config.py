"""Configuration from the environment and INI files, with clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from wtflow import Config, ConfigError
from wtflow.config import default_max_parallel


def test_defaults() -> None:
    config = Config()
    assert (config.db.url, config.storage.artifacts_dir, config.run.ignore_failure) == (None, None, False)
    assert config.run.max_parallel is None


@pytest.mark.parametrize(("cpus", "expected"), [(None, 5), (1, 5), (2, 6), (16, 20), (28, 32), (64, 32)])
def test_default_max_parallel_is_cpus_plus_four_at_most_32(
    monkeypatch: pytest.MonkeyPatch, cpus: int | None, expected: int
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    assert default_max_parallel() == expected


def test_from_env_reads_every_variable() -> None:
    config = Config.from_env(
        {
            "WTFLOW_DB_URL": "sqlite:///x.db",
            "WTFLOW_ARTIFACTS_DIR": "/tmp/arts",
            "WTFLOW_IGNORE_FAILURE": "true",
            "WTFLOW_MAX_PARALLEL": "7",
            "WTFLOW_KILL_GRACE": "2.5",
            "WTFLOW_DB_RETRY": "4",
        }
    )
    assert config.db.url == "sqlite:///x.db"
    assert config.db.retry == 4.0
    assert config.storage.artifacts_dir == Path("/tmp/arts")
    assert config.run.ignore_failure is True
    assert config.run.max_parallel == 7
    assert config.run.kill_grace == 2.5


@pytest.mark.parametrize(("raw", "expected"), [("0", False), ("1", True), ("false", False), ("TRUE", True)])
def test_ignore_failure_accepts_documented_booleans(raw: str, expected: bool) -> None:
    assert Config.from_env({"WTFLOW_IGNORE_FAILURE": raw}).run.ignore_failure is expected


def test_bad_boolean_names_the_variable_and_accepted_values() -> None:
    with pytest.raises(ConfigError, match=r"WTFLOW_IGNORE_FAILURE: expected one of 0, 1, true, false.*got 'maybe'"):
        Config.from_env({"WTFLOW_IGNORE_FAILURE": "maybe"})


@pytest.mark.parametrize("raw", ["0", "-2", "many", ""])
def test_bad_max_parallel_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="WTFLOW_MAX_PARALLEL: expected a whole number >= 1"):
        Config.from_env({"WTFLOW_MAX_PARALLEL": raw})


def test_from_ini_reads_every_section(tmp_path: Path) -> None:
    ini = tmp_path / "wtflow.ini"
    ini.write_text(
        "[database]\nurl = sqlite:///runs.db\nretry = 0\n[storage]\nartifacts_dir = arts\n"
        "[run]\nignore_failure = yes\nmax_parallel = 3\n"
    )
    config = Config.from_ini(ini)
    assert config.db.url == "sqlite:///runs.db"
    assert config.db.retry == 0.0
    assert config.storage.artifacts_dir == Path("arts")
    assert config.run.ignore_failure is True
    assert config.run.max_parallel == 3


def test_missing_ini_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file '.*nope.ini' does not exist"):
        Config.from_ini(tmp_path / "nope.ini")


def test_unknown_ini_key_suggests_the_right_one(tmp_path: Path) -> None:
    ini = tmp_path / "wtflow.ini"
    ini.write_text("[run]\nmax_paralel = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'max_paralel' in \\[run\\]; did you mean 'max_parallel'"):
        Config.from_ini(ini)


def test_unknown_ini_section_is_rejected(tmp_path: Path) -> None:
    ini = tmp_path / "wtflow.ini"
    ini.write_text("[databse]\nurl = x\n")
    with pytest.raises(ConfigError, match="unknown section \\[databse\\]; did you mean 'database'"):
        Config.from_ini(ini)


def test_bad_ini_value_names_file_section_and_key(tmp_path: Path) -> None:
    ini = tmp_path / "wtflow.ini"
    ini.write_text("[run]\nmax_parallel = lots\n")
    with pytest.raises(ConfigError, match=r"wtflow.ini \[run\] max_parallel: expected a whole number"):
        Config.from_ini(ini)


def test_environment_overrides_ini(tmp_path: Path) -> None:
    ini = tmp_path / "wtflow.ini"
    ini.write_text("[run]\nmax_parallel = 3\nignore_failure = true\n")
    config = Config.from_env({"WTFLOW_MAX_PARALLEL": "9"}, base=Config.from_ini(ini))
    assert (config.run.max_parallel, config.run.ignore_failure) == (9, True)


@pytest.mark.parametrize("raw", ["-1", "soon", "inf"])
def test_bad_database_retry_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="WTFLOW_DB_RETRY: expected a number of seconds >= 0"):
        Config.from_env({"WTFLOW_DB_RETRY": raw})
