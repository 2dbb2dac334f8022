"""What the CLI's options configure (:class:`App`), the options shared by commands, and how errors are shown.

Every option has a ``WTFLOW_*`` environment variable. Precedence: flag, then environment,
then the ``--config`` INI file, then defaults. The CLI keeps its state in ``.wtflow/`` of the
current directory: the SQLite database ``.wtflow/wtflow.db`` and the artifacts ``.wtflow/artifacts/``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from wtflow.config import (
    DEFAULT_CACHE_DIR,
    STATE_DIR,
    VAR_NAME,
    VAR_NAME_RULE,
    Config,
    DaskConfig,
    DatabaseConfig,
    RunConfig,
    StorageConfig,
    parse_listen,
    vars_from_env,
)
from wtflow.durations import parse_duration
from wtflow.errors import EXIT_CODES, BackendUnavailable, WorkflowError, WtflowError
from wtflow.log import LEVELS, LogFormat

EXIT_CODES_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES)

F = TypeVar("F", bound=Callable[..., Any])
_LOCATED = re.compile(r"^\S.*:\d+:\d+: ")  # FILE:LINE:COL: message


class CliError(click.ClickException):
    """A wtflow error shown without a traceback, exiting with its code."""

    def __init__(self, error: WtflowError, *, as_json: bool = False) -> None:
        super().__init__(str(error))
        self.as_json = as_json
        self.located = isinstance(error, WorkflowError) and _LOCATED.match(str(error)) is not None
        self.exit_code = error.exit_code  # type: ignore[misc]  # click declares it on the class; ours varies

    def show(self, file: Any = None) -> None:
        """Print the message; as a JSON log line when logs are JSON."""
        stream = file or sys.stderr
        if self.as_json:
            stream.write(json.dumps({"event": "error", "level": "error", "message": self.message}) + "\n")
        elif self.located:
            click.echo(self.message, file=stream)  # already FILE:LINE:COL: what is wrong, a line each
        else:
            click.echo(f"Error: {self.message}", file=stream)  # as Click words its own usage errors


class WtflowGroup(click.Group):
    """Turns wtflow's own errors into clean messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a :class:`WtflowError` becomes a :class:`CliError`."""
        try:
            return super().invoke(ctx)
        except WtflowError as exc:
            app = ctx.find_object(App)
            as_json = app is not None and app.log_format_given and app.log_format is LogFormat.JSON
            raise CliError(exc, as_json=as_json) from None


if TYPE_CHECKING:
    _FloatType = click.ParamType[float]
    _StrType = click.ParamType[str]
else:  # not subscriptable at run time in every Click wtflow supports (8.1 on)
    _FloatType = click.ParamType
    _StrType = click.ParamType


class Duration(_FloatType):
    """Seconds >= 0, written as a number (``90``, ``2.5``) or a duration (``90s``, ``1m30s``, ``500ms``)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        """``value`` in seconds; a usage error naming the option when it is no duration."""
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class ListenAddress(_StrType):
    """Where to listen: ``HOST``, ``HOST:PORT``, ``:PORT`` or ``[IPv6]:PORT`` (:func:`~wtflow.config.parse_listen`)."""

    name = "address"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """``value``, stripped; a usage error saying the expected forms when it is none of them."""
        text = str(value).strip()
        if text:
            try:
                parse_listen(text)
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        return text


class EnvNamingOption(click.Option):
    """An option whose usage error names its environment variable when the bad value came from there."""

    def get_error_hint(self, ctx: click.Context | None) -> str:
        """``'--max-fail' (from WTFLOW_MAX_FAIL)`` for a value from the environment, else the option."""
        hint = super().get_error_hint(ctx)
        if ctx is None or self.name is None or not isinstance(self.envvar, str):
            return hint
        if ctx.get_parameter_source(self.name) is click.core.ParameterSource.ENVIRONMENT:
            return f"{hint} (from {self.envvar})"
        return hint


class ChoiceOrUnsetFromEnv(click.Option):
    """A choice option whose environment variable counts as unset when it holds none of the choices.

    For a variable that also means something else: ``WTFLOW_OUTPUT`` is a file path in a node's
    environment, so a ``wtflow run`` started by a node must not refuse it. A value given on the
    command line is still checked.
    """

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        """The variable's value if it is one of the choices, else ``None``."""
        value = super().resolve_envvar_value(ctx)
        if value is not None and isinstance(self.type, click.Choice):
            try:
                self.type.convert(value, self, ctx)
            except click.BadParameter:
                return None
        return value


