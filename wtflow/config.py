"""Engine configuration: defaults, ``WTFLOW_*`` environment variables and INI files.

INI layout (durations are seconds, ``90``, or e.g. ``90s``, ``1m30s``)::

    [database]
    url = sqlite:///wtflow.db
    retry = 30s
    [storage]
    artifacts_dir = .wtflow/artifacts
    cache_dir = .wtflow/cache
    [run]
    ignore_failure = false
    max_fail = 0
    max_parallel = 8
    kill_grace = 10s
    [dask]
    scheduler = tcp://scheduler:8786
    wait = 60s
    listen = 0.0.0.0:9000

Workflow variables come from ``WTFLOW_VAR_<NAME>`` variables (and the CLI's ``--var NAME=VALUE``),
not from INI files.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from wtflow.durations import parse_duration
from wtflow.errors import ConfigError

# wtflow's own settings that may carry a password: kept out of the nodes' environment.
CREDENTIAL_VARIABLES = frozenset({"WTFLOW_DB_URL", "INPUT_DB-URL", "INPUT_DB_URL"})
TRUE_VALUES = {"1", "true", "yes", "on"}
FALSE_VALUES = {"0", "false", "no", "off"}
VAR_PREFIX = "WTFLOW_VAR_"  # WTFLOW_VAR_<NAME>=value sets the workflow variable NAME
VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
VAR_NAME_RULE = "a name starts with a letter or _, then letters, digits, _ or -"
# Hosts that listen on every interface of this machine: no address another machine can connect to.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})  # noqa: S104 - listening everywhere is what they ask for
LISTEN_FORMS = "expected HOST, HOST:PORT, :PORT or [IPv6]:PORT (PORT from 0, any free port, to 65535)"
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_IPV4_LIKE = re.compile(r"[0-9.]+")


def default_max_parallel() -> int:
    """``min(32, cpu_count + 4)``, like :class:`concurrent.futures.ThreadPoolExecutor`."""
    return min(32, (os.cpu_count() or 1) + 4)


def parse_bool(value: str, where: str) -> bool:
    """``value`` as a boolean; ``where`` names the variable or key in the error."""
    lowered = value.strip().lower()
    if lowered in TRUE_VALUES:
        return True
    if lowered in FALSE_VALUES:
        return False
    raise ConfigError(f"{where}: expected one of 0, 1, true, false, yes, no, on, off; got {value!r}")


def parse_positive_int(value: str, where: str) -> int:
    """``value`` as a whole number >= 1."""
    try:
        number = int(value.strip())
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"{where}: expected a whole number >= 1, got {value!r}")
    return number


def parse_non_negative_int(value: str, where: str) -> int:
    """``value`` as a whole number >= 0."""
    try:
        number = int(value.strip())
    except ValueError:
        number = -1
    if number < 0:
        raise ConfigError(f"{where}: expected a whole number >= 0, got {value!r}")
    return number


def parse_seconds(value: str, where: str) -> float:
    """``value`` as seconds >= 0: a number (``90``, ``2.5``) or a duration (``90s``, ``1m30s``)."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_listen(value: str) -> tuple[str | None, int]:
    """Where to listen, ``HOST``, ``HOST:PORT``, ``:PORT`` or ``[IPv6]:PORT``, as ``(host, port)``.

    ``host`` is ``None`` for ``:PORT`` (the caller's default host), and ``port`` 0 (any free port)
    when none is given. A bare IPv6 address (``::1``, or the wildcard ``::``) is a host without a
    port: its colons leave no room for one. ``ValueError`` saying the expected forms otherwise.
    """
    text = value.strip()
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{value!r}: {LISTEN_FORMS}")
        return _ipv6(inside, value), _port(rest[1:], value) if rest else 0
    if text.count(":") > 1:
        return _ipv6(text, value), 0
    host, colon, port_text = text.partition(":")
    port = _port(port_text, value) if colon else 0
    if not host:
        if not colon:
            raise ValueError(f"{value!r}: {LISTEN_FORMS}")
        return None, port
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{value!r}: {LISTEN_FORMS}")
    if _IPV4_LIKE.fullmatch(host):  # digits and dots are an IPv4 address, never a name
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host!r} is no IPv4 address; {LISTEN_FORMS}") from None
    return host, port


