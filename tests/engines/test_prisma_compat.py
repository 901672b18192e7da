"""The prisma engine and the real Prisma CLI 6.19.3 share one `_prisma_migrations`, both ways.

Each test runs Prisma a few times on the real PostgreSQL of the fixtures: Prisma's CLI starts
slowly, so every run checks as much as it can.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from stagecraft.engines import (
    MigrationSourceError,
    PlanOptions,
    ProblemKind,
    Resolution,
    RunOptions,
    RunRefused,
    get,
)
from stagecraft.engines.prisma import (
    PRISMA_ADVISORY_LOCK_KEY,
    PrismaEngine,
    PrismaMigrationFailed,
)
from tests.engines.prisma_tools import (
    FIXTURE,
    HELPERS,
    NODE_TIMEOUT,
    add_file,
    execute,
    migration_rows,
    new_project,
    query,
)

FIXTURE_NAMES = sorted(path.name for path in FIXTURE.iterdir() if path.is_dir())
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
NOTHING_PENDING = "No pending migrations to apply."
UP_TO_DATE = "Database schema is up to date!"
LOCK_POLLS, LOCK_POLL_SECONDS = 600, 0.05  # at most 30 s for Prisma to reach its lock


def engine() -> PrismaEngine:
    found = get("prisma")
    assert isinstance(found, PrismaEngine)
    return found


def plan_of(folder: Path, url: str) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(pending, applied, problems as (kind, migration)) of Stagecraft's plan."""
    plan = engine().plan(PlanOptions(path=folder, database_url=url))
    return (
        [m.id for m in plan.pending],
        [a.id for a in plan.applied],
        [(p.kind, p.migration) for p in plan.problems],
    )


def run(folder: Path, url: str) -> list[str]:
    report = engine().run(RunOptions(path=folder, database_url=url))
    return [applied.id for applied in report.applied]


def table_columns(url: str) -> list[tuple[str, ...]]:
    rows = query(
        url,
        "SELECT table_name, column_name, data_type, column_default FROM "
        "information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2",
    )
    return [tuple(str(value) for value in row) for row in rows]


def comparable(row: dict[str, object]) -> dict[str, object]:
    """A row without what differs between any two runs: its id and its times."""
    return {
        "migration_name": row["migration_name"],
        "checksum": row["checksum"],
        "logs": row["logs"],
        "finished": row["finished_at"] is not None,
        "rolled_back": row["rolled_back_at"] is not None,
        "applied_steps_count": row["applied_steps_count"],
    }


def test_the_committed_fixture_is_what_prisma_migrate_diff_generates(
    postgres_url: str, tmp_path: Path
) -> None:
    generated = tmp_path / "generated"
    done = subprocess.run(
        ["sh", str(HELPERS / "generate_prisma_fixture.sh"), str(generated)],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": postgres_url},
        timeout=NODE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    files = sorted(path.relative_to(FIXTURE) for path in FIXTURE.rglob("*") if path.is_file())
    assert files == sorted(
        path.relative_to(generated) for path in generated.rglob("*") if path.is_file()
    )
    for file in files:
        assert (generated / file).read_bytes() == (FIXTURE / file).read_bytes(), file


def wait_until_prisma_waits_for_the_lock(url: str, deploy: subprocess.Popen[str]) -> None:
    waiting = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        f"AND classid = 0 AND objid = {PRISMA_ADVISORY_LOCK_KEY}"
    )
    for _ in range(LOCK_POLLS):
        assert deploy.poll() is None, deploy.communicate()
        if query(url, waiting) == [(1,)]:
            return
        time.sleep(LOCK_POLL_SECONDS)
    raise AssertionError("prisma migrate deploy never waited for the advisory lock")


def test_after_prisma_deploys_stagecraft_has_nothing_pending(
    postgres_url: str, tmp_path: Path
) -> None:
    project = new_project(tmp_path / "app", postgres_url)
    # Holding the key Stagecraft locks makes Prisma wait: the two tools exclude each other.
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (PRISMA_ADVISORY_LOCK_KEY,))
        deploy = project.start_deploy()
        wait_until_prisma_waits_for_the_lock(postgres_url, deploy)
        assert query(postgres_url, "SELECT count(*) FROM pg_tables WHERE tablename = 'User'") == [
            (0,)
        ]
    stdout, stderr = deploy.communicate(timeout=NODE_TIMEOUT)
    assert deploy.returncode == 0, stdout + stderr
    assert plan_of(project.migrations, postgres_url) == ([], FIXTURE_NAMES, [])
    assert run(project.migrations, postgres_url) == []