def parse_var(value: str) -> tuple[str, str]:
    """``NAME=VALUE`` as ``(NAME, VALUE)``; a usage error naming ``value`` otherwise."""
    name, equals, text = value.partition("=")
    if not equals:
        raise click.BadParameter(f"{value!r}: expected NAME=VALUE")
    if not VAR_NAME.fullmatch(name):
        raise click.BadParameter(f"{value!r}: {name!r} is not a variable name; {VAR_NAME_RULE}")
    return name, text


FORCE_ALL = "*"  # what a bare --force stands for


@dataclass
class App:
    """What the options of a command configure: where state lives and how to log."""

    config_file: Path | None = None
    db_url: str | None = None
    db_retry: float | None = None
    artifacts_dir: Path | None = None
    cache_dir: Path | None = None
    force: tuple[str, ...] = ()  # node names; "*" (a bare --force) for every node
    max_parallel: int | None = None
    max_fail: int | None = None
    ignore_failure: bool | None = None
    kill_grace: float | None = None
    secrets: tuple[str, ...] = ()
    vars: tuple[tuple[str, str], ...] = ()
    mask_artifacts: bool = True
    log_format: LogFormat = LogFormat.AUTO
    log_format_given: bool = False
    log_level: str = "info"
    dask_scheduler: str | None = None
    dask_local: int | None = None
    dask_wait: float | None = None
    dask_listen: str | None = None

    def config(self) -> Config:
        """Defaults, then the INI file, then flags and environment.

        Workflow variables: ``--var`` over ``WTFLOW_VAR_<NAME>`` (read here: no option holds them).
        The Dask cluster (a scheduler or a local cluster) is one setting: a cluster given by a flag
        or a variable replaces the file's, whichever kind it is (see :func:`dask_options`).
        """
        base = Config(
            db=DatabaseConfig(f"sqlite:///{(STATE_DIR / 'wtflow.db').resolve()}"),
            storage=StorageConfig((STATE_DIR / "artifacts").resolve(), DEFAULT_CACHE_DIR.resolve()),
        )
        if self.config_file is not None:
            base = Config.from_ini(self.config_file, base=base)
        db_url = base.db.url if self.db_url is None else (self.db_url or None)
        run = base.run
        dask = base.dask
        if self.dask_scheduler is not None or self.dask_local is not None:  # a flag's cluster replaces the file's
            dask = DaskConfig(self.dask_scheduler or None, self.dask_local, dask.wait, dask.listen)
        dask = DaskConfig(
            dask.scheduler,
            dask.local,
            dask.wait if self.dask_wait is None else self.dask_wait,
            self.dask_listen or dask.listen,
        )
        return Config(
            db=DatabaseConfig(db_url, base.db.retry if self.db_retry is None else self.db_retry),
            storage=StorageConfig(
                self.artifacts_dir or base.storage.artifacts_dir, self.cache_dir or base.storage.cache_dir
            ),
            run=RunConfig(
                ignore_failure=run.ignore_failure if self.ignore_failure is None else self.ignore_failure,
                max_fail=run.max_fail if self.max_fail is None else self.max_fail,
                max_parallel=self.max_parallel or run.max_parallel,
                kill_grace=run.kill_grace if self.kill_grace is None else self.kill_grace,
                secrets=self.secrets,
                mask_artifacts=self.mask_artifacts,
                vars={**run.vars, **vars_from_env(os.environ), **dict(self.vars)},
                force=FORCE_ALL in self.force,
                force_nodes=tuple(name for name in self.force if name != FORCE_ALL),
            ),
            dask=dask,
        )

    def prepare_state_dir(self, config: Config) -> None:
        """Create ``.wtflow/`` with a ``.gitignore`` of ``*`` when the defaults keep state there."""
        state = STATE_DIR.resolve()
        uses_state = (config.db.url or "").endswith(str(state / "wtflow.db")) or (
            config.storage.artifacts_dir is not None and config.storage.artifacts_dir.is_relative_to(state)
        )
        if uses_state and not (state / ".gitignore").exists():
            try:
                state.mkdir(parents=True, exist_ok=True)
                (state / ".gitignore").write_text("# wtflow's run history and artifacts: not for version control\n*\n")
            except OSError as exc:
                (state / ".gitignore").unlink(missing_ok=True)
                raise BackendUnavailable(
                    f"the state directory {state} cannot be written: {exc.strerror or exc}; "
                    "free some space, or set --db-url and --artifacts-dir elsewhere"
                ) from None

    def configure_logging(self) -> None:
        """Set up structlog for this command (stderr)."""
        from wtflow.log import configure

        self.log_format = configure(self.log_format, self.log_level)


