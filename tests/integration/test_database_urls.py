"""Database URLs as users write them: which database they open, and how wrong ones are explained."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from wtflow.db.connect import display_url
from wtflow.db.history import open_history
from wtflow.db.tables import VERSION_TABLE, metadata
from wtflow.errors import BackendUnavailable, ConfigError


def test_a_relative_sqlite_url_names_a_file_in_the_working_directory_percent_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    open_history("sqlite:///runs/a%20b.db").dispose()
    assert (tmp_path / "runs" / "a b.db").is_file()


@pytest.mark.postgres
def test_a_postgres_urls_options_reach_the_connection(postgres_url: str) -> None:
    engine = open_history(f"{postgres_url}&application_name=wtflow-urls")
    try:
        with engine.connect() as connection:
            name = connection.scalar(text("SHOW application_name"))
            schema = connection.scalar(text("SELECT current_schema()"))
    finally:
        engine.dispose()
    assert name == "wtflow-urls"
    assert schema.startswith("wtflow_test_")  # the search_path the fixture's options set


def test_a_sqlite_url_with_driver_options_gets_a_working_database(tmp_path: Path) -> None:
    engine = open_history(f"sqlite:///{tmp_path / 'runs.db'}?timeout=5")
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == {VERSION_TABLE, *metadata.tables}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", r"database URL 'not a url' is not valid; use e\.g\. sqlite:///"),
        ("mysql://root:pw@localhost/test", r"database URL mysql://root:\*\*\*@localhost/test: only sqlite:// and"),
    ],
)
def test_a_url_wtflow_cannot_use_is_explained(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_history(url)


def test_an_unreachable_database_is_named_without_its_password() -> None:
    with pytest.raises(BackendUnavailable, match=r"database postgresql://u:\*\*\*@127\.0\.0\.1:1/x is unavailable: "):
        open_history("postgresql://u:hunter2@127.0.0.1:1/x")


def test_messages_show_a_url_without_its_password() -> None:
    assert display_url("postgresql://ci:s3cret@db.example:5432/runs") == "postgresql://ci:***@db.example:5432/runs"
    assert display_url("postgresql://ci@db.example/runs") == "postgresql://ci@db.example/runs"
