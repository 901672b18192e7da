"""The knex engine's own behaviour: planning, failures, refusals, options and safety.

Tests that run migrations start the real Knex CLI once; the rest never start Node.js.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stagecraft.engines import (
    InvalidOptions,
    LockTimeout,
    Migration,
    MigrationFailed,
    PlanChanged,
    ProblemKind,
    Resolution,
    ResolveError,
    RunOptions,
    RunRefused,
)
from stagecraft.engines.knex import KnexEngine
from stagecraft.engines.knex_cli import ToolNotFound
from stagecraft.engines.knex_report import KnexFailed
from tests.engines.knex_projects import js_migration, knex, make_project
from tests.support.postgres_server import PASSWORD

engine = KnexEngine()
CREATE_A = js_migration("CREATE TABLE a (id int)")
CREATE_B = js_migration("CREATE TABLE b (id int)")
FAILS = js_migration("CREATE TABLE partial (id int);\nINSERT INTO missing_table VALUES (1)")


class RecordingProgress:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int, int]] = []

    def started(self, migration: Migration, index: int, total: int) -> None:
        self.events.append(("started", migration.id, index, total))

    def finished(self, migration: Migration, index: int, total: int, duration_ms: int) -> None:
        assert duration_ms >= 0
        self.events.append(("finished", migration.id, index, total))


def tripwire_node(folder: Path) -> tuple[str, Path]:
    """An executable standing in for node that leaves a mark if anything starts it."""
    mark = folder / "node-was-started"
    script = folder / "tripwire-node"
    script.write_text(f"#!/bin/sh\ntouch '{mark}'\nexit 1\n", encoding="utf-8")
    script.chmod(0o755)
    return str(script), mark


def options(folder: Path, url: str, **overrides: Any) -> RunOptions:
    return RunOptions(path=folder, database_url=url, **overrides)


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            b"SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {name for (name,) in rows}


def recorded(url: str, table: str = "knex_migrations") -> list[str]:
    with psycopg.connect(url) as connection:
        return [name for (name,) in connection.execute(f"SELECT name FROM {table}".encode())]


def test_a_failing_migration_rolls_back_the_whole_batch_as_knex_does(
    postgres_url: str, tmp_path: Path
) -> None:
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A, "002_fails.js": FAILS})
    with pytest.raises(MigrationFailed) as failed:
        engine.run(options(folder, postgres_url))
    assert failed.value.migration == "002_fails.js"
    assert failed.value.path == folder / "002_fails.js"
    assert failed.value.failure.sqlstate == "42P01"
    assert 'relation "missing_table" does not exist' in str(failed.value)
    assert "none of its migrations were applied or recorded" in str(failed.value)
    assert failed.value.applied == ()
    assert recorded(postgres_url) == []
    assert not {"a", "partial"} & tables(postgres_url)
    assert recorded(postgres_url, "knex_migrations_stagecraft_started") == []
    pending = [m.id for m in engine.plan(options(folder, postgres_url)).pending]
    assert pending == ["001_a.js", "002_fails.js"]


def test_without_single_transaction_a_failure_keeps_the_migrations_before_it(
    postgres_url: str, tmp_path: Path
) -> None:
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A, "002_fails.js": FAILS})
    with pytest.raises(MigrationFailed) as failed:
        engine.run(options(folder, postgres_url, options={"single_transaction": "false"}))
    assert failed.value.migration == "002_fails.js"
    assert failed.value.failure.sqlstate == "42P01"
    assert [applied.id for applied in failed.value.applied] == ["001_a.js"]
    assert recorded(postgres_url) == ["001_a.js"]
    assert "partial" not in tables(postgres_url)
    assert [m.id for m in engine.plan(options(folder, postgres_url)).pending] == ["002_fails.js"]


@pytest.mark.parametrize(("single_transaction", "started_rows"), [("true", 0), ("false", 2)])
def test_started_rows_are_written_only_outside_a_batch_transaction(
    postgres_url: str, tmp_path: Path, single_transaction: str, started_rows: int
) -> None:
    # In a batch transaction Knex's own rows commit with the migrations: no dirty state to mark.
    probe = js_migration(
        "CREATE TABLE probe AS SELECT count(*) AS started FROM knex_migrations_stagecraft_started"
    )
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A, "002_probe.js": probe})
    run_options = options(folder, postgres_url, options={"single_transaction": single_transaction})
    engine.run(run_options)
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute(b"SELECT started FROM probe").fetchall() == [(started_rows,)]


def test_a_migration_that_opts_out_of_transactions_runs_outside_one(
    postgres_url: str, tmp_path: Path
) -> None:
    concurrently = js_migration("CREATE INDEX CONCURRENTLY a_id ON a (id)", transaction=False)
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A, "002_index.js": concurrently})
    seen = engine.plan(options(folder, postgres_url))
    assert [m.transactional for m in seen.pending] == [True, False]
    # CREATE INDEX CONCURRENTLY fails inside a transaction block: success proves Knex ran it alone.
    report = engine.run(options(folder, postgres_url))
    assert [applied.id for applied in report.applied] == ["001_a.js", "002_index.js"]


def test_a_failing_migration_outside_a_transaction_is_dirty_until_resolved(
    postgres_url: str, tmp_path: Path
) -> None:
    failing = (
        "exports.config = { transaction: false };\n"
        "exports.up = async (knex) => {\n"
        "  await knex.raw('CREATE TABLE partial (id int)');\n"
        "  await knex.raw('INSERT INTO missing_table VALUES (1)');\n"
        "};\n"
        "exports.down = () => Promise.resolve();\n"
    )
    folder = make_project(tmp_path / "app", {"001_partial.js": failing})
    with pytest.raises(MigrationFailed, match="recorded as dirty") as failed:
        engine.run(options(folder, postgres_url))
    assert failed.value.dirty
    assert "partial" in tables(postgres_url)  # what ran before the error stays
    assert recorded(postgres_url) == []

    [dirty] = engine.plan(options(folder, postgres_url)).problems
    assert (dirty.kind, dirty.migration) == (ProblemKind.DIRTY, "001_partial.js")
    assert "stagecraft migrate resolve --migration 001_partial.js" in dirty.message
    with pytest.raises(RunRefused, match="001_partial"):
        engine.run(options(folder, postgres_url))

    execute(postgres_url, "DROP TABLE partial")  # the person undoes it, then says so
    said = engine.resolve(options(folder, postgres_url), "001_partial", Resolution.ROLLED_BACK)
    assert "pending again" in said
    seen = engine.plan(options(folder, postgres_url))
    assert ([m.id for m in seen.pending], seen.problems) == (["001_partial.js"], ())


def test_a_migration_committed_but_never_recorded_by_knex_is_dirty(
    postgres_url: str, tmp_path: Path
) -> None:
    # A runner killed between a migration's commit and Knex's record of it leaves this state.
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A})
    execute(
        postgres_url,
        *KNEX_TABLES,
        "UPDATE knex_migrations_lock SET is_locked = 0",
        "CREATE TABLE knex_migrations_stagecraft_started (name varchar(255) PRIMARY KEY, "
        "started_at timestamptz NOT NULL)",
        "INSERT INTO knex_migrations_stagecraft_started VALUES ('001_a.js', now())",
    )
    [dirty] = engine.plan(options(folder, postgres_url)).problems
    assert (dirty.kind, dirty.migration) == (ProblemKind.DIRTY, "001_a.js")
    engine.resolve(options(folder, postgres_url), "001_a.js", Resolution.APPLIED)
    seen = engine.plan(options(folder, postgres_url))
    assert (seen.pending, seen.problems) == ((), ())
    with psycopg.connect(postgres_url) as connection:
        rows = connection.execute(b"SELECT name, batch FROM knex_migrations").fetchall()
    assert rows == [("001_a.js", 1)]


def test_resolve_refuses_a_migration_that_is_not_dirty(postgres_url: str, tmp_path: Path) -> None:
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A})
    execute(postgres_url, *KNEX_TABLES, "UPDATE knex_migrations_lock SET is_locked = 0")
    with pytest.raises(ResolveError, match="is not dirty"):
        engine.resolve(options(folder, postgres_url), "001_a.js", Resolution.APPLIED)


def test_baseline_records_existing_files_as_knex_would(postgres_url: str, tmp_path: Path) -> None:
    folder = make_project(
        tmp_path / "app",
        {"001_a.js": CREATE_A, "002_b.js": CREATE_B, "003_c.js": CREATE_A},
        knexfile="module.exports = { client: 'pg', connection: process.env.DATABASE_URL };\n",
    )
    assert engine.baseline(options(folder, postgres_url), "002_b") == ["001_a.js", "002_b.js"]
    assert [m.id for m in engine.plan(options(folder, postgres_url)).pending] == ["003_c.js"]
    listed = knex(folder.parent, postgres_url, "migrate:list")
    assert "Found 2 Completed Migration file/files." in listed.stdout, listed.stdout + listed.stderr
    assert "Found 1 Pending Migration file/files." in listed.stdout


def test_the_database_password_reaches_knex_only_through_the_environment(
    postgres_url: str, tmp_path: Path
) -> None:
    # The migration fails with its own command line and the URL variable's name in the message.
    spy = (
        "exports.up = () => { throw new Error('argv=' + JSON.stringify(process.argv) + "
        "' has_url=' + (process.env.DATABASE_URL.length > 0)); };\n"
        "exports.down = () => Promise.resolve();\n"
    )
    folder = make_project(tmp_path / "app", {"001_spy.js": spy})
    with pytest.raises(MigrationFailed) as failed:
        engine.run(options(folder, postgres_url))
    message = str(failed.value)
    assert "argv=" in message
    assert "has_url=true" in message
    assert PASSWORD not in message
    assert "postgresql://" not in message


def test_progress_is_reported_per_migration_as_knex_runs(postgres_url: str, tmp_path: Path) -> None:
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A, "002_b.js": CREATE_B})
    progress = RecordingProgress()
    report = engine.run(options(folder, postgres_url, progress=progress))
    assert progress.events == [
        ("started", "001_a.js", 1, 2),
        ("finished", "001_a.js", 1, 2),
        ("started", "002_b.js", 2, 2),
        ("finished", "002_b.js", 2, 2),
    ]
    assert all(applied.duration_ms >= 0 for applied in report.applied)
    assert recorded(postgres_url, "knex_migrations_stagecraft_started") == []


def test_custom_table_and_schema_are_used_by_plan_and_by_knex(
    postgres_url: str, tmp_path: Path
) -> None:
    knexfile = (
        "module.exports = { client: 'pg', connection: process.env.DATABASE_URL,\n"
        "  migrations: { tableName: 'schema_history', schemaName: 'ops' } };\n"
    )
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A}, knexfile=knexfile)
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(b"CREATE SCHEMA ops")
    custom = {"table": "schema_history", "schema": "ops"}
    assert engine.run(options(folder, postgres_url, options=custom)).applied[0].id == "001_a.js"
    assert recorded(postgres_url, "ops.schema_history") == ["001_a.js"]
    assert engine.plan(options(folder, postgres_url, options=custom)).pending == ()
    listed = knex(folder.parent, postgres_url, "migrate:list")
    assert "No Pending Migration files Found." in listed.stdout, listed.stdout + listed.stderr


def test_a_knexfile_that_disagrees_with_the_options_stops_before_running(
    postgres_url: str, tmp_path: Path
) -> None:
    knexfile = (
        "module.exports = { client: 'pg', connection: process.env.DATABASE_URL,\n"
        "  migrations: { tableName: 'schema_history' } };\n"
    )
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A}, knexfile=knexfile)
    with pytest.raises(InvalidOptions, match="schema_history") as invalid:
        engine.run(options(folder, postgres_url))
    assert invalid.value.problems[0][0] == "table"
    assert "a" not in tables(postgres_url)


def test_a_missing_file_is_reported_by_plan_and_refused_by_run(
    postgres_url: str, tmp_path: Path
) -> None:
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A, "002_b.js": CREATE_B})
    engine.run(options(folder, postgres_url))
    (folder / "001_a.js").unlink()
    (folder / "003_c.js").write_text(js_migration("CREATE TABLE c (id int)"), encoding="utf-8")
    [missing] = engine.plan(options(folder, postgres_url)).problems
    assert (missing.kind, missing.migration) == (ProblemKind.MISSING_FILE, "001_a.js")
    assert "migration directory is corrupt" in missing.message
    with pytest.raises(RunRefused, match=r"001_a\.js"):
        engine.run(options(folder, postgres_url))
    allowed = engine.run(options(folder, postgres_url, allow=frozenset({"missing_file"})))
    assert [applied.id for applied in allowed.applied] == ["003_c.js"]


def test_dry_run_plans_under_the_lock_and_changes_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A})
    node, mark = tripwire_node(tmp_path)
    report = engine.run(options(folder, postgres_url, dry_run=True, options={"node": node}))
    assert report.dry_run
    assert [m.id for m in report.plan.pending] == ["001_a.js"]
    assert tables(postgres_url) == set()
    assert not mark.exists()


def test_a_run_bound_to_another_plan_is_refused(postgres_url: str, tmp_path: Path) -> None:
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A})
    reviewed = engine.plan(options(folder, postgres_url)).fingerprint
    (folder / "001_a.js").write_text(CREATE_B, encoding="utf-8")  # edited after the review
    with pytest.raises(PlanChanged):
        engine.run(options(folder, postgres_url, expected_plan=reviewed))
    assert tables(postgres_url) == set()


def test_a_run_with_nothing_pending_does_not_start_knex(postgres_url: str, tmp_path: Path) -> None:
    folder = make_project(tmp_path / "app", {})
    node, mark = tripwire_node(tmp_path)
    assert engine.run(options(folder, postgres_url, options={"node": node})).applied == ()
    assert not mark.exists()


def test_a_missing_node_says_what_to_install(postgres_url: str, tmp_path: Path) -> None:
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A})
    with pytest.raises(ToolNotFound, match=r"install Node\.js"):
        engine.run(options(folder, postgres_url, options={"node": "no-such-node-binary"}))


def test_a_project_without_knex_says_what_to_install(postgres_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "app" / "migrations"
    folder.mkdir(parents=True)
    (folder / "001_a.js").write_text(CREATE_A, encoding="utf-8")
    with pytest.raises(ToolNotFound, match="npm install knex"):
        engine.run(options(folder, postgres_url))


def test_unknown_options_are_rejected_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptions, match="url_env"):
        engine.parse_options({"tabel": "x"})


KNEX_TABLES = (
    'CREATE TABLE "knex_migrations" ("id" serial primary key, "name" varchar(255), '
    '"batch" integer, "migration_time" timestamptz)',
    'CREATE TABLE "knex_migrations_lock" ("index" serial primary key, "is_locked" integer)',
    'INSERT INTO "knex_migrations_lock" ("is_locked") VALUES (1)',
)


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement.encode())


def test_a_run_waits_for_a_knex_lock_released_within_the_lock_timeout(
    postgres_url: str, tmp_path: Path
) -> None:
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A})
    execute(postgres_url, *KNEX_TABLES)  # as while a `knex migrate:latest` runs
    release = threading.Timer(
        0.5, execute, (postgres_url, "UPDATE knex_migrations_lock SET is_locked = 0")
    )
    release.start()
    try:
        report = engine.run(options(folder, postgres_url, lock_timeout=60))
    finally:
        release.join()
    assert [applied.id for applied in report.applied] == ["001_a.js"]


def test_a_knex_batch_holding_its_lock_row_in_a_transaction_times_the_run_out(
    postgres_url: str, tmp_path: Path
) -> None:
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A})
    execute(postgres_url, *KNEX_TABLES, "UPDATE knex_migrations_lock SET is_locked = 0")
    with psycopg.connect(postgres_url) as knex_batch:  # Knex's default: lock inside the batch
        knex_batch.execute(b"UPDATE knex_migrations_lock SET is_locked = 1")
        with pytest.raises(LockTimeout, match="knex_migrations_lock"):
            engine.run(options(folder, postgres_url, lock_timeout=0.3))
        knex_batch.rollback()
    assert recorded(postgres_url) == []


def test_migrations_a_plain_knex_applies_in_between_are_reported_as_skipped(
    postgres_url: str, tmp_path: Path
) -> None:
    # The project's knexfile runs a plain `knex migrate:latest` of its own while Stagecraft's
    # Knex loads it: after Stagecraft planned, before its Knex lists the migrations.
    knexfile = (
        "const { execFileSync } = require('child_process');\n"
        "const config = { client: 'pg', connection: process.env.DATABASE_URL };\n"
        "module.exports = () => {\n"
        "  if (!process.env.INNER_KNEX) {\n"
        "    execFileSync(process.execPath, [require.resolve('knex/bin/cli.js'), "
        "'migrate:latest', '--knexfile', __filename], "
        "{ env: { ...process.env, INNER_KNEX: '1' }, cwd: __dirname });\n"
        "  }\n"
        "  return config;\n"
        "};\n"
    )
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A}, knexfile=knexfile)
    report = engine.run(options(folder, postgres_url))
    assert (report.applied, report.skipped) == ((), ("001_a.js",))
    assert recorded(postgres_url) == ["001_a.js"]


def test_a_knexfile_that_cannot_load_says_why(postgres_url: str, tmp_path: Path) -> None:
    knexfile = "module.exports = { client: 'pg', connection: require('./missing-settings') };\n"
    folder = make_project(tmp_path / "app", {"001_a.js": CREATE_A}, knexfile=knexfile)
    with pytest.raises(KnexFailed, match=r"Cannot find module '\./missing-settings'"):
        engine.run(options(folder, postgres_url))


def test_several_folders_run_in_knexs_order_when_the_knexfile_lists_them(
    postgres_url: str, tmp_path: Path
) -> None:
    knexfile = (
        "module.exports = { client: 'pg', connection: process.env.DATABASE_URL,\n"
        "  migrations: { directory: ['./migrations', './more'] } };\n"
    )
    folder = make_project(tmp_path / "app", {"002_b.js": CREATE_B}, knexfile=knexfile)
    (folder.parent / "more").mkdir()
    (folder.parent / "more" / "001_a.js").write_text(CREATE_A, encoding="utf-8")
    (folder.parent / "more" / "003_c.js").write_text(
        js_migration("CREATE TABLE c (id int)"), encoding="utf-8"
    )
    report = engine.run(options(folder, postgres_url, options={"extra_directories": "more"}))
    assert [applied.id for applied in report.applied] == ["001_a.js", "002_b.js", "003_c.js"]
    assert recorded(postgres_url) == ["001_a.js", "002_b.js", "003_c.js"]