pass_app = click.make_pass_decorator(App, ensure=True)


def _store(attribute: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        app = ctx.ensure_object(App)
        if value is not None:
            setattr(app, attribute, value)
            if attribute == "log_format" and param.name is not None:
                source = ctx.get_parameter_source(param.name)
                # An explicit `auto` (the action's default input) chooses nothing: still auto.
                explicit = source not in {None, click.core.ParameterSource.DEFAULT}
                app.log_format_given = explicit and value is not LogFormat.AUTO
        return value

    return callback


def app_option(
    *decls: str,
    attribute: str,
    envvar: str | None,
    help: str,
    convert: Callable[[Any], Any] | None = None,
    store: Callable[[click.Context, click.Parameter, Any], Any] | None = None,
    **kwargs: Any,
) -> Callable[[F], F]:
    """An option stored on the :class:`App` (not passed to the command), its variable named in its help.

    ``envvar=None``: the option has no variable of its own (its help names what stands for one).
    ``store`` replaces the plain setting of ``attribute`` (given the converted value).
    """
    store = store or _store(attribute)

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        return store(ctx, param, convert(value) if convert is not None and value is not None else value)

    shown = f"{help}  [env: {envvar}]" if envvar else help
    kwargs.setdefault("cls", EnvNamingOption)
    return click.option(*decls, envvar=envvar, expose_value=False, callback=callback, help=shown, **kwargs)


def state_options(function: F) -> F:
    """Options saying where run history lives: --config, --db-url, --db-retry, --artifacts-dir."""
    options = [
        app_option(
            "--config",
            attribute="config_file",
            envvar="WTFLOW_CONFIG",
            type=click.Path(path_type=Path, dir_okay=False),
            help="INI file with [database], [storage], [run] and [dask] sections.",
        ),
        app_option(
            "--db-url",
            attribute="db_url",
            envvar="WTFLOW_DB_URL",
            help="sqlite:///path or postgresql://user@host/db; empty for none.  [default: sqlite:///.wtflow/wtflow.db]",
        ),
        app_option(
            "--db-retry",
            attribute="db_retry",
            envvar="WTFLOW_DB_RETRY",
            type=Duration(),
            help="How long to keep retrying rows after the run if the database went away: "
            "seconds or a duration (90s, 1m30s).  [default: 30]",
        ),
        app_option(
            "--artifacts-dir",
            attribute="artifacts_dir",
            envvar="WTFLOW_ARTIFACTS_DIR",
            type=click.Path(path_type=Path, file_okay=False),
            help="Where runs keep their output.  [default: .wtflow/artifacts]",
        ),
        app_option(
            "--cache-dir",
            attribute="cache_dir",
            envvar="WTFLOW_CACHE_DIR",
            type=click.Path(path_type=Path, file_okay=False),
            help="Where results of cached nodes (those with sources) are kept.  [default: .wtflow/cache]",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


# The cluster options, each with the other: a scheduler's address and a local cluster are one setting.
_OTHER_CLUSTER_OPTION = {"dask_scheduler": "dask_local", "dask_local": "dask_scheduler"}


def _specificity(source: click.core.ParameterSource | None) -> int:
    """How specific a value's source is: the command line over the environment over anything else."""
    if source in {click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.PROMPT}:
        return 2
    if source is click.core.ParameterSource.ENVIRONMENT:
        return 1
    return 0


def _given_as(ctx: click.Context, param: click.Parameter, value: Any) -> str:
    """How the user gave ``param`` its ``value``: ``--dask-local 2`` or ``WTFLOW_DASK_LOCAL=2``."""
    assert param.name is not None
    if ctx.get_parameter_source(param.name) is click.core.ParameterSource.ENVIRONMENT and isinstance(param.envvar, str):
        return f"{param.envvar}={value}"
    return f"{param.opts[0]} {value if value != '' else repr('')}"


def _choose_cluster(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Store a cluster option's value unless the other one came from a more specific source.

    The command line beats the environment (which beats the INI file, read later); a scheduler
    and a local cluster both from the command line, or both from the environment, are a usage
    error naming both. Click processes the options given on the command line first.
    """
    app = ctx.ensure_object(App)
    if value is None or param.name is None:
        return value
    other_name = _OTHER_CLUSTER_OPTION[param.name]
    other_value = getattr(app, other_name)
    if other_value is not None and not ctx.resilient_parsing:
        mine = _specificity(ctx.get_parameter_source(param.name))
        theirs = _specificity(ctx.get_parameter_source(other_name))
        if theirs > mine:
            return value
        if theirs == mine:
            (other,) = (candidate for candidate in ctx.command.params if candidate.name == other_name)
            given = [_given_as(ctx, param, value), _given_as(ctx, other, other_value)]
            if param.name != "dask_scheduler":  # the scheduler named first, as in --help
                given.reverse()
            raise click.UsageError(
                f"{given[0]} and {given[1]} both choose the Dask cluster: "
                "give a scheduler's address or a number of local workers, not both",
                ctx,
            )
        setattr(app, other_name, None)
    setattr(app, param.name, value)
    return value


def dask_options(function: F) -> F:
    """Options sending nodes to a Dask cluster: --dask-scheduler, --dask-local, --dask-wait, --dask-listen.

    --dask-scheduler and --dask-local are one setting, the cluster: the most specific source of
    either wins (a flag, then a ``WTFLOW_DASK_*`` variable, then the INI file), and both from the
    same source are a usage error.
    """
    options = [
        app_option(
            "--dask-scheduler",
            attribute="dask_scheduler",
            envvar="WTFLOW_DASK_SCHEDULER",
            store=_choose_cluster,
            metavar="ADDRESS",
            help="Run nodes on the workers of the Dask cluster of this scheduler (tcp://HOST:8786), "
            "except those with runs_on: local. Replaces a local cluster set by WTFLOW_DASK_LOCAL or the INI file.",
        ),
        app_option(
            "--dask-local",
            attribute="dask_local",
            envvar="WTFLOW_DASK_LOCAL",
            store=_choose_cluster,
            type=click.IntRange(min=1),
            metavar="N",
            help="Run nodes on a Dask cluster of N worker processes started on this machine, to try it out. "
            "Replaces a scheduler set by WTFLOW_DASK_SCHEDULER or the INI file.",
        ),
        app_option(
            "--dask-wait",
            attribute="dask_wait",
            envvar="WTFLOW_DASK_WAIT",
            type=Duration(),
            help="How long to wait for the scheduler to answer, and a node for a worker that can run it "
            "(one with its resources), before failing.  [default: 60s]",
        ),
        app_option(
            "--dask-listen",
            attribute="dask_listen",
            envvar="WTFLOW_DASK_LISTEN",
            type=ListenAddress(),
            metavar="[HOST][:PORT]",
            help="Where the workers connect back to stream nodes' output: HOST, HOST:PORT, :PORT or "
            "[IPv6]:PORT. On 0.0.0.0 or ::, every interface, and the workers are given this host's "
            "address toward the scheduler.  [default: this host's address toward the scheduler, any free port]",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def log_options(function: F) -> F:
    """Options for wtflow's own logs: --log-format, --log-level."""
    function = app_option(
        "--log-level",
        attribute="log_level",
        envvar="WTFLOW_LOG_LEVEL",
        type=click.Choice(LEVELS, case_sensitive=False),
        help="Least severe log level shown.  [default: info]",
    )(function)
    return app_option(
        "--log-format",
        attribute="log_format",
        envvar="WTFLOW_LOG_FORMAT",
        convert=LogFormat,
        type=click.Choice([f.value for f in LogFormat]),
        default="auto",
        help="auto: readable on a terminal, JSON lines otherwise.",
    )(function)