def _ipv6(text: str, value: str) -> str:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError(f"{value!r}: {text!r} is no IPv6 address; {LISTEN_FORMS}") from None
    return text


def _port(text: str, value: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > 65535:  # the highest TCP port
        raise ValueError(f"{value!r}: {text!r} is no port; {LISTEN_FORMS}")
    return int(text)


def vars_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The workflow variables set as ``WTFLOW_VAR_<NAME>=value`` in ``environ`` (``NAME`` as written)."""
    found: dict[str, str] = {}
    for variable, value in environ.items():
        if variable.startswith(VAR_PREFIX):
            name = variable.removeprefix(VAR_PREFIX)
            if not VAR_NAME.fullmatch(name):
                raise ConfigError(f"{variable}: {name!r} is not a variable name; {VAR_NAME_RULE}")
            found[name] = value
    return found


class FrozenVars(Mapping[str, str]):
    """Workflow variables, NAME -> value: a read-only, hashable mapping (so configurations stay hashable)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._items = dict(items)

    def __getitem__(self, name: str) -> str:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"FrozenVars({self._items!r})"


@dataclass(frozen=True)
class DatabaseConfig:
    """Where runs are recorded: a SQLAlchemy URL (``sqlite:///file.db``, ``postgresql://...``).

    ``retry`` is how many seconds, after the run has ended, rows that could not be written
    (the database went away) are retried before they are given up (with a warning; the run's
    ``events.jsonl`` and ``run.json`` still hold them).
    """

    url: str | None = None
    retry: float = 30.0

    @property
    def password(self) -> str | None:
        """The password in :attr:`url`, if it has one (it is masked like a secret)."""
        from urllib.parse import urlsplit  # only when a database is configured

        try:
            return urlsplit(self.url).password if self.url else None
        except ValueError:  # not a URL urllib can split: the database will say what is wrong
            return None

    def __post_init__(self) -> None:
        if self.retry < 0 or not math.isfinite(self.retry):
            raise ConfigError(f"database.retry: expected a number of seconds >= 0, got {self.retry!r}")


STATE_DIR = Path(".wtflow")  # where wtflow keeps its state by default, relative to the current directory
DEFAULT_CACHE_DIR = STATE_DIR / "cache"


@dataclass(frozen=True)
class StorageConfig:
    """Where artifacts are stored (``None``: a temporary directory for this process), and the cache.

    ``cache_dir`` holds the results of cached nodes (those with ``sources``); ``None`` means
    :data:`DEFAULT_CACHE_DIR` (``.wtflow/cache``) in the current directory.
    """

    artifacts_dir: Path | None = None
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        for key in ("artifacts_dir", "cache_dir"):
            if getattr(self, key) is not None:  # a str from callers becomes a Path
                object.__setattr__(self, key, Path(getattr(self, key)))


@dataclass(frozen=True)
class RunConfig:
    """How a run behaves on failure and how much runs at once.

    ``max_fail`` is how many nodes may fail before the run stops: once more than ``max_fail``
    have failed, running nodes are stopped and nothing new starts but what asks to run even
    so (``always()``). ``None`` means the workflow's own ``max_fail`` if it sets one, else 0:
    the first failure stops the run.
    ``max_parallel`` left at ``None`` means the workflow's own ``max_parallel`` if it sets one,
    else :func:`default_max_parallel`. ``kill_grace`` is the seconds between SIGTERM and SIGKILL.
    ``secrets`` names environment variables to mask besides the workflow's own;
    ``mask_artifacts=False`` keeps stored output unmasked (the console and logs stay masked).
    ``vars`` are workflow variables given from outside the file, NAME -> value (any mapping given
    is kept as a read-only :class:`FrozenVars`). ``force`` runs every cached node even when
    the cache holds its result; ``force_nodes`` only these.
    """

    ignore_failure: bool = False
    max_fail: int | None = None
    max_parallel: int | None = None
    kill_grace: float = 10.0
    secrets: tuple[str, ...] = ()
    mask_artifacts: bool = True
    vars: Mapping[str, str] = FrozenVars()
    force: bool = False
    force_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "force_nodes", tuple(self.force_nodes))
        if self.max_fail is not None and (
            isinstance(self.max_fail, bool) or not isinstance(self.max_fail, int) or self.max_fail < 0
        ):
            raise ConfigError(f"run.max_fail: expected a whole number >= 0, got {self.max_fail!r}")
        if self.max_parallel is not None and (not isinstance(self.max_parallel, int) or self.max_parallel < 1):
            raise ConfigError(f"run.max_parallel: expected a whole number >= 1, got {self.max_parallel!r}")
        if self.kill_grace < 0 or not math.isfinite(self.kill_grace):
            raise ConfigError(f"run.kill_grace: expected a number of seconds >= 0, got {self.kill_grace!r}")
        for name, value in self.vars.items():
            if not isinstance(name, str) or not VAR_NAME.fullmatch(name):
                raise ConfigError(f"run.vars: {name!r} is not a variable name; {VAR_NAME_RULE}")
            if not isinstance(value, str):
                raise ConfigError(f"run.vars: the value of {name!r} must be a string, got {value!r}")
        if not isinstance(self.vars, FrozenVars):
            object.__setattr__(self, "vars", FrozenVars(self.vars))


