"""A run's commits share one wait for the disk, yet everything a finished run reports survives a
crash of the server (stop without checkpoint, recovery from the WAL)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from stagecraft.engines import RunOptions
from stagecraft.engines.raw import RawEngine
from tests.conftest import FolderWriter, fresh_database
from tests.support.postgres_server import PostgresServer, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def durable_server() -> Iterator[PostgresServer]:
    with running_server(durable=True) as server:
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
