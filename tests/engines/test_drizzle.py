"""The drizzle engine on PostgreSQL and SQLite: the folder, the tracking table, safety checks."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from stagecraft.engines import (
    InvalidOptions,
    MigrationFailed,
    MigrationSourceError,
    ProblemKind,
    RunOptions,
    RunRefused,
    get,
)
from stagecraft.engines.database import connect
from stagecraft.engines.drizzle import DrizzleEngine
from tests.conftest import FolderWriter
from tests.engines.drizzle_folders import (
    BASE_WHEN,
    dialect_of_url,
    journal_text,
    write_drizzle_folder,
)

engine = DrizzleEngine()


def options(folder: Path, url: str, **extra: Any) -> RunOptions:
    return RunOptions(path=folder, database_url=url, **extra)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    database = connect(url)
    try:
        return database.query(sql)
    finally:
        database.close()


def tracking_table(url: str) -> str:
    return "__drizzle_migrations" if url.startswith("sqlite") else "drizzle.__drizzle_migrations"


def folder_for(
    url: str, write_folder: FolderWriter, *migrations: tuple[str, str | bytes], **kw: Any
) -> Path:
    return write_drizzle_folder(write_folder, list(migrations), dialect=dialect_of_url(url), **kw)


def test_the_registry_returns_the_drizzle_engine() -> None:
    assert isinstance(get("drizzle"), DrizzleEngine)


def test_rows_record_drizzles_hash_and_the_journal_when(
    database_url: str, write_folder: FolderWriter
) -> None:
    body = "CREATE TABLE a (id int);\n--> statement-breakpoint\nCREATE TABLE b (id int);\n"
    folder = folder_for(database_url, write_folder, ("0000_ab", body), ("0001_c", "SELECT 1;"))
    report = engine.run(options(folder, database_url))
    assert [a.id for a in report.applied] == ["0000_ab", "0001_c"]
    rows = query(database_url, f"SELECT hash, created_at FROM {tracking_table(database_url)}")
    assert sorted(rows) == sorted(
        [
            (hashlib.sha256(body.encode()).hexdigest(), BASE_WHEN),
            (hashlib.sha256(b"SELECT 1;").hexdigest(), BASE_WHEN + 1),
        ]
    )


def test_on_sqlite_the_table_is_drizzles_without_schema_and_ids_stay_null(
    sqlite_url: str, write_folder: FolderWriter
) -> None:
    folder = folder_for(sqlite_url, write_folder, ("0000_a", "CREATE TABLE a (id int);"))
    engine.run(options(folder, sqlite_url))
    shape = "SELECT name, type, pk FROM pragma_table_info('__drizzle_migrations')"
    drizzle = sqlite3.connect(":memory:")  # the table as drizzle-orm's SQLite migrator makes it
    drizzle.execute(
        "CREATE TABLE IF NOT EXISTS __drizzle_migrations "
        "(id SERIAL PRIMARY KEY, hash text NOT NULL, created_at numeric)"
    )
    assert query(sqlite_url, shape) == drizzle.execute(shape).fetchall()
    drizzle.close()
    assert query(sqlite_url, "SELECT id, typeof(created_at) FROM __drizzle_migrations") == [
        (None, "integer")
    ]


def test_on_postgresql_the_table_and_schema_are_configurable(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    folder = folder_for(postgres_url, write_folder, ("0000_a", "CREATE TABLE a (id int);"))
    custom = {"migrations_table": "history", "migrations_schema": "ops"}
    engine.run(options(folder, postgres_url, options=custom))
    assert query(postgres_url, "SELECT count(*) FROM ops.history") == [(1,)]
    assert query(postgres_url, "SELECT to_regclass('drizzle.__drizzle_migrations')") == [(None,)]
    assert engine.plan(options(folder, postgres_url, options=custom)).pending == ()


def test_a_schema_option_on_sqlite_is_refused(sqlite_url: str, write_folder: FolderWriter) -> None:
    folder = folder_for(sqlite_url, write_folder, ("0000_a", "SELECT 1;"))
    with pytest.raises(InvalidOptions, match="migrations_schema: sqlite has no schemas"):
        engine.plan(options(folder, sqlite_url, options={"migrations_schema": "ops"}))


def test_an_unknown_option_is_refused_with_the_known_ones() -> None:
    with pytest.raises(InvalidOptions, match="known options: migrations_table, migrations_schema"):
        engine.parse_options({"migrationsTable": "x"})


def test_statements_sharing_a_chunk_or_a_line_with_a_breakpoint_all_run(
    database_url: str, write_folder: FolderWriter
) -> None:
    # drizzle-kit writes `...;--> statement-breakpoint` on one line; a chunk may hold several.
    body = (
        "CREATE TABLE log (n int);--> statement-breakpoint\n"
        "INSERT INTO log VALUES (1); INSERT INTO log VALUES (2);\n"
        "--> statement-breakpoint\nINSERT INTO log VALUES (3)"
    )
    folder = folder_for(database_url, write_folder, ("0000_log", body))
    engine.run(options(folder, database_url))
    assert query(database_url, "SELECT n FROM log ORDER BY n") == [(1,), (2,), (3,)]


def test_an_sql_error_names_its_line_and_column_in_the_file(
    database_url: str, write_folder: FolderWriter
) -> None:
    body = (
        "CREATE TABLE t (id int);\n--> statement-breakpoint\n"
        "INSERT INTO t VALUES (1);\n  INSERT INTO missing VALUES (1);\n"
    )
    folder = folder_for(database_url, write_folder, ("0000_ok", "SELECT 1;"), ("0001_bad", body))
    with pytest.raises(MigrationFailed) as failed:
        engine.run(options(folder, database_url))
    assert failed.value.migration == "0001_bad"
    assert failed.value.failure.line == 4
    assert [a.id for a in failed.value.applied] == ["0000_ok"]
    assert "0001_bad.sql:4:" in str(failed.value)
    plan = engine.plan(options(folder, database_url))
    assert [m.id for m in plan.pending] == ["0001_bad"]
    assert query(database_url, f"SELECT count(*) FROM {tracking_table(database_url)}") == [(1,)]


def test_an_entry_not_newer_than_the_last_applied_is_reported_and_blocks_the_run(
    database_url: str, write_folder: FolderWriter
) -> None:
    first = folder_for(
        database_url, write_folder, ("0001_b", "CREATE TABLE b (id int);"), whens=[BASE_WHEN + 5]
    )
    engine.run(options(first, database_url))
    later = folder_for(
        database_url,
        write_folder,
        ("0000_a", "CREATE TABLE a (id int);"),
        ("0001_b", "CREATE TABLE b (id int);"),
        ("0002_c", "CREATE TABLE c (id int);"),
        whens=[BASE_WHEN + 2, BASE_WHEN + 5, BASE_WHEN + 9],
    )
    plan = engine.plan(options(later, database_url))
    assert [m.id for m in plan.pending] == ["0002_c"]
    assert [(p.kind, p.migration) for p in plan.problems] == [(ProblemKind.NEVER_APPLIED, "0000_a")]
    with pytest.raises(RunRefused, match="0000_a"):
        engine.run(options(later, database_url, allow=frozenset({"never_applied"})))
    assert query(database_url, f"SELECT count(*) FROM {tracking_table(database_url)}") == [(1,)]


def test_an_edited_applied_file_is_reported_and_can_be_allowed(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = folder_for(database_url, write_folder, ("0000_a", "CREATE TABLE a (id int);"))
    engine.run(options(folder, database_url))
    (folder / "0000_a.sql").write_text("CREATE TABLE a (id bigint);", encoding="utf-8")
    plan = engine.plan(options(folder, database_url))
    [problem] = plan.problems
    assert problem.kind == ProblemKind.CHECKSUM_MISMATCH
    assert str(folder / "0000_a.sql") in problem.message
    with pytest.raises(RunRefused):
        engine.run(options(folder, database_url))
    allowed = engine.run(options(folder, database_url, allow=frozenset({"checksum_mismatch"})))
    assert allowed.applied == ()


def test_a_row_whose_entry_is_gone_is_reported(
    database_url: str, write_folder: FolderWriter
) -> None:
    both = folder_for(database_url, write_folder, ("0000_a", "SELECT 1;"), ("0001_b", "SELECT 2;"))
    engine.run(options(both, database_url))
    only_first = folder_for(database_url, write_folder, ("0000_a", "SELECT 1;"))
    plan = engine.plan(options(only_first, database_url))
    assert [(p.kind, p.migration) for p in plan.problems] == [
        (ProblemKind.MISSING_FILE, f"created_at {BASE_WHEN + 1}")
    ]


def test_a_commit_inside_a_migration_is_refused_before_anything_runs(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = folder_for(
        database_url,
        write_folder,
        ("0000_a", "CREATE TABLE a (id int);"),
        ("0001_b", "SELECT 1;\n--> statement-breakpoint\n  COMMIT;"),
    )
    with pytest.raises(MigrationSourceError, match=r"0001_b\.sql:3:3: COMMIT controls"):
        engine.run(options(folder, database_url))
    assert engine.plan(options(folder, database_url)).applied == ()


def test_a_breakpoint_inside_a_string_is_refused_with_both_positions(
    database_url: str, write_folder: FolderWriter
) -> None:
    body = "CREATE TABLE t (s text);\nINSERT INTO t VALUES ('a\n--> statement-breakpoint\nb');\n"
    folder = folder_for(database_url, write_folder, ("0000_t", body))
    with pytest.raises(MigrationSourceError, match=r"0000_t\.sql:3:1: .* line 2, column 1"):
        engine.run(options(folder, database_url))


def test_a_byte_order_mark_is_hashed_like_drizzle_and_not_executed(
    database_url: str, write_folder: FolderWriter
) -> None:
    data = b"\xef\xbb\xbfCREATE TABLE bom (id int);"
    folder = folder_for(database_url, write_folder, ("0000_bom", data))
    engine.run(options(folder, database_url))
    rows = query(database_url, f"SELECT hash FROM {tracking_table(database_url)}")
    assert rows == [(hashlib.sha256(data).hexdigest(),)]


def test_a_missing_journal_names_the_file_to_look_for(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"0000_a.sql": "SELECT 1;"})
    with pytest.raises(MigrationSourceError, match=r"has no meta/_journal\.json"):
        engine.plan(options(folder, database_url))
    with pytest.raises(MigrationSourceError, match="does not exist"):
        engine.plan(options(folder / "nowhere", database_url))


@pytest.mark.parametrize(
    ("journal", "expected"),
    [
        ("{not json", "not valid JSON at line 1"),
        ("[]", "expected an object"),
        ('{"entries": {}}', '"entries" must be a list'),
        ('{"entries": [{"when": 1}]}', r"entries\[0\]\.tag"),
        ('{"entries": [{"tag": "0000_a", "when": "soon"}]}', r"entries\[0\] \(0000_a\): `when`"),
        ('{"entries": [{"tag": "0000_a", "when": 1}, {"tag": "0000_a", "when": 2}]}', "repeats"),
        ('{"dialect": 7, "entries": []}', '"dialect" must be a string'),
    ],
)
def test_a_malformed_journal_names_the_file_and_the_problem(
    sqlite_url: str, write_folder: FolderWriter, journal: str, expected: str
) -> None:
    folder = write_folder({"meta/_journal.json": journal, "0000_a.sql": "SELECT 1;"})
    with pytest.raises(MigrationSourceError, match=rf"_journal\.json is not a valid .*{expected}"):
        engine.plan(options(folder, sqlite_url))


def test_a_journal_entry_without_its_file_names_the_missing_file(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"meta/_journal.json": journal_text([("0000_gone", BASE_WHEN)])})
    with pytest.raises(
        MigrationSourceError,
        match=r"lists migration '0000_gone', but .*0000_gone\.sql does not exist",
    ):
        engine.run(options(folder, database_url))


def test_a_journal_for_another_dialect_is_refused(
    database_url: str, write_folder: FolderWriter
) -> None:
    other = "mysql" if database_url.startswith("sqlite") else "sqlite"
    folder = write_drizzle_folder(write_folder, [("0000_a", "SELECT 1;")], dialect=other)
    with pytest.raises(
        MigrationSourceError, match=rf"_journal\.json: the journal's dialect is '{other}'"
    ):
        engine.run(options(folder, database_url))


def test_an_old_pg_journal_dialect_is_accepted_on_postgresql(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    folder = write_drizzle_folder(write_folder, [("0000_a", "SELECT 1;")], dialect="pg")
    assert [m.id for m in engine.plan(options(folder, postgres_url)).pending] == ["0000_a"]


def test_the_plan_lists_each_pending_migrations_when(
    sqlite_url: str, write_folder: FolderWriter
) -> None:
    folder = folder_for(sqlite_url, write_folder, ("0000_a", "SELECT 1;"))
    plan = engine.plan(options(folder, sqlite_url)).to_dict()
    assert plan["pending"][0]["when"] == BASE_WHEN
    assert json.loads(json.dumps(plan)) == plan
