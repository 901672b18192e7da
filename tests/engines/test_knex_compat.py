"""The knex engine and the real Knex 3.3.0 CLI on one PostgreSQL database, both ways round.

The fixture project (tests/engines/fixtures/knex/project) is a typical application: a knexfile
that reads DATABASE_URL, `.js` and `.cjs` migrations, one that opts out of the transaction
(CREATE INDEX CONCURRENTLY), and files Knex ignores (`.mjs`, README.md).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stagecraft.engines import Plan, ProblemKind, RunOptions, RunRefused
from stagecraft.engines.knex import KnexEngine
from tests.engines.knex_projects import KNEX_CLI, copy_fixture_project, knex

engine = KnexEngine()
FIXTURE_MIGRATIONS = [
    "20240101000000_create_users.js",
    "20240102000000_create_posts.js",
    "20240103000000_seed_admin.cjs",
    "20240104000000_index_posts.js",
]


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(sql.encode()).fetchall()


def execute(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.encode())


def column_shape(url: str, table: str) -> list[tuple[Any, ...]]:
    return query(
        url,
        "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default "
        f"FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position",
    )


def plan(folder: Path, url: str, **options: str) -> Plan:
    return engine.plan(RunOptions(path=folder, database_url=url, options=options))


def run(folder: Path, url: str, **overrides: Any) -> list[str]:
    report = engine.run(RunOptions(path=folder, database_url=url, **overrides))
    return [applied.id for applied in report.applied]


def test_after_knex_migrates_stagecraft_sees_nothing_pending(
    postgres_url: str, tmp_path: Path
) -> None:
    folder = copy_fixture_project(tmp_path / "app")
    done = knex(folder.parent, postgres_url, "migrate:latest")
    assert done.returncode == 0, done.stdout + done.stderr
    seen = plan(folder, postgres_url)
    assert (seen.pending, seen.problems) == ((), ())
    assert [applied.id for applied in seen.applied] == FIXTURE_MIGRATIONS


def test_after_stagecraft_migrates_knex_is_already_up_to_date(
    postgres_url: str, tmp_path: Path
) -> None:
    folder = copy_fixture_project(tmp_path / "app")
    assert run(folder, postgres_url) == FIXTURE_MIGRATIONS
    latest = knex(folder.parent, postgres_url, "migrate:latest")
    assert latest.returncode == 0, latest.stdout + latest.stderr
    assert "Already up to date" in latest.stdout
    listed = knex(folder.parent, postgres_url, "migrate:list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "Found 4 Completed Migration file/files." in listed.stdout
    assert "No Pending Migration files Found." in listed.stdout


def test_both_tools_write_the_same_tracking_rows_and_tables(
    postgres_url: str, other_postgres_url: str, tmp_path: Path
) -> None:
    folder = copy_fixture_project(tmp_path / "app")
    done = knex(folder.parent, postgres_url, "migrate:latest")
    assert done.returncode == 0, done.stdout + done.stderr
    run(folder, other_postgres_url)
    rows = "SELECT name, batch FROM knex_migrations ORDER BY id"
    assert query(other_postgres_url, rows) == query(postgres_url, rows)
    assert query(other_postgres_url, rows) == [(name, 1) for name in FIXTURE_MIGRATIONS]
    lock = "SELECT index, is_locked FROM knex_migrations_lock"
    assert query(other_postgres_url, lock) == query(postgres_url, lock) == [(1, 0)]
    for table in ("knex_migrations", "knex_migrations_lock"):
        assert column_shape(other_postgres_url, table) == column_shape(postgres_url, table)


def test_half_applied_by_knex_and_the_rest_by_stagecraft(postgres_url: str, tmp_path: Path) -> None:
    folder = copy_fixture_project(tmp_path / "app")
    later = tmp_path / "later"
    later.mkdir()
    for name in FIXTURE_MIGRATIONS[2:]:
        (folder / name).rename(later / name)
    assert knex(folder.parent, postgres_url, "migrate:latest").returncode == 0
    for name in FIXTURE_MIGRATIONS[2:]:
        (later / name).rename(folder / name)
    assert [m.id for m in plan(folder, postgres_url).pending] == FIXTURE_MIGRATIONS[2:]
    assert run(folder, postgres_url) == FIXTURE_MIGRATIONS[2:]
    batches = query(postgres_url, "SELECT name, batch FROM knex_migrations ORDER BY id")
    assert batches == [(name, 1 if i < 2 else 2) for i, name in enumerate(FIXTURE_MIGRATIONS)]
    assert (
        "No Pending Migration files Found."
        in knex(folder.parent, postgres_url, "migrate:list").stdout
    )


def test_half_applied_by_stagecraft_and_the_rest_by_knex(postgres_url: str, tmp_path: Path) -> None:
    folder = copy_fixture_project(tmp_path / "app")
    later = tmp_path / "later"
    later.mkdir()
    for name in FIXTURE_MIGRATIONS[2:]:
        (folder / name).rename(later / name)
    assert run(folder, postgres_url) == FIXTURE_MIGRATIONS[:2]
    for name in FIXTURE_MIGRATIONS[2:]:
        (later / name).rename(folder / name)
    done = knex(folder.parent, postgres_url, "migrate:latest")
    assert "Batch 2 run: 2 migrations" in done.stdout, done.stdout + done.stderr
    assert (plan(folder, postgres_url).pending, plan(folder, postgres_url).problems) == ((), ())


def test_a_stuck_knex_lock_blocks_both_tools_until_knex_unlocks_it(
    postgres_url: str, tmp_path: Path
) -> None:
    folder = copy_fixture_project(tmp_path / "app")
    for name in FIXTURE_MIGRATIONS[1:]:
        (folder / name).unlink()
    assert knex(folder.parent, postgres_url, "migrate:latest").returncode == 0
    execute(postgres_url, "UPDATE knex_migrations_lock SET is_locked = 1")  # a crashed Knex
    (folder / "20240105000000_more.js").write_text(
        "exports.up = (knex) => knex.raw('CREATE TABLE more (id int)');\n"
        "exports.down = () => Promise.resolve();\n",
        encoding="utf-8",
    )

    [locked] = plan(folder, postgres_url).problems
    assert locked.kind == ProblemKind.LOCKED
    assert "knex migrate:unlock" in locked.message
    with pytest.raises(RunRefused, match="knex migrate:unlock"):
        run(folder, postgres_url, lock_timeout=0.3)
    by_knex = knex(folder.parent, postgres_url, "migrate:latest")
    assert by_knex.returncode != 0
    assert "Migration table is already locked" in by_knex.stdout + by_knex.stderr
    assert query(postgres_url, "SELECT count(*) FROM knex_migrations") == [(1,)]

    assert knex(folder.parent, postgres_url, "migrate:unlock").returncode == 0
    assert plan(folder, postgres_url).problems == ()
    assert run(folder, postgres_url) == ["20240105000000_more.js"]


def test_stagecraft_and_a_plain_knex_started_together_apply_each_migration_once(
    postgres_url: str, tmp_path: Path
) -> None:
    folder = copy_fixture_project(tmp_path / "app")
    # Knex's tables exist, as after the first deployment: on a fresh database two Knex runs
    # race to create them (and can leave two lock rows), which is Knex's own race.
    later = tmp_path / "later"
    later.mkdir()
    for name in FIXTURE_MIGRATIONS[1:]:
        (folder / name).rename(later / name)
    assert knex(folder.parent, postgres_url, "migrate:latest").returncode == 0
    for name in FIXTURE_MIGRATIONS[1:]:
        (later / name).rename(folder / name)
    plain = subprocess.Popen(
        ["node", str(KNEX_CLI), "migrate:latest"],
        cwd=folder.parent,
        env={**os.environ, "DATABASE_URL": postgres_url, "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        report = engine.run(RunOptions(path=folder, database_url=postgres_url))
    finally:
        output, _ = plain.communicate(timeout=120)
    # Whoever came second waited (Stagecraft) or stopped on Knex's lock (a plain Knex).
    names = query(postgres_url, "SELECT name FROM knex_migrations ORDER BY id")
    assert [name for (name,) in names] == FIXTURE_MIGRATIONS
    assert sorted([*(a.id for a in report.applied), *report.skipped]) == sorted(
        m.id for m in report.plan.pending
    )
    # A plain Knex that lost the race either stopped on the lock or, since it lists pending
    # files before it takes the lock (Knex's own race), re-ran one that Stagecraft had just
    # applied and failed on it: a table that "already exists" or a seed row's duplicate key.
    # Either way it recorded nothing twice (the rows above).
    lost_race = ("already locked", "already exists", "duplicate key value")
    assert plain.returncode == 0 or any(sign in output for sign in lost_race), output
