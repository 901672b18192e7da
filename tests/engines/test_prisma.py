"""The prisma engine on PostgreSQL and SQLite: Prisma's rows, failures, resolutions and refusals."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stagecraft.engines import (
    InvalidOptions,
    LockTimeout,
    MigrationSourceError,
    PlanOptions,
    ProblemKind,
    Resolution,
    ResolveError,
    RunOptions,
    RunRefused,
    get,
)
from stagecraft.engines.database import connect
from stagecraft.engines.prisma import PRISMA_ADVISORY_LOCK_KEY, PrismaEngine, PrismaMigrationFailed
from stagecraft.engines.prisma_rules import NEEDS_BASELINE
from tests.conftest import FolderWriter
from tests.engines.prisma_tools import MIGRATION_COLUMNS

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
FIRST, SECOND, BAD = "20240101000000_first", "20240102000000_second", "20240103000000_bad"
GOOD = {
    f"{FIRST}/migration.sql": "CREATE TABLE first_table (id integer PRIMARY KEY);\n",
    f"{SECOND}/migration.sql": "CREATE TABLE second_table (id integer PRIMARY KEY);\n",
}
FAILING = {
    f"{BAD}/migration.sql": (
        "CREATE TABLE bad_table (id integer);\nINSERT INTO missing_table VALUES (1);\n"
    )
}


def engine() -> PrismaEngine:
    found = get("prisma")
    assert isinstance(found, PrismaEngine)
    return found


def plan_options(folder: Path, url: str) -> PlanOptions:
    return PlanOptions(path=folder, database_url=url)


def run(folder: Path, url: str, **options: Any) -> list[str]:
    report = engine().run(RunOptions(path=folder, database_url=url, **options))
    return [applied.id for applied in report.applied]


def rows(url: str) -> list[dict[str, Any]]:
    database = connect(url, read_only=True)
    try:
        found = database.query(
            f"SELECT {', '.join(MIGRATION_COLUMNS)} FROM _prisma_migrations "
            "ORDER BY started_at, migration_name"
        )
        return [dict(zip(MIGRATION_COLUMNS, row, strict=True)) for row in found]
    finally:
        database.close()


def tables(url: str) -> set[str]:
    database = connect(url, read_only=True)
    try:
        return database.table_names()
    finally:
        database.close()


def provider_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def test_a_run_writes_the_rows_prisma_writes(database_url: str, write_folder: FolderWriter) -> None:
    folder = write_folder(GOOD)
    assert run(folder, database_url) == [FIRST, SECOND]
    written = rows(database_url)
    assert [row["migration_name"] for row in written] == [FIRST, SECOND]
    for row, script in zip(written, GOOD.values(), strict=True):
        assert UUID4.match(row["id"])
        assert row["checksum"] == hashlib.sha256(script.encode()).hexdigest()
        assert row["logs"] is None
        assert row["rolled_back_at"] is None
        assert row["applied_steps_count"] == 1
        assert row["started_at"] <= row["finished_at"]
    if provider_of(database_url) == "sqlite":  # Prisma's SQLite text form of DATETIME
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", written[0]["started_at"]
        )


def test_a_failure_is_recorded_as_prisma_records_it_and_blocks_every_run(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({**GOOD, **FAILING})
    with pytest.raises(PrismaMigrationFailed) as failure:
        run(folder, database_url)
    assert failure.value.migration == BAD
    assert not failure.value.dirty
    assert [a.id for a in failure.value.applied] == [FIRST, SECOND]
    assert f"--migration {BAD} --rolled-back" in str(failure.value)
    assert "nothing of it was applied" in str(failure.value)
    # Rows started in the same millisecond (SQLite keeps milliseconds) have no order: find it.
    (failed,) = [row for row in rows(database_url) if row["migration_name"] == BAD]
    assert (failed["migration_name"], failed["finished_at"], failed["applied_steps_count"]) == (
        BAD,
        None,
        0,
    )
    assert "missing_table" in failed["logs"]
    assert "nothing of it" not in failed["logs"]  # the row itself says what was recorded
    assert "bad_table" not in tables(database_url)
    plan = engine().plan(plan_options(folder, database_url))
    assert [m.id for m in plan.pending] == [BAD]
    assert [(p.kind, p.migration) for p in plan.problems] == [(ProblemKind.FAILED, BAD)]
    with pytest.raises(RunRefused, match="P3009"):
        run(folder, database_url)


def test_resolve_rolled_back_lets_the_fixed_migration_run_again(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({**GOOD, **FAILING})
    with pytest.raises(PrismaMigrationFailed):
        run(folder, database_url)
    message = engine().resolve(plan_options(folder, database_url), BAD, Resolution.ROLLED_BACK)
    assert "pending again" in message
    (rolled_back,) = [row for row in rows(database_url) if row["migration_name"] == BAD]
    assert rolled_back["rolled_back_at"] is not None
    (folder / BAD / "migration.sql").write_text("CREATE TABLE bad_table (id integer);\n")
    assert run(folder, database_url) == [BAD]
    with pytest.raises(ResolveError, match="P3012"):
        engine().resolve(plan_options(folder, database_url), BAD, Resolution.ROLLED_BACK)


def test_resolve_applied_records_the_migration_as_prisma_does(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({**GOOD, **FAILING})
    with pytest.raises(PrismaMigrationFailed):
        run(folder, database_url)
    engine().resolve(plan_options(folder, database_url), BAD, Resolution.APPLIED)
    attempts = [row for row in rows(database_url) if row["migration_name"] == BAD]
    failed, resolved = sorted(attempts, key=lambda row: row["rolled_back_at"] is None)
    assert failed["rolled_back_at"] is not None  # the failed attempt it replaces
    assert (resolved["migration_name"], resolved["logs"], resolved["applied_steps_count"]) == (
        BAD,
        "",
        0,
    )
    assert resolved["started_at"] == resolved["finished_at"]
    plan = engine().plan(plan_options(folder, database_url))
    assert (plan.pending, plan.problems) == ((), ())
    with pytest.raises(ResolveError, match="P3008"):
        engine().resolve(plan_options(folder, database_url), BAD, Resolution.APPLIED)
    with pytest.raises(ResolveError, match="P3017"):
        engine().resolve(plan_options(folder, database_url), "no_such", Resolution.APPLIED)


def test_a_folder_without_migration_sql_stops_everything_before_any_sql(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({**GOOD, "20240102500000_draft/notes.txt": "todo\n"})
    with pytest.raises(MigrationSourceError, match=r"20240102500000_draft has no migration\.sql"):
        run(folder, database_url)
    assert tables(database_url) == set()


def test_the_provider_in_migration_lock_toml_must_match_the_database(
    database_url: str, write_folder: FolderWriter
) -> None:
    lock = "# Please do not edit this file manually\nprovider = {!r}\n"
    matching = write_folder({**GOOD, "migration_lock.toml": lock.format(provider_of(database_url))})
    assert [m.id for m in engine().plan(plan_options(matching, database_url)).pending] == [
        FIRST,
        SECOND,
    ]
    other = write_folder({**GOOD, "migration_lock.toml": lock.format("mysql")})
    with pytest.raises(MigrationSourceError, match=r"migration_lock.toml says .* 'mysql'.*P3019"):
        run(other, database_url)
    assert tables(database_url) == set()


def test_a_database_with_tables_but_no_prisma_table_needs_a_baseline(
    database_url: str, write_folder: FolderWriter
) -> None:
    database = connect(database_url)
    database.execute("CREATE TABLE legacy (id integer)")
    database.close()
    folder = write_folder(GOOD)
    plan = engine().plan(plan_options(folder, database_url))
    assert [p.kind for p in plan.problems] == [NEEDS_BASELINE]
    with pytest.raises(RunRefused, match=r"P3005.*--migration 20240101000000_first --applied"):
        run(folder, database_url)
    assert engine().baseline(plan_options(folder, database_url), FIRST) == [FIRST]
    assert run(folder, database_url) == [SECOND]
    assert [row["applied_steps_count"] for row in rows(database_url)] == [0, 1]


def test_edited_and_missing_applied_migrations_are_reported_but_line_endings_are_not(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder(GOOD)
    run(folder, database_url)
    first = folder / FIRST / "migration.sql"
    first.write_bytes(first.read_bytes().replace(b"\n", b"\r\n"))
    assert engine().plan(plan_options(folder, database_url)).problems == ()
    first.write_text("CREATE TABLE first_table (id bigint PRIMARY KEY);\n")
    (folder / SECOND / "migration.sql").unlink()
    (folder / SECOND).rmdir()
    plan = engine().plan(plan_options(folder, database_url))
    assert sorted((p.kind, p.migration) for p in plan.problems) == [
        (ProblemKind.CHECKSUM_MISMATCH, FIRST),
        (ProblemKind.MISSING_FILE, SECOND),
    ]
    assert run(folder, database_url, allow=frozenset(ProblemKind)) == []
    assert "accepted" in engine().resolve(
        plan_options(folder, database_url), FIRST, Resolution.APPLIED
    )
    assert [p.kind for p in engine().plan(plan_options(folder, database_url)).problems] == [
        ProblemKind.MISSING_FILE
    ]


def test_a_script_that_controls_its_transaction_runs_outside_one(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder(
        {
            f"{FIRST}/migration.sql": "BEGIN;\nCREATE TABLE own_tx (id integer);\nCOMMIT;\n",
            f"{SECOND}/migration.sql": (
                "BEGIN;\nCREATE TABLE own_tx_bad (id integer);\n"
                "INSERT INTO missing_table VALUES (1);\nCOMMIT;\n"
            ),
        }
    )
    plan = engine().plan(plan_options(folder, database_url))
    assert [m.transactional for m in plan.pending] == [False, False]
    with pytest.raises(PrismaMigrationFailed) as failure:
        run(folder, database_url)
    assert failure.value.migration == SECOND
    assert failure.value.dirty
    assert "own_tx" in tables(database_url)
    assert "own_tx_bad" not in tables(database_url)  # its own transaction was rolled back
    first, second = rows(database_url)
    assert (first["applied_steps_count"], first["finished_at"] is None) == (1, False)
    assert (second["finished_at"], "missing_table" in second["logs"]) == (None, True)


def test_a_script_that_is_not_utf8_is_refused_before_any_sql(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({**GOOD, f"{BAD}/migration.sql": b"SELECT 'caf\xe9';\n"})
    with pytest.raises(MigrationSourceError, match=r"bad/migration.sql:1: not valid UTF-8"):
        run(folder, database_url)
    assert tables(database_url) == set()


def test_unknown_options_are_refused(sqlite_url: str, write_folder: FolderWriter) -> None:
    with pytest.raises(InvalidOptions, match="table: unknown option"):
        engine().plan(
            PlanOptions(path=write_folder(GOOD), database_url=sqlite_url, options={"table": "x"})
        )


def test_prisma_holding_its_advisory_lock_makes_stagecraft_wait(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as prisma_session:
        prisma_session.execute("SELECT pg_advisory_lock(%s)", (PRISMA_ADVISORY_LOCK_KEY,))
        with pytest.raises(LockTimeout):
            run(write_folder(GOOD), postgres_url, lock_timeout=0.2)
    assert tables(postgres_url) == set()


def stagecraft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stagecraft", "migrate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_resolves_a_failed_prisma_migration(
    sqlite_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({**GOOD, **FAILING})
    target = ["--engine", "prisma", "--path", str(folder), "--database-url", sqlite_url]
    assert stagecraft("run", *target).returncode == 1
    refused = stagecraft("run", *target)
    assert refused.returncode == 4
    assert "P3009" in refused.stdout + refused.stderr
    resolved = stagecraft("resolve", *target, "--migration", BAD, "--rolled-back")
    assert resolved.returncode == 0, resolved.stderr
    (folder / BAD / "migration.sql").write_text("CREATE TABLE bad_table (id integer);\n")
    applied = stagecraft("run", *target)
    assert applied.returncode == 0, applied.stderr
    assert BAD in applied.stdout


def test_a_symlinked_folder_is_skipped_as_prisma_skips_it(
    sqlite_url: str, write_folder: FolderWriter
) -> None:
    elsewhere = write_folder({"migration.sql": "CREATE TABLE linked (id integer);\n"})
    folder = write_folder(GOOD)
    (folder / "20240101500000_linked").symlink_to(elsewhere, target_is_directory=True)
    assert run(folder, sqlite_url) == [FIRST, SECOND]