def test_after_stagecraft_runs_prisma_has_nothing_to_apply_and_rows_match_prisma_rows(
    postgres_url: str, other_postgres_url: str, tmp_path: Path
) -> None:
    ours = new_project(tmp_path / "ours", postgres_url)
    theirs = new_project(tmp_path / "theirs", other_postgres_url)
    assert run(ours.migrations, postgres_url) == FIXTURE_NAMES
    deployed_by_prisma = theirs.deploy()
    assert deployed_by_prisma.returncode == 0, deployed_by_prisma.stderr

    redeploy, status = ours.deploy(), ours.status()
    assert redeploy.returncode == 0, redeploy.stderr
    assert NOTHING_PENDING in redeploy.stdout
    assert status.returncode == 0, status.stdout + status.stderr
    assert UP_TO_DATE in status.stdout

    our_rows, prisma_rows = migration_rows(postgres_url), migration_rows(other_postgres_url)
    assert [comparable(row) for row in our_rows] == [comparable(row) for row in prisma_rows]
    for row in our_rows:
        assert UUID4.match(str(row["id"]))
        assert row["started_at"] <= row["finished_at"]
    assert table_columns(postgres_url) == table_columns(other_postgres_url)
    shape = (
        "SELECT column_name, data_type, is_nullable, column_default, character_maximum_length "
        "FROM information_schema.columns WHERE table_name = '_prisma_migrations' ORDER BY 1"
    )
    assert query(postgres_url, shape) == query(other_postgres_url, shape)


def test_prisma_and_stagecraft_take_turns_on_one_database(
    postgres_url: str, tmp_path: Path
) -> None:
    project = new_project(tmp_path / "app", postgres_url, {})
    for index, name in enumerate(FIXTURE_NAMES):
        for file in (FIXTURE / name).iterdir():
            add_file(project.migrations / name / file.name, file.read_bytes())
        if index % 2 == 0:
            deployed = project.deploy()
            assert deployed.returncode == 0, deployed.stderr
            assert name in deployed.stdout
        else:
            assert plan_of(project.migrations, postgres_url)[0] == [name]
            assert run(project.migrations, postgres_url) == [name]
    status = project.status()
    assert UP_TO_DATE in status.stdout, status.stdout + status.stderr
    assert [row["migration_name"] for row in migration_rows(postgres_url)] == FIXTURE_NAMES