@dataclass(frozen=True)
class DaskConfig:
    """Where nodes run when not on this machine: the workers of a Dask cluster (``pip install 'wtflow[dask]'``).

    ``scheduler`` is the address of a running cluster's scheduler (``tcp://host:8786``); ``local``
    instead starts a cluster of that many worker processes on this machine, for trying it out.
    With either, nodes run on the cluster unless they say ``runs_on: local``. ``wait`` is how long
    the run waits for the scheduler to answer, and a node for a worker that can run it (one with
    the resources it needs) before it fails. ``listen`` is where this process takes the workers'
    connections that stream the nodes' output back (see :func:`parse_listen` for its forms); by
    default, its address on the network that reaches the scheduler, on any free port. On a
    wildcard host (``0.0.0.0``, ``::``) it listens on every interface and gives the workers its
    address toward the scheduler to connect to.
    """

    scheduler: str | None = None
    local: int | None = None
    wait: float = 60.0
    listen: str | None = None

    def __post_init__(self) -> None:
        if self.scheduler is not None and self.local is not None:
            raise ConfigError(
                f"dask: give a scheduler ({self.scheduler}) or a local cluster ({self.local} workers), not both"
            )
        if self.local is not None and (
            isinstance(self.local, bool) or not isinstance(self.local, int) or self.local < 1
        ):
            raise ConfigError(f"dask.local: expected a whole number of workers >= 1, got {self.local!r}")
        if self.wait < 0 or not math.isfinite(self.wait):
            raise ConfigError(f"dask.wait: expected a number of seconds >= 0, got {self.wait!r}")
        if self.listen:
            _parse_listen_or_none(self.listen, "dask.listen")

    @property
    def enabled(self) -> bool:
        """Whether nodes can run on a cluster: a scheduler or a local cluster is configured."""
        return self.scheduler is not None or self.local is not None


def _text_or_none(value: str, _where: str) -> str | None:
    return value.strip() or None


