"""Migrations sent ahead in one pipeline (PostgreSQL), or one by one (SQLite): what a run that
does not wait for each migration's results must still guarantee, tested through the drizzle
engine, whose tracking rows are known up front."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from stagecraft.engines import Migration, MigrationFailed, RunOptions
from stagecraft.engines.database import connect
from stagecraft.engines.drizzle import DrizzleEngine
from tests.conftest import FolderWriter
from tests.engines.drizzle_folders import BASE_WHEN, dialect_of_url, write_drizzle_folder

engine = DrizzleEngine()


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    database = connect(url)
    try:
        return database.query(sql)
    finally:
        database.close()


def tracking_table(url: str) -> str:
    return "__drizzle_migrations" if url.startswith("sqlite") else "drizzle.__drizzle_migrations"


def recorded_whens(url: str) -> list[int]:
    return [int(when) for (when,) in query(url, f"SELECT created_at FROM {tracking_table(url)}")]


def table_exists(url: str, name: str) -> bool:
    database = connect(url)
    try:
        return database.table_exists(None, name)
    finally:
        database.close()


SESSION_WAIT_SECONDS = 30.0


def wait_until_no_other_session(url: str) -> None:
    """Until no other session works on this test's database (an interrupted run's connection
    ends once the server has run what it had already received)."""
    sessions = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    deadline = time.monotonic() + SESSION_WAIT_SECONDS
    while query(url, sessions)[0][0]:
        assert time.monotonic() < deadline, "the interrupted run's session never ended"
        time.sleep(0.01)


def folder(url: str, write_folder: FolderWriter, *migrations: tuple[str, str]) -> Path:
    return write_drizzle_folder(write_folder, list(migrations), dialect=dialect_of_url(url))


def test_nothing_after_a_failed_migration_runs_though_it_was_sent_ahead(
    database_url: str, write_folder: FolderWriter
) -> None:
    bad = "CREATE TABLE half (id int);\n--> statement-breakpoint\nINSERT INTO missing VALUES (1);"
    path = folder(
        database_url,
        write_folder,
        ("0000_first", "CREATE TABLE first (id int);"),
        ("0001_bad", bad),
        ("0002_later", "CREATE TABLE later (id int);"),
        ("0003_last", "CREATE TABLE last (id int);"),
    )
    with pytest.raises(MigrationFailed) as failed:
        engine.run(RunOptions(path=path, database_url=database_url))
    assert failed.value.migration == "0001_bad"
    assert f"0001_bad.sql:3:{failed.value.failure.column}" in str(failed.value)
    assert [applied.id for applied in failed.value.applied] == ["0000_first"]
    assert recorded_whens(database_url) == [BASE_WHEN]
    assert table_exists(database_url, "first")
    assert not any(table_exists(database_url, name) for name in ("half", "later", "last"))


def test_a_migration_another_runner_recorded_meanwhile_is_skipped_and_the_rest_applied(
    database_url: str, write_folder: FolderWriter
) -> None:
    # The first migration records the second as a runner without Stagecraft's lock would
    # (drizzle-orm): after the plan, before the second one's turn.
    second = "CREATE TABLE second (id int);"
    records_second = (
        f"INSERT INTO {tracking_table(database_url)} (hash, created_at) VALUES "
        f"('{hashlib.sha256(second.encode()).hexdigest()}', {BASE_WHEN + 1});"
    )
    path = folder(
        database_url,
        write_folder,
        ("0000_records_second", records_second),
        ("0001_second", second),
        ("0002_third", "CREATE TABLE third (id int);"),
        ("0003_fourth", "CREATE TABLE fourth (id int);"),
    )
    report = engine.run(RunOptions(path=path, database_url=database_url))
    assert [applied.id for applied in report.applied] == [
        "0000_records_second",
        "0002_third",
        "0003_fourth",
    ]
    assert report.skipped == ("0001_second",)
    assert not table_exists(database_url, "second")
    assert table_exists(database_url, "third")
    assert table_exists(database_url, "fourth")
    assert sorted(recorded_whens(database_url)) == [BASE_WHEN + i for i in range(4)]


def test_a_failure_at_commit_stops_the_migrations_sent_after_it(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    deferred = (
        "CREATE TABLE parent (id int PRIMARY KEY);\n--> statement-breakpoint\n"
        "CREATE TABLE child (parent_id int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);\n"
        "--> statement-breakpoint\nINSERT INTO child VALUES (1);"
    )
    path = folder(
        postgres_url,
        write_folder,
        ("0000_first", "CREATE TABLE first (id int);"),
        ("0001_deferred", deferred),
        ("0002_later", "CREATE TABLE later (id int);"),
    )
    with pytest.raises(MigrationFailed) as failed:
        engine.run(RunOptions(path=path, database_url=postgres_url))
    assert failed.value.migration == "0001_deferred"
    assert failed.value.failure.sqlstate == "23503"
    assert "COMMIT failed" in str(failed.value)
    assert "nothing of it was applied or recorded" in str(failed.value)
    assert recorded_whens(postgres_url) == [BASE_WHEN]
    assert not any(table_exists(postgres_url, name) for name in ("parent", "child", "later"))


def test_copy_from_stdin_is_refused_before_anything_runs(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    path = folder(
        postgres_url,
        write_folder,
        ("0000_first", "CREATE TABLE first (id int);"),
        ("0001_copy", "CREATE TABLE t (id int);\n--> statement-breakpoint\nCOPY t FROM STDIN;"),
    )
    with pytest.raises(MigrationFailed, match=r"0001_copy\.sql:3:1: COPY \.\.\. FROM STDIN"):
        engine.run(RunOptions(path=path, database_url=postgres_url))
    assert not table_exists(postgres_url, "first")
    assert recorded_whens(postgres_url) == []


class StopsAfter:
    """A progress listener that fails once `count` migrations are reported: the caller of the
    run stopped while later migrations were still queued on the server."""

    def __init__(self, count: int) -> None:
        self.count = count

    def started(self, migration: Migration, index: int, total: int) -> None:
        del migration, index, total

    def finished(self, migration: Migration, index: int, total: int, duration_ms: int) -> None:
        del migration, total, duration_ms
        if index == self.count:
            raise KeyboardInterrupt


def test_a_run_stopped_midway_leaves_each_migration_applied_with_its_row_or_not_at_all(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    migrations = [(f"{i:04d}_t{i}", f"CREATE TABLE t{i} (id int);") for i in range(40)]
    path = folder(postgres_url, write_folder, *migrations)
    with pytest.raises(KeyboardInterrupt):
        engine.run(RunOptions(path=path, database_url=postgres_url, progress=StopsAfter(3)))
    # What was sent ahead before the interruption may still be committing on the server: each
    # migration commits with its row, and the state is read once the server is done with it.
    wait_until_no_other_session(postgres_url)
    whens = set(recorded_whens(postgres_url))
    assert {BASE_WHEN, BASE_WHEN + 1, BASE_WHEN + 2} <= whens
    for i in range(40):
        assert table_exists(postgres_url, f"t{i}") == (BASE_WHEN + i in whens), i
    pending = engine.plan(RunOptions(path=path, database_url=postgres_url)).pending
    assert len(pending) == 40 - len(whens)