def test_a_failed_migration_blocks_both_tools_until_either_resolves_it(
    postgres_url: str, tmp_path: Path
) -> None:
    bad_sql = 'CREATE TABLE "half" (id int);\nINSERT INTO "missing" VALUES (1);\n'
    good_sql = 'CREATE TABLE "half" (id int);\n'
    project = new_project(
        tmp_path / "app",
        postgres_url,
        {
            "20240101000000_init/migration.sql": 'CREATE TABLE "one" (id int);\n',
            "20240102000000_bad/migration.sql": bad_sql,
        },
    )
    folder = project.migrations
    failed_by_prisma = project.deploy()
    assert failed_by_prisma.returncode != 0

    # Prisma's failed row blocks Stagecraft; Stagecraft's resolve unblocks Prisma.
    pending, _, problems = plan_of(folder, postgres_url)
    assert pending == ["20240102000000_bad"]
    assert problems == [(ProblemKind.FAILED, "20240102000000_bad")]
    with pytest.raises(RunRefused, match="20240102000000_bad"):
        run(folder, postgres_url)
    engine().resolve(
        PlanOptions(path=folder, database_url=postgres_url),
        "20240102000000_bad",
        Resolution.ROLLED_BACK,
    )
    add_file(folder / "20240102000000_bad" / "migration.sql", good_sql)
    deployed = project.deploy()
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "20240102000000_bad" in deployed.stdout

    # Stagecraft's failed row blocks Prisma (P3009); Prisma's resolve unblocks Stagecraft.
    worse = "20240103000000_worse"
    add_file(folder / worse / "migration.sql", bad_sql.replace("half", "half2"))
    with pytest.raises(PrismaMigrationFailed):
        run(folder, postgres_url)
    blocked = project.deploy()
    assert blocked.returncode != 0
    assert "P3009" in blocked.stdout + blocked.stderr
    assert worse in blocked.stdout + blocked.stderr
    # Completed by hand, then recorded as applied by Prisma. (Prisma 6.19.3's `--rolled-back`
    # asks for its native engine even with an adapter configured, so it cannot run offline.)
    add_file(folder / worse / "migration.sql", good_sql.replace("half", "half2"))
    execute(postgres_url, 'CREATE TABLE "half2" (id int)')
    resolved = project.prisma("migrate", "resolve", "--applied", worse)
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    assert plan_of(folder, postgres_url)[0::2] == ([], [])
    failed_row, resolved_row = [
        row for row in migration_rows(postgres_url) if row["migration_name"] == worse
    ]
    assert failed_row["rolled_back_at"] is not None
    assert "missing" in str(failed_row["logs"])
    assert comparable(resolved_row) == {
        "migration_name": worse,
        "checksum": engine()
        .plan(PlanOptions(path=folder, database_url=postgres_url))
        .applied[-1]
        .checksum,
        "logs": "",
        "finished": True,
        "rolled_back": False,
        "applied_steps_count": 0,
    }
    assert resolved_row["started_at"] == resolved_row["finished_at"]
    add_file(folder / "20240104000000_after" / "migration.sql", 'CREATE TABLE "after" (id int);\n')
    assert run(folder, postgres_url) == ["20240104000000_after"]
    status = project.status()
    assert UP_TO_DATE in status.stdout, status.stdout + status.stderr


def test_awkward_folders_are_read_as_prisma_reads_them(
    postgres_url: str, other_postgres_url: str, tmp_path: Path
) -> None:
    crlf = b'CREATE TABLE "crlf" (id int);\r\n-- a comment\r\n'
    not_utf8 = b"CREATE TABLE \"latin1\" (name text DEFAULT 'caf\xe9');\n"
    # localeCompare puts `_a...` before `_B...`; byte order puts B (0x42) first.
    first, second = "20240103000000_a_create", "20240103000000_B_alter"
    project = new_project(
        tmp_path / "app",
        postgres_url,
        {
            "20240101000000_crlf/migration.sql": crlf,
            "20240102000000_latin1/migration.sql": not_utf8,
            f"{first}/migration.sql": 'CREATE TABLE "ordered" (id int);\n',
            f"{second}/migration.sql": 'ALTER TABLE "ordered" ADD COLUMN "b" int;\n',
            "20240104000000_do_block/migration.sql": (
                "DO $$\nBEGIN\n  PERFORM 1;\n  PERFORM 2;\nEND\n$$;\n"
            ),
        },
    )
    folder = project.migrations
    deployed = project.deploy()
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    # Node.js decoded the Latin-1 byte as U+FFFD, and Prisma ran that.
    assert query(
        postgres_url,
        "SELECT column_default FROM information_schema.columns WHERE table_name = 'latin1'",
    ) == [("'caf\ufffd'::text",)]
    rows = {row["migration_name"]: row for row in migration_rows(postgres_url)}
    assert list(rows)[2:4] == [first, second]

    # Git on another machine turns CRLF into LF: Prisma's tolerance, and so Stagecraft's.
    add_file(folder / "20240101000000_crlf" / "migration.sql", crlf.replace(b"\r\n", b"\n"))
    assert plan_of(folder, postgres_url) == ([], list(rows), [])

    # On a fresh database Stagecraft refuses what Prisma would run differently or wrongly.
    pending, _, problems = plan_of(folder, other_postgres_url)
    assert pending[2:4] == [first, second]
    assert (ProblemKind.ORDER_AMBIGUOUS, first) in problems
    with pytest.raises(RunRefused, match="localeCompare"):
        run(folder, other_postgres_url)
    (folder / "20240103000000_B_alter").rename(folder / "20240103000001_b_alter")
    with pytest.raises(
        MigrationSourceError, match=r"20240102000000_latin1/migration.sql:1: not valid UTF-8"
    ):
        run(folder, other_postgres_url)
    assert query(
        other_postgres_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    ) == [(0,)]
