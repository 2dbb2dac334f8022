"""The database through its DB-API driver alone (sqlite3, psycopg): what every run's writer needs.

SQLAlchemy costs the writer 0.2 s of CPU to import, on a machine whose cores the run's nodes
need; the writer's few statements do not need it. :func:`open_database` reads the common URL
shapes itself (``sqlite:///path``, ``postgresql://user:password@host:port/db?options``) and
connects with the driver as SQLAlchemy's dialect would; for any other shape it returns
``None`` and the caller goes through SQLAlchemy (:func:`from_engine`), which also words the
errors of URLs that are wrong. A new database gets its schema from :mod:`wtflow.db.ddl`;
SQLAlchemy and Alembic (:mod:`wtflow.db.schema`) are needed only for an older one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from sqlalchemy import Engine

SQLITE_BUSY_TIMEOUT_MS = 60_000
# libpq settings: give up connecting after 10 s; on a connection whose network died (packets
# dropped, no reset), fail a statement within about a minute instead of the system's TCP
# timeout of a quarter of an hour, so the writer's own retries and warning take over.
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,  # ms that sent data may stay unacknowledged
}
# The table Alembic keeps the schema's revision in, and the newest revision (in migrations/versions;
# a test checks they agree).
VERSION_TABLE = "wtflow_alembic_version"
HEAD = "0001"
POSTGRES_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+psycopg"})
Dialect = Literal["sqlite", "postgresql"]
_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def _enable_wal(cursor: Any) -> None:
    """Switch to WAL, retrying while the file is locked.

    SQLite answers "database is locked" here without waiting for its busy timeout while
    another connection opens the same new file.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        else:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def configure_sqlite(connection: Any) -> None:
    """Apply wtflow's settings to a new SQLite connection.

    WAL lets readers run beside the one writer. Transactions are begun by hand with ``BEGIN
    IMMEDIATE``, which takes the write lock up front, so a transaction never fails half-way
    upgrading a read lock ("database is locked").
    """
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    _enable_wal(cursor)
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def make_sqlite_directory(database: str | None) -> None:
    """Create the directory a SQLite database file goes in."""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def reason(exc: BaseException) -> str:
    """The first line of what the driver said: enough to tell an outage from a mistake."""
    return (str(exc).strip().splitlines() or ["unknown error"])[0]


def display_url(url: str) -> str:
    """``url`` with any password hidden, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user_info, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user_info.partition(':')[0]}:***@{host}").geturl()


class Database:
    """One DB-API connection, opened on first use and again after a failure, in explicit transactions.

    Statements are written with ``:name`` parameters and adapted to the driver's style.
    """

    def __init__(
        self,
        dialect: Dialect,
        connect: Callable[[], Any],
        errors: type[Exception],
        *,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.dialect: Dialect = dialect
        self.errors = errors  # the driver's base class of errors
        self._connect = connect
        self._on_close = on_close
        self._connection: Any = None
        self._statements: dict[str, str] = {}

    def connect(self) -> None:
        """Connect now, if not connected (the driver's error if the database cannot be reached)."""
        if self._connection is None:
            self._connection = self._connect()

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A cursor whose statements are committed together, or rolled back on an exception.

        After a failure the connection is dropped, and the next transaction connects anew: a
        database that went away and came back is used again.
        """
        self.connect()
        try:
            cursor = self._connection.cursor()
            if self.dialect == "sqlite":
                cursor.execute("BEGIN IMMEDIATE")
            yield Cursor(self, cursor)
            self._connection.commit()
        except BaseException:
            self._drop()
            raise

    def statement(self, text: str) -> str:
        """``text`` in the driver's parameter style."""
        if self.dialect == "sqlite":
            return text
        if (adapted := self._statements.get(text)) is None:
            adapted = self._statements[text] = _NAMED.sub(r"%(\1)s", text)
        return adapted

    def moment(self, value: datetime | None) -> Any:
        """``value`` (in UTC) as SQLAlchemy's ``DateTime(timezone=True)`` stores it in this database."""
        if value is None or self.dialect == "postgresql":
            return value
        # SQLAlchemy's SQLite DATETIME: the UTC time's fields as text, without the zone.
        return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond:06d}"

    @staticmethod
    def read_moment(value: Any) -> datetime | None:
        """A time read back: SQLite gives text (UTC), PostgreSQL an aware datetime."""
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        if not isinstance(moment, datetime):
            return None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.rollback()
                connection.close()
            except Exception:  # noqa: BLE001, S110 - already broken: nothing more to do with it
                pass

    def close(self) -> None:
        """Close the connection (and what it came from)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        if self._on_close is not None:
            self._on_close()


class Cursor:
    """Runs ``:name`` statements inside a :meth:`Database.transaction`."""

    def __init__(self, database: Database, cursor: Any) -> None:
        self._database = database
        self._cursor = cursor

    def execute(self, text: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement; the rows it returns, if any."""
        self._cursor.execute(self._database.statement(text), parameters or {})
        return list(self._cursor.fetchall()) if self._cursor.description is not None else []

    def executemany(self, text: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement for each of ``rows``."""
        self._cursor.executemany(self._database.statement(text), rows)


def open_database(url: str) -> Database | None:
    """A :class:`Database` for ``url`` without SQLAlchemy, not connected yet; ``None`` for other URL shapes."""
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        return _sqlite(rest)
    if scheme in POSTGRES_SCHEMES and importlib.util.find_spec("psycopg") is not None:
        return _postgresql(url)
    return None


def _sqlite(rest: str) -> Database | None:
    # sqlite:///relative/path and sqlite:////absolute/path; options, URIs and memory go to SQLAlchemy.
    if not rest.startswith("/") or "?" in rest or "#" in rest:
        return None
    database = unquote(rest[1:])
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    make_sqlite_directory(database)
    filename = os.path.abspath(database)  # noqa: PTH100 - what SQLAlchemy's pysqlite dialect does

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(filename, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        try:
            configure_sqlite(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    return Database("sqlite", connect, sqlite3.Error)


def _postgresql(url: str) -> Database | None:
    parts = urlsplit(url)
    host_port = parts.netloc.rpartition("@")[2]
    if parts.fragment or "," in host_port or host_port.startswith("["):
        return None  # several hosts, IPv6 literals: SQLAlchemy's reading
    host, _, port = host_port.partition(":")
    if port and not port.isdigit():
        return None
    query = parse_qsl(parts.query, keep_blank_values=True)
    options: dict[str, Any] = dict(query)
    if len(options) != len(query):
        return None  # a repeated option
    for key, value in (
        ("host", unquote(host)),
        ("port", port),
        ("user", unquote(parts.username or "")),
        ("password", unquote(parts.password or "")),
        ("dbname", unquote(parts.path[1:])),
    ):
        if value:
            options.setdefault(key, value)
    import psycopg  # only PostgreSQL users have it, and pay its import

    return Database("postgresql", lambda: psycopg.connect(**{**options, **POSTGRES_CONNECT_ARGS}), psycopg.Error)


def from_engine(engine: Engine, *, dispose: bool = False) -> Database:
    """A :class:`Database` on connections from ``engine`` (any URL SQLAlchemy reads); disposes it on close if asked."""
    dialect: Dialect = "sqlite" if engine.dialect.name == "sqlite" else "postgresql"
    errors = engine.dialect.dbapi.Error if engine.dialect.dbapi is not None else Exception
    return Database(dialect, engine.raw_connection, errors, on_close=engine.dispose if dispose else None)
