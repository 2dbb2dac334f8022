"""The writer's own reading of database URLs (wtflow.db.plain) agrees with SQLAlchemy's."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from wtflow.db import writer
from wtflow.db.connect import normalise_url
from wtflow.db.plain import display_url, open_database


def test_a_sqlite_url_names_the_file_sqlalchemy_would_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///runs/a%20b.db"  # relative to the working directory, percent-decoded
    database = open_database(url)
    assert database is not None
    with database.transaction() as cursor:
        cursor.execute("CREATE TABLE t (x INTEGER)")
        cursor.execute("INSERT INTO t VALUES (:x)", {"x": 7})
    database.close()
    engine = create_engine(normalise_url(url))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT x FROM t")).scalar() == 7
    engine.dispose()
    assert (tmp_path / "runs" / "a b.db").is_file()


@pytest.mark.postgres
def test_a_postgres_urls_options_reach_the_connection(postgres_url: str) -> None:
    database = open_database(f"{postgres_url}&application_name=wtflow-plain")
    assert database is not None
    with database.transaction() as cursor:
        name = cursor.execute("SHOW application_name")
        schema = cursor.execute("SELECT current_schema()")
    database.close()
    assert name == [("wtflow-plain",)]
    assert schema[0][0].startswith("wtflow_test_")  # the search_path the fixture's options set


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",  # memory
        "sqlite:///:memory:",
        "sqlite:///runs.db?timeout=5",  # options SQLAlchemy hands the driver
        "sqlite:///file:runs.db",
        "sqlite+pysqlite:///runs.db",
        "mysql://root@localhost/test",  # SQLAlchemy words the error
        "not a url",
        "postgresql://u@h1:5432,h2:5432/db",  # several hosts
        "postgresql://u@[::1]:5432/db",
        "postgresql://u@h:port/db",
        "postgresql://u@h/db?a=1&a=2",
    ],
)
def test_other_url_shapes_are_left_to_sqlalchemy(url: str) -> None:
    assert open_database(url) is None


def test_messages_show_a_url_without_its_password() -> None:
    assert display_url("postgresql://ci:s3cret@db.example:5432/runs") == "postgresql://ci:***@db.example:5432/runs"
    assert display_url("postgresql://ci@db.example/runs") == "postgresql://ci@db.example/runs"


def test_a_url_only_sqlalchemy_reads_still_gets_a_working_database(tmp_path: Path) -> None:
    database = writer.connect(f"sqlite:///{tmp_path / 'runs.db'}?timeout=5")
    try:
        with database.transaction() as cursor:
            tables = cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    finally:
        database.close()
    assert [name for (name,) in tables] == [
        "wtflow_alembic_version",
        "wtflow_artifacts",
        "wtflow_node_runs",
        "wtflow_runs",
    ]
