"""A run's commits share one wait for the disk, yet everything a finished run reports survives a
crash of the server (stop without checkpoint, recovery from the WAL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from stagecraft.engines import RunOptions
from stagecraft.engines.drizzle import DrizzleEngine
from stagecraft.engines.knex import KnexEngine
from stagecraft.engines.raw import RawEngine
from tests.conftest import FolderWriter, fresh_database
from tests.engines.drizzle_folders import write_drizzle_folder
from tests.engines.knex_projects import js_migration, make_project
from tests.support.postgres_server import PostgresServer, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def durable_server() -> Iterator[PostgresServer]:
    with running_server(durable=True) as server:
        # The WAL writer flushes commits that did not wait within a fraction of a second on
        # its own; here it waits 10 s, so only the run's own closing flush can save them.
        with psycopg.connect(server.url(), autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
            admin.execute("ALTER SYSTEM SET wal_writer_flush_after = '1GB'")
            admin.execute("SELECT pg_reload_conf()")
        yield server


def test_every_migration_a_finished_run_reports_survives_a_server_crash(
    durable_server: PostgresServer, write_folder: FolderWriter
) -> None:
    count = 60
    folder = write_folder(
        {
            f"{i:03d}.sql": f"CREATE TABLE t{i} (id int);\nINSERT INTO t{i} VALUES ({i});"
            for i in range(count)
        }
    )
    with fresh_database(durable_server) as url:
        with psycopg.connect(url) as connection:
            before = connection.execute("SHOW synchronous_commit").fetchone()
        report = RawEngine().run(RunOptions(path=folder, database_url=url))
        assert len(report.applied) == count
        durable_server.crash_and_restart()
        with psycopg.connect(url) as connection:
            recorded = connection.execute("SELECT count(*) FROM stagecraft_migrations").fetchone()
            tables = connection.execute(
                "SELECT count(*) FROM pg_tables "
                "WHERE tablename LIKE 't%%' AND schemaname = current_schema()"
            ).fetchone()
            after = connection.execute("SHOW synchronous_commit").fetchone()
    assert recorded == (count,)
    assert tables == (count,)
    assert before == after == ("on",)


def test_every_migration_a_finished_pipelined_drizzle_run_reports_survives_a_server_crash(
    durable_server: PostgresServer, write_folder: FolderWriter
) -> None:
    count = 60
    folder = write_drizzle_folder(
        write_folder, [(f"{i:04d}_t{i}", f"CREATE TABLE t{i} (id int);") for i in range(count)]
    )
    with fresh_database(durable_server) as url:
        report = DrizzleEngine().run(RunOptions(path=folder, database_url=url))
        assert len(report.applied) == count
        durable_server.crash_and_restart()
        with psycopg.connect(url) as connection:
            recorded = connection.execute(
                "SELECT count(*) FROM drizzle.__drizzle_migrations"
            ).fetchone()
            tables = connection.execute(
                "SELECT count(*) FROM pg_tables "
                "WHERE tablename LIKE 't%%' AND schemaname = current_schema()"
            ).fetchone()
    assert recorded == (count,)
    assert tables == (count,)


@pytest.mark.parametrize("single_transaction", ["true", "false"])
def test_every_migration_a_finished_knex_run_reports_survives_a_server_crash(
    durable_server: PostgresServer, tmp_path: Path, single_transaction: str
) -> None:
    # Knex's own commits (its batch, or each migration and then its row) do not wait for the
    # disk; the run's closing commit must cover them all.
    count = 30
    folder = make_project(
        tmp_path / "app",
        {f"{i:03d}_t{i}.js": js_migration(f"CREATE TABLE t{i} (id int)") for i in range(count)},
    )
    with fresh_database(durable_server) as url:
        options = {"single_transaction": single_transaction}
        report = KnexEngine().run(RunOptions(path=folder, database_url=url, options=options))
        assert len(report.applied) == count
        durable_server.crash_and_restart()
        with psycopg.connect(url) as connection:
            recorded = connection.execute("SELECT count(*) FROM knex_migrations").fetchone()
            tables = connection.execute(
                "SELECT count(*) FROM pg_tables "
                "WHERE tablename LIKE 't%%' AND schemaname = current_schema()"
            ).fetchone()
    assert recorded == (count,)
    assert tables == (count,)
