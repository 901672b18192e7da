"""The raw engine on PostgreSQL and SQLite: ordering, safety checks, errors and recovery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stagecraft.engines import (
    InvalidOptions,
    MigrationFailed,
    MigrationSourceError,
    PlanChanged,
    ProblemKind,
    Resolution,
    ResolveError,
    RunOptions,
    RunRefused,
    get,
)
from stagecraft.engines.database import connect
from stagecraft.engines.raw import RawEngine
from tests.conftest import FolderWriter

engine = RawEngine()


def options(folder: Path, url: str, **extra: Any) -> RunOptions:
    return RunOptions(path=folder, database_url=url, **extra)


def tables(url: str) -> set[str]:
    database = connect(url, read_only=True)
    try:
        return database.table_names()
    finally:
        database.close()


def scalar(url: str, sql: str) -> Any:
    database = connect(url)
    try:
        return database.query(sql)[0][0]
    finally:
        database.close()


def test_the_registry_returns_the_raw_engine() -> None:
    assert isinstance(get("raw"), RawEngine)


def test_files_apply_in_byte_order_of_their_names_and_other_files_are_ignored(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder(
        {
            "b.sql": "INSERT INTO log VALUES ('b');",
            "a-2.sql": "INSERT INTO log VALUES ('a-2');",
            "a.sql": "INSERT INTO log VALUES ('a');",
            "A.sql": "CREATE TABLE log (name text);",
            "README.md": "not a migration",
            "notes.sql.bak": "DROP TABLE log;",
        }
    )
    report = engine.run(options(folder, database_url))
    assert [a.id for a in report.applied] == ["A.sql", "a-2.sql", "a.sql", "b.sql"]
    database = connect(database_url)
    try:
        rows = database.query("SELECT name FROM log")
    finally:
        database.close()
    assert [name for (name,) in rows] == ["a-2", "a", "b"]


def test_a_second_run_applies_nothing(database_url: str, write_folder: FolderWriter) -> None:
    folder = write_folder({"1.sql": "CREATE TABLE t (id int);"})
    assert len(engine.run(options(folder, database_url)).applied) == 1
    again = engine.run(options(folder, database_url))
    assert again.applied == ()
    assert engine.plan(options(folder, database_url)).pending == ()


def test_the_tracking_table_records_checksum_time_duration_and_success(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "CREATE TABLE t (id int);"})
    engine.run(options(folder, database_url))
    plan = engine.plan(options(folder, database_url))
    (row,) = plan.applied
    assert row.id == "1.sql"
    assert row.checksum == plan_checksum(folder / "1.sql")
    assert row.applied_at
    assert row.execution_ms is not None
    assert row.execution_ms >= 0
    assert not row.dirty


def plan_checksum(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_tracking_table_name_and_schema_are_configurable(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "CREATE TABLE t (id int);"})
    opts = options(folder, postgres_url, options={"schema": "ops", "table": "schema_history"})
    engine.run(opts)
    assert scalar(postgres_url, "SELECT count(*) FROM ops.schema_history") == 1
    assert engine.plan(opts).pending == ()
    assert len(engine.plan(options(folder, postgres_url)).pending) == 1


def test_a_schema_option_on_sqlite_is_refused(sqlite_url: str, write_folder: FolderWriter) -> None:
    folder = write_folder({"1.sql": "SELECT 1;"})
    with pytest.raises(InvalidOptions, match="schema"):
        engine.run(options(folder, sqlite_url, options={"schema": "ops"}))


def test_a_missing_folder_is_a_clear_error(database_url: str, tmp_path: Path) -> None:
    with pytest.raises(MigrationSourceError, match=r"migrations folder .*nowhere does not exist"):
        engine.plan(options(tmp_path / "nowhere", database_url))


def test_plan_changes_nothing_not_even_creating_the_sqlite_file(
    tmp_path: Path, write_folder: FolderWriter
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    folder = write_folder({"1.sql": "CREATE TABLE t (id int);"})
    assert len(engine.plan(options(folder, url)).pending) == 1
    assert not (tmp_path / "fresh.db").exists()


def test_an_edited_applied_file_is_refused_unless_allowed(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "CREATE TABLE t (id int);", "2.sql": "SELECT 1;"})
    engine.run(options(folder, database_url))
    (folder / "1.sql").write_text("CREATE TABLE t (id bigint);")
    (folder / "3.sql").write_text("CREATE TABLE u (id int);")
    plan = engine.plan(options(folder, database_url))
    assert [(p.kind, p.migration) for p in plan.problems] == [
        (ProblemKind.CHECKSUM_MISMATCH, "1.sql")
    ]
    with pytest.raises(RunRefused, match=r"1\.sql was edited after it was applied"):
        engine.run(options(folder, database_url))
    assert "u" not in tables(database_url)
    allowed = engine.run(
        options(folder, database_url, allow=frozenset({ProblemKind.CHECKSUM_MISMATCH}))
    )
    assert [a.id for a in allowed.applied] == ["3.sql"]


def test_an_applied_file_that_is_gone_is_refused_unless_allowed(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "CREATE TABLE t (id int);", "2.sql": "SELECT 1;"})
    engine.run(options(folder, database_url))
    (folder / "1.sql").unlink()
    (folder / "3.sql").write_text("CREATE TABLE u (id int);")
    with pytest.raises(RunRefused, match=r"1\.sql is recorded as applied but its file is gone"):
        engine.run(options(folder, database_url))
    report = engine.run(options(folder, database_url, allow=frozenset({ProblemKind.MISSING_FILE})))
    assert [a.id for a in report.applied] == ["3.sql"]


def test_a_new_file_sorting_before_the_last_applied_is_refused_unless_allowed(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "SELECT 1;", "3.sql": "SELECT 3;"})
    engine.run(options(folder, database_url))
    (folder / "2.sql").write_text("CREATE TABLE late (id int);")
    with pytest.raises(RunRefused, match=r"2\.sql is new but sorts before 3\.sql"):
        engine.run(options(folder, database_url))
    assert "late" not in tables(database_url)
    report = engine.run(options(folder, database_url, allow=frozenset({ProblemKind.OUT_OF_ORDER})))
    assert [a.id for a in report.applied] == ["2.sql"]


def test_an_sql_error_names_file_line_column_and_the_database_message_and_records_nothing(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder(
        {
            "1.sql": "CREATE TABLE ok (id int);",
            "2.sql": "CREATE TABLE t (id int);\n\nINSERT INTO t\n  SELECT nosuch FROM t;\n",
        }
    )
    with pytest.raises(MigrationFailed) as raised:
        engine.run(options(folder, postgres_url))
    failure = raised.value.failure
    assert raised.value.migration == "2.sql"
    assert raised.value.path == folder / "2.sql"
    assert (failure.line, failure.column) == (4, 10)  # the column reference PostgreSQL points at
    assert failure.sqlstate == "42703"
    assert 'column "nosuch" does not exist' in failure.message
    assert failure.hint is None or isinstance(failure.hint, str)
    assert "2.sql:4:10" in str(raised.value)
    assert "nothing of it was applied or recorded" in str(raised.value)
    assert [a.id for a in raised.value.applied] == ["1.sql"]
    plan = engine.plan(options(folder, postgres_url))
    assert [a.id for a in plan.applied] == ["1.sql"]
    assert [m.id for m in plan.pending] == ["2.sql"]
    assert "t" not in tables(postgres_url)


def test_an_execution_error_without_a_position_names_the_failing_statement(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder(
        {
            "1.sql": (
                "CREATE TABLE t (id int PRIMARY KEY);\n"
                "INSERT INTO t VALUES (1);\n"
                "   INSERT INTO t VALUES (1);\n"
            )
        }
    )
    with pytest.raises(MigrationFailed) as raised:
        engine.run(options(folder, database_url))
    assert (raised.value.failure.line, raised.value.failure.column) == (3, 4)
    assert "t" not in tables(database_url)


def test_postgres_errors_carry_detail_and_hint(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "SELECT * FROM generate_series(1, 'x');"})
    with pytest.raises(MigrationFailed) as raised:
        engine.run(options(folder, postgres_url))
    assert raised.value.failure.sqlstate is not None
    folder = write_folder({"1.sql": "SELECT lenght('x');"})
    with pytest.raises(MigrationFailed) as hinted:
        engine.run(options(folder, postgres_url))
    assert hinted.value.failure.hint
    assert "hint:" in str(hinted.value)


def test_a_failed_no_transaction_file_is_dirty_and_blocks_until_resolved(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder(
        {
            "1.sql": "CREATE TABLE t (id int);",
            "2.sql": (
                "-- stagecraft:no-transaction\n"
                "CREATE TABLE half (id int);\nINSERT INTO nowhere VALUES (1);\n"
            ),
            "3.sql": "CREATE TABLE after (id int);",
        }
    )
    with pytest.raises(MigrationFailed) as raised:
        engine.run(options(folder, database_url))
    assert raised.value.dirty
    assert "stagecraft migrate resolve --migration 2.sql" in str(raised.value)
    assert "half" in tables(database_url)  # ran outside a transaction: its first part stayed
    plan = engine.plan(options(folder, database_url))
    assert [(p.kind, p.migration) for p in plan.problems] == [(ProblemKind.DIRTY, "2.sql")]
    with pytest.raises(RunRefused, match=r"stagecraft migrate resolve --migration 2\.sql"):
        engine.run(options(folder, database_url))
    with pytest.raises(RunRefused):  # dirty can never be waved through
        engine.run(options(folder, database_url, allow=frozenset(ProblemKind)))
    message = engine.resolve(options(folder, database_url), "2.sql", Resolution.ROLLED_BACK)
    assert "pending again" in message
    (folder / "2.sql").write_text(
        "-- stagecraft:no-transaction\nCREATE TABLE IF NOT EXISTS half (id int);\n"
    )
    report = engine.run(options(folder, database_url))
    assert [a.id for a in report.applied] == ["2.sql", "3.sql"]


def test_resolve_applied_clears_a_dirty_record(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder(
        {"1.sql": "-- stagecraft:no-transaction\nCREATE TABLE a (id int);\nSELECT * FROM nowhere;"}
    )
    with pytest.raises(MigrationFailed):
        engine.run(options(folder, database_url))
    engine.resolve(options(folder, database_url), "1", Resolution.APPLIED)
    plan = engine.plan(options(folder, database_url))
    assert plan.problems == ()
    assert plan.pending == ()
    with pytest.raises(ResolveError, match="already applied"):
        engine.resolve(options(folder, database_url), "1.sql", Resolution.APPLIED)
    with pytest.raises(ResolveError, match="not dirty"):
        engine.resolve(options(folder, database_url), "1.sql", Resolution.ROLLED_BACK)


def test_no_transaction_files_run_statements_that_refuse_transactions(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder(
        {
            "1.sql": "CREATE TABLE t (id int);",
            "2.sql": "-- stagecraft:no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n",
        }
    )
    report = engine.run(options(folder, postgres_url))
    assert [a.id for a in report.applied] == ["1.sql", "2.sql"]
    assert scalar(postgres_url, "SELECT count(*) FROM pg_indexes WHERE indexname = 't_id'") == 1


def test_transaction_control_inside_a_transactional_file_is_refused_before_anything_runs(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder(
        {"1.sql": "CREATE TABLE first (id int);", "2.sql": "SELECT 1;\nCOMMIT;\nSELECT 2;"}
    )
    with pytest.raises(MigrationSourceError, match=r"2\.sql:2:1: COMMIT controls the transaction"):
        engine.run(options(folder, database_url))
    assert "first" not in tables(database_url)


def test_an_unknown_directive_is_an_error_naming_the_file(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "-- stagecraft:no-transation\nSELECT 1;"})
    with pytest.raises(MigrationSourceError, match=r"1\.sql: unknown directive"):
        engine.plan(options(folder, database_url))


def test_a_file_that_is_not_utf8_is_an_error_naming_file_and_line(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": b"SELECT 1;\nSELECT '\xff';\n"})
    with pytest.raises(MigrationSourceError, match=r"1\.sql:2: not valid UTF-8"):
        engine.run(options(folder, database_url))


def test_baseline_records_files_up_to_a_version_without_running_them(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder(
        {
            "1.sql": "CREATE TABLE existing (id int);",
            "2.sql": "CREATE TABLE existing_too (id int);",
            "3.sql": "CREATE TABLE new (id int);",
        }
    )
    assert engine.baseline(options(folder, database_url), "2") == ["1.sql", "2.sql"]
    report = engine.run(options(folder, database_url))
    assert [a.id for a in report.applied] == ["3.sql"]
    assert "existing" not in tables(database_url)
    with pytest.raises(ResolveError, match="no migration file named '9'"):
        engine.baseline(options(folder, database_url), "9")


def test_dry_run_plans_under_the_lock_and_changes_nothing(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "CREATE TABLE t (id int);"})
    before = tables(database_url)
    report = engine.run(options(folder, database_url, dry_run=True))
    assert report.dry_run
    assert [m.id for m in report.plan.pending] == ["1.sql"]
    assert tables(database_url) == before


def test_a_run_bound_to_a_reviewed_plan_refuses_a_different_one(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "CREATE TABLE t (id int);"})
    reviewed = engine.plan(options(folder, database_url)).fingerprint
    (folder / "2.sql").write_text("DROP TABLE t;")
    with pytest.raises(PlanChanged, match=reviewed):
        engine.run(options(folder, database_url, expected_plan=reviewed))
    assert "t" not in tables(database_url)
    current = engine.plan(options(folder, database_url)).fingerprint
    assert len(engine.run(options(folder, database_url, expected_plan=current)).applied) == 2
