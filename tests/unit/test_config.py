"""Configuration from the environment and INI files, with clear errors for bad values."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from wtflow import Config, ConfigError, RunConfig
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
            "WTFLOW_MAX_FAIL": "2",
            "WTFLOW_VAR_A": "1",
        }
    )
    assert config.db.url == "sqlite:///x.db"
    assert config.db.retry == 4.0
    assert config.storage.artifacts_dir == Path("/tmp/arts")
    assert config.run.ignore_failure is True
    assert config.run.max_parallel == 7
    assert config.run.kill_grace == 2.5
    assert config.run.max_fail == 2
    assert dict(config.run.vars) == {"A": "1"}


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
        "[run]\nignore_failure = yes\nmax_parallel = 3\nmax_fail = 1\nkill_grace = 4\n"
    )
    config = Config.from_ini(ini)
    assert config.db.url == "sqlite:///runs.db"
    assert config.db.retry == 0.0
    assert config.storage.artifacts_dir == Path("arts")
    assert config.run.ignore_failure is True
    assert config.run.max_parallel == 3
    assert config.run.max_fail == 1
    assert config.run.kill_grace == 4.0


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


@pytest.mark.parametrize("raw", ["soon", "inf", "2x"])
def test_bad_database_retry_names_the_variable_and_the_accepted_forms(raw: str) -> None:
    message = f"WTFLOW_DB_RETRY: {raw!r} is not a duration; write seconds (90) or e.g. 90s, 5m, 1h30m"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        Config.from_env({"WTFLOW_DB_RETRY": raw})


@pytest.mark.parametrize("raw", ["-1", "-1s"])
def test_negative_database_retry_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match=f"^WTFLOW_DB_RETRY: {re.escape(repr(raw))} is not a duration >= 0$"):
        Config.from_env({"WTFLOW_DB_RETRY": raw})


# Durations: WTFLOW_KILL_GRACE, WTFLOW_DB_RETRY, [run] kill_grace, [database] retry


@pytest.mark.parametrize(("raw", "seconds"), [("2.5", 2.5), ("2s", 2.0), ("1m30s", 90.0), ("500ms", 0.5)])
def test_kill_grace_variable_takes_seconds_or_a_duration(raw: str, seconds: float) -> None:
    assert Config.from_env({"WTFLOW_KILL_GRACE": raw}).run.kill_grace == seconds


@pytest.mark.parametrize(("raw", "seconds"), [("45", 45.0), ("1m", 60.0)])
def test_database_retry_variable_takes_seconds_or_a_duration(raw: str, seconds: float) -> None:
    assert Config.from_env({"WTFLOW_DB_RETRY": raw}).db.retry == seconds


def test_ini_durations_take_units(tmp_path: Path) -> None:
    ini = tmp_path / "wtflow.ini"
    ini.write_text("[database]\nretry = 1m30s\n[run]\nkill_grace = 2s\n")
    config = Config.from_ini(ini)
    assert (config.db.retry, config.run.kill_grace) == (90.0, 2.0)


def test_bad_kill_grace_variable_names_it_and_the_accepted_forms() -> None:
    message = "WTFLOW_KILL_GRACE: '2x' is not a duration; write seconds (90) or e.g. 90s, 5m, 1h30m"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        Config.from_env({"WTFLOW_KILL_GRACE": "2x"})


def test_bad_ini_duration_names_file_section_and_key(tmp_path: Path) -> None:
    ini = tmp_path / "wtflow.ini"
    ini.write_text("[run]\nkill_grace = 2x\n")
    with pytest.raises(ConfigError, match=r"wtflow.ini \[run\] kill_grace: '2x' is not a duration; write seconds"):
        Config.from_ini(ini)


def test_infinite_kill_grace_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"run.kill_grace: expected a number of seconds >= 0, got inf"):
        RunConfig(kill_grace=math.inf)


# max_fail: WTFLOW_MAX_FAIL, [run] max_fail, RunConfig(max_fail=...)


def test_max_fail_is_unset_by_default_so_the_workflows_own_applies() -> None:
    assert Config().run.max_fail is None


@pytest.mark.parametrize(("raw", "expected"), [("0", 0), ("3", 3), (" 2 ", 2)])
def test_max_fail_variable_is_read(raw: str, expected: int) -> None:
    assert Config.from_env({"WTFLOW_MAX_FAIL": raw}).run.max_fail == expected


def test_max_fail_is_read_from_ini(tmp_path: Path) -> None:
    ini = tmp_path / "wtflow.ini"
    ini.write_text("[run]\nmax_fail = 2\n")
    assert Config.from_ini(ini).run.max_fail == 2


@pytest.mark.parametrize("raw", ["-1", "many", "", "1.5"])
def test_bad_max_fail_variable_names_it(raw: str) -> None:
    message = f"WTFLOW_MAX_FAIL: expected a whole number >= 0, got {raw!r}"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        Config.from_env({"WTFLOW_MAX_FAIL": raw})


def test_bad_ini_max_fail_names_file_section_and_key(tmp_path: Path) -> None:
    ini = tmp_path / "wtflow.ini"
    ini.write_text("[run]\nmax_fail = -2\n")
    with pytest.raises(ConfigError, match=r"wtflow.ini \[run\] max_fail: expected a whole number >= 0, got '-2'"):
        Config.from_ini(ini)


@pytest.mark.parametrize("value", [-1, True, 1.5, "2"])
def test_run_config_refuses_a_max_fail_that_is_no_whole_number_from_zero(value: object) -> None:
    message = f"run.max_fail: expected a whole number >= 0, got {value!r}"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        RunConfig(max_fail=value)  # type: ignore[arg-type]


# Workflow variables: WTFLOW_VAR_<NAME>, RunConfig(vars=...)


def test_vars_default_to_empty() -> None:
    assert dict(Config().run.vars) == {}


def test_from_env_reads_every_var_variable_keeping_the_names_case() -> None:
    config = Config.from_env({"WTFLOW_VAR_Version": "1.2", "WTFLOW_VAR_my-target": "x86", "WTFLOW_VARIANT": "no"})
    assert dict(config.run.vars) == {"Version": "1.2", "my-target": "x86"}


def test_var_variables_override_the_base_by_name() -> None:
    base = Config(run=RunConfig(vars={"A": "base", "B": "base"}))
    config = Config.from_env({"WTFLOW_VAR_A": "env"}, base=base)
    assert dict(config.run.vars) == {"A": "env", "B": "base"}


@pytest.mark.parametrize("variable", ["WTFLOW_VAR_", "WTFLOW_VAR_1A", "WTFLOW_VAR_a.b"])
def test_var_variable_with_a_bad_name_names_the_variable(variable: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(variable)}: .* is not a variable name; a name starts with"):
        Config.from_env({variable: "1"})


def test_vars_are_read_only_and_kept_from_the_caller() -> None:
    given = {"A": "1"}
    run = RunConfig(vars=given)
    given["A"] = "changed"
    assert run.vars["A"] == "1"
    with pytest.raises(TypeError):
        run.vars["A"] = "2"  # type: ignore[index]


def test_configs_with_vars_stay_hashable_and_compare_by_value() -> None:
    one = Config(run=RunConfig(vars={"A": "1", "B": "2"}))
    same = Config(run=RunConfig(vars={"B": "2", "A": "1"}))
    assert one == same
    assert hash(one) == hash(same)
    assert one != Config(run=RunConfig(vars={"A": "1"}))


@pytest.mark.parametrize(
    ("vars_", "message"), [({"1A": "x"}, "'1A' is not a variable name"), ({"A": 1}, "must be a string")]
)
def test_run_config_refuses_bad_vars(vars_: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^run.vars: .*{message}"):
        RunConfig(vars=vars_)  # type: ignore[arg-type]


def test_dask_settings_come_from_variables() -> None:
    config = Config.from_env(
        {"WTFLOW_DASK_SCHEDULER": "tcp://sched:8786", "WTFLOW_DASK_WAIT": "1m30s", "WTFLOW_DASK_LISTEN": "10.0.0.5"}
    )
    assert (config.dask.scheduler, config.dask.local, config.dask.wait) == ("tcp://sched:8786", None, 90.0)
    assert config.dask.listen == "10.0.0.5"
    assert config.dask.enabled


def test_dask_settings_come_from_the_ini_file(tmp_path: Path) -> None:
    ini = tmp_path / "wtflow.ini"
    ini.write_text("[dask]\nlocal = 2\nwait = 5s\n")
    config = Config.from_ini(ini)
    assert (config.dask.scheduler, config.dask.local, config.dask.wait) == (None, 2, 5.0)


def test_no_dask_cluster_by_default() -> None:
    assert not Config().dask.enabled


def test_a_variables_scheduler_replaces_the_ini_files_local_cluster(tmp_path: Path) -> None:
    ini = tmp_path / "wtflow.ini"
    ini.write_text("[dask]\nlocal = 2\n")
    config = Config.from_env({"WTFLOW_DASK_SCHEDULER": "tcp://s:1"}, base=Config.from_ini(ini))
    assert (config.dask.scheduler, config.dask.local) == ("tcp://s:1", None)


def test_a_scheduler_and_a_local_cluster_from_one_source_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"give a scheduler \(tcp://s:1\) or a local cluster \(2 workers\), not both"):
        Config.from_env({"WTFLOW_DASK_SCHEDULER": "tcp://s:1", "WTFLOW_DASK_LOCAL": "2"})


@pytest.mark.parametrize(("kwargs", "message"), [({"local": 0}, "dask.local"), ({"wait": -1.0}, "dask.wait")])
def test_bad_dask_settings_name_the_key(kwargs: dict[str, float], message: str) -> None:
    from wtflow.config import DaskConfig

    with pytest.raises(ConfigError, match=message):
        DaskConfig(**kwargs)  # type: ignore[arg-type]