def _parse_listen_or_none(value: str, where: str) -> str | None:
    """``value`` (stripped) if it is a place to listen, ``None`` if empty; a :class:`ConfigError` naming ``where``."""
    text = value.strip()
    if text:
        try:
            parse_listen(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return text or None


# (section, key) -> (environment variable, parser of the raw string)
_Parser = Callable[[str, str], Any]
_FIELDS: dict[tuple[str, str], tuple[str, _Parser]] = {
    ("database", "url"): ("WTFLOW_DB_URL", lambda value, _where: value.strip() or None),
    ("database", "retry"): ("WTFLOW_DB_RETRY", parse_seconds),
    ("storage", "artifacts_dir"): ("WTFLOW_ARTIFACTS_DIR", lambda value, _where: Path(value) if value else None),
    ("storage", "cache_dir"): ("WTFLOW_CACHE_DIR", lambda value, _where: Path(value) if value else None),
    ("run", "ignore_failure"): ("WTFLOW_IGNORE_FAILURE", parse_bool),
    ("run", "max_fail"): ("WTFLOW_MAX_FAIL", parse_non_negative_int),
    ("run", "max_parallel"): ("WTFLOW_MAX_PARALLEL", parse_positive_int),
    ("run", "kill_grace"): ("WTFLOW_KILL_GRACE", parse_seconds),
    ("dask", "scheduler"): ("WTFLOW_DASK_SCHEDULER", _text_or_none),
    ("dask", "local"): ("WTFLOW_DASK_LOCAL", parse_positive_int),
    ("dask", "wait"): ("WTFLOW_DASK_WAIT", parse_seconds),
    ("dask", "listen"): ("WTFLOW_DASK_LISTEN", _parse_listen_or_none),
}
_ATTRIBUTE = {"database": "db", "storage": "storage", "run": "run", "dask": "dask"}


@dataclass(frozen=True)
class Config:
    """Everything the engine is configured with: ``db.url``, ``storage.artifacts_dir``, ``run.*``, ``dask.*``."""

    db: DatabaseConfig = field(default_factory=DatabaseConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    run: RunConfig = field(default_factory=RunConfig)
    dask: DaskConfig = field(default_factory=DaskConfig)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, base: Config | None = None) -> Self:
        """``base`` (or the defaults) overridden by the ``WTFLOW_*`` variables that are set.

        Each ``WTFLOW_VAR_<NAME>`` sets (or overrides) the workflow variable ``NAME``.
        """
        environ = os.environ if environ is None else environ
        base = base or cls()
        values: dict[tuple[str, str], Any] = {
            key: parse(environ[variable], variable) for key, (variable, parse) in _FIELDS.items() if variable in environ
        }
        if env_vars := vars_from_env(environ):
            values[("run", "vars")] = {**base.run.vars, **env_vars}
        return cls._with(base, values)

    @classmethod
    def from_ini(cls, path: str | os.PathLike[str], *, base: Config | None = None) -> Self:
        """``base`` (or the defaults) overridden by the keys of the INI file at ``path``."""
        import configparser  # most runs read no INI file

        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file {os.fspath(path)!r} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {os.fspath(path)!r} cannot be read: {exc}") from None
        except configparser.Error as exc:
            raise ConfigError(f"config file {os.fspath(path)!r} is not valid INI: {exc}") from None
        values: dict[tuple[str, str], Any] = {}
        sections = sorted({section for section, _ in _FIELDS})
        for section in parser.sections():
            if section not in sections:
                raise ConfigError(f"{os.fspath(path)}: unknown section [{section}]{_suggest(section, sections)}")
            keys = sorted(key for sec, key in _FIELDS if sec == section)
            for key, raw in parser.items(section):
                if key not in keys:
                    raise ConfigError(f"{os.fspath(path)}: unknown key {key!r} in [{section}]{_suggest(key, keys)}")
                values[(section, key)] = _FIELDS[(section, key)][1](raw, f"{os.fspath(path)} [{section}] {key}")
        return cls._with(base or cls(), values)

    @classmethod
    def _with(cls, base: Config, values: Mapping[tuple[str, str], Any]) -> Self:
        parts: dict[str, Any] = {}
        for attribute in _ATTRIBUTE.values():
            parts[attribute] = getattr(base, attribute)
        # A scheduler and a local cluster exclude each other: the source that names one drops the other.
        given = dict(values)
        if ("dask", "scheduler") in given and ("dask", "local") not in given:
            given[("dask", "local")] = None
        elif ("dask", "local") in given and ("dask", "scheduler") not in given:
            given[("dask", "scheduler")] = None
        by_section: dict[str, dict[str, Any]] = {}
        for (section, key), value in given.items():
            by_section.setdefault(_ATTRIBUTE[section], {})[key] = value
        for attribute, changes in by_section.items():
            parts[attribute] = dataclasses.replace(parts[attribute], **changes)
        return cls(**parts)


def _suggest(word: str, choices: list[str]) -> str:
    import difflib  # for error messages only

    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of: {', '.join(choices)}"
