"""The drizzle engine and the real Drizzle tools on one PostgreSQL database, both ways round.

drizzle-orm's node-postgres migrator and `drizzle-kit migrate` run through node; every test
starts node once or twice and batches its runs into that call.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stagecraft.engines import (
    MigrationSourceError,
    Plan,
    ProblemKind,
    RunOptions,
    RunRefused,
)
from stagecraft.engines.drizzle import DrizzleEngine
from tests.conftest import FolderWriter
from tests.engines.drizzle_folders import BASE_WHEN, GENERATED, write_drizzle_folder
from tests.engines.drizzle_tools import (
    NODE_TIMEOUT,
    ROOT,
    DrizzleJob,
    DrizzleOutcome,
    drizzle_kit_migrate,
    drizzle_orm_migrate,
)

engine = DrizzleEngine()
GENERATED_TAGS = ["0000_init", "0001_posts", "0002_touch_trigger"]
GENERATE_SCRIPT = ROOT / "tests" / "engines" / "node" / "generate_drizzle_fixture.sh"


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as connection:
        return connection.execute(sql.encode()).fetchall()


def tracking_rows(url: str, table: str = "drizzle.__drizzle_migrations") -> list[tuple[Any, ...]]:
    return query(url, f"SELECT hash, created_at FROM {table} ORDER BY created_at")


def column_shape(url: str, schema: str, table: str) -> list[tuple[Any, ...]]:
    return query(
        url,
        "SELECT column_name, data_type, is_nullable, column_default FROM "
        f"information_schema.columns WHERE table_schema = '{schema}' AND table_name = '{table}' "
        "ORDER BY ordinal_position",
    )


def plan(folder: Path, url: str, **options: str) -> Plan:
    return engine.plan(RunOptions(path=folder, database_url=url, options=options))


def run(folder: Path, url: str, **options: str) -> list[str]:
    report = engine.run(RunOptions(path=folder, database_url=url, options=options))
    return [applied.id for applied in report.applied]


def copy_generated(tmp_path: Path, keep: int | None = None) -> Path:
    """The generated fixture, optionally cut to its first `keep` journal entries."""
    folder = tmp_path / f"generated-{keep}"
    shutil.copytree(GENERATED, folder)
    if keep is not None:
        journal = folder / "meta" / "_journal.json"
        document = json.loads(journal.read_text(encoding="utf-8"))
        document["entries"] = document["entries"][:keep]
        journal.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return folder


OK = DrizzleOutcome(ok=True)


def test_after_drizzle_orm_migrates_stagecraft_sees_nothing_pending(postgres_url: str) -> None:
    assert drizzle_orm_migrate(DrizzleJob(postgres_url, GENERATED)) == [OK]
    seen = plan(GENERATED, postgres_url)
    assert seen.pending == ()
    assert seen.problems == ()
    assert [applied.id for applied in seen.applied] == GENERATED_TAGS
    assert run(GENERATED, postgres_url) == []


def test_after_drizzle_kit_migrates_into_a_custom_table_stagecraft_sees_nothing_pending(
    postgres_url: str, tmp_path: Path
) -> None:
    job = DrizzleJob(postgres_url, GENERATED, table="schema_history", schema="ops")
    done = drizzle_kit_migrate(job, tmp_path / "kit")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(tracking_rows(postgres_url, "ops.schema_history")) == 3
    custom = {"migrations_table": "schema_history", "migrations_schema": "ops"}
    seen = plan(GENERATED, postgres_url, **custom)
    assert (seen.pending, seen.problems) == ((), ())
    # Without the options Stagecraft looks at Drizzle's default table, which is empty.
    assert len(plan(GENERATED, postgres_url).pending) == 3


def test_after_stagecraft_migrates_drizzle_applies_nothing_and_the_rows_are_drizzles(
    postgres_url: str, other_postgres_url: str
) -> None:
    assert run(GENERATED, postgres_url) == GENERATED_TAGS
    # Drizzle would fail on `CREATE TABLE "users"` if it ran anything again; it must succeed
    # without adding a row. The other database gets the same folder from Drizzle alone.
    outcomes = drizzle_orm_migrate(
        DrizzleJob(postgres_url, GENERATED), DrizzleJob(other_postgres_url, GENERATED)
    )
    assert outcomes == [OK, OK]
    assert tracking_rows(postgres_url) == tracking_rows(other_postgres_url)
    assert len(tracking_rows(postgres_url)) == 3
    assert column_shape(postgres_url, "drizzle", "__drizzle_migrations") == column_shape(
        other_postgres_url, "drizzle", "__drizzle_migrations"
    )
    assert query(postgres_url, "SELECT id FROM drizzle.__drizzle_migrations ORDER BY id") == [
        (1,),
        (2,),
        (3,),
    ]


def test_after_stagecraft_migrates_drizzle_kit_applies_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    assert run(GENERATED, postgres_url) == GENERATED_TAGS
    done = drizzle_kit_migrate(DrizzleJob(postgres_url, GENERATED), tmp_path / "kit")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(tracking_rows(postgres_url)) == 3


def test_half_applied_by_drizzle_is_finished_by_stagecraft(
    postgres_url: str, tmp_path: Path
) -> None:
    assert drizzle_orm_migrate(DrizzleJob(postgres_url, copy_generated(tmp_path, 1))) == [OK]
    assert [m.id for m in plan(GENERATED, postgres_url).pending] == GENERATED_TAGS[1:]
    assert run(GENERATED, postgres_url) == GENERATED_TAGS[1:]
    seen = plan(GENERATED, postgres_url)
    assert (seen.pending, seen.problems) == ((), ())


def test_half_applied_by_stagecraft_is_finished_by_drizzle(
    postgres_url: str, other_postgres_url: str, tmp_path: Path
) -> None:
    assert run(copy_generated(tmp_path, 2), postgres_url) == GENERATED_TAGS[:2]
    outcomes = drizzle_orm_migrate(
        DrizzleJob(postgres_url, GENERATED), DrizzleJob(other_postgres_url, GENERATED)
    )
    assert outcomes == [OK, OK]
    assert tracking_rows(postgres_url) == tracking_rows(other_postgres_url)
    assert query(postgres_url, "SELECT count(*) FROM pg_trigger WHERE tgname = 'posts_touch'") == [
        (1,)
    ]


def test_crlf_files_hash_and_run_the_same_in_both_tools(
    postgres_url: str, other_postgres_url: str, write_folder: FolderWriter
) -> None:
    body = (
        "CREATE TABLE crlf_a (id int);\r\n--> statement-breakpoint\r\n"
        "CREATE TABLE crlf_b (id int);\r\n"
    )
    folder = write_drizzle_folder(write_folder, [("0000_crlf", body.encode())])
    assert run(folder, other_postgres_url) == ["0000_crlf"]
    outcomes = drizzle_orm_migrate(
        DrizzleJob(postgres_url, folder), DrizzleJob(other_postgres_url, folder)
    )
    assert outcomes == [OK, OK]  # on the other database: nothing ran again
    seen = plan(folder, postgres_url)
    assert (seen.pending, seen.problems) == ((), ())
    assert tracking_rows(postgres_url) == tracking_rows(other_postgres_url)
    assert tracking_rows(postgres_url)[0][0] == hashlib.sha256(body.encode()).hexdigest()


def test_a_file_that_is_not_utf8_keeps_drizzles_hash_but_stagecraft_refuses_to_run_it(
    postgres_url: str, other_postgres_url: str, write_folder: FolderWriter
) -> None:
    # Drizzle reads the Latin-1 byte as U+FFFD and runs the file; its hash is of that text.
    body = b"-- caf\xe9 au lait\nCREATE TABLE latin (id int);\n"
    folder = write_drizzle_folder(write_folder, [("0000_latin", body)])
    assert drizzle_orm_migrate(DrizzleJob(postgres_url, folder)) == [OK]
    [(recorded_hash, _)] = tracking_rows(postgres_url)
    assert recorded_hash != hashlib.sha256(body).hexdigest()
    seen = plan(folder, postgres_url)
    assert (seen.pending, seen.problems) == ((), ())

    with pytest.raises(MigrationSourceError, match=r"0000_latin\.sql:1: not valid UTF-8"):
        run(folder, other_postgres_url)
    assert query(other_postgres_url, "SELECT to_regclass('latin')") == [(None,)]


def test_a_breakpoint_inside_a_dollar_quoted_body_fails_in_both_tools_at_its_position(
    postgres_url: str, other_postgres_url: str, write_folder: FolderWriter
) -> None:
    lines = [
        "CREATE TABLE audit (id int);",
        "--> statement-breakpoint",
        "CREATE FUNCTION audit_touch() RETURNS trigger AS $$",
        "BEGIN",
        "  RETURN NEW;",
        "--> statement-breakpoint",
        "END;",
        "$$ LANGUAGE plpgsql;",
    ]
    folder = write_drizzle_folder(write_folder, [("0000_audit", "\n".join(lines) + "\n")])
    [drizzle_outcome] = drizzle_orm_migrate(DrizzleJob(postgres_url, folder))
    assert not drizzle_outcome.ok
    assert drizzle_outcome.code == "42601", drizzle_outcome

    # Stagecraft refuses the same cut before running anything, naming where the breakpoint is
    # and where the statement it cuts begins.
    with pytest.raises(MigrationSourceError) as refused:
        run(folder, other_postgres_url)
    assert "0000_audit.sql:6:1: this `--> statement-breakpoint` cuts" in str(refused.value)
    assert "starts at line 3, column 1" in str(refused.value)
    for url in (postgres_url, other_postgres_url):  # all or nothing in both
        assert query(url, "SELECT to_regclass('audit')") == [(None,)]
    assert plan(folder, other_postgres_url).applied == ()


def test_an_entry_older_than_the_last_applied_is_skipped_by_drizzle_and_reported_by_stagecraft(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    newer = ("0001_newer", "CREATE TABLE newer (id int);")
    older = ("0002_merged_late", "CREATE TABLE merged_late (id int);")
    before = write_drizzle_folder(write_folder, [newer], whens=[BASE_WHEN + 10])
    after = write_drizzle_folder(write_folder, [newer, older], whens=[BASE_WHEN + 10, BASE_WHEN])
    outcomes = drizzle_orm_migrate(
        DrizzleJob(postgres_url, before), DrizzleJob(postgres_url, after)
    )
    assert outcomes == [OK, OK]
    assert query(postgres_url, "SELECT to_regclass('merged_late')") == [(None,)]
    assert len(tracking_rows(postgres_url)) == 1

    seen = plan(after, postgres_url)
    assert seen.pending == ()
    [problem] = seen.problems
    assert problem.kind == ProblemKind.NEVER_APPLIED
    assert problem.migration == "0002_merged_late"
    assert "0001_newer" in problem.message
    with pytest.raises(RunRefused, match="0002_merged_late"):
        run(after, postgres_url)


def test_a_byte_order_mark_fails_under_drizzle_but_runs_here_with_drizzles_hash(
    postgres_url: str, other_postgres_url: str, write_folder: FolderWriter
) -> None:
    data = b"\xef\xbb\xbfCREATE TABLE bom (id int);\n"
    folder = write_drizzle_folder(write_folder, [("0000_bom", data)])
    assert run(folder, other_postgres_url) == ["0000_bom"]
    outcomes = drizzle_orm_migrate(
        DrizzleJob(postgres_url, folder), DrizzleJob(other_postgres_url, folder)
    )
    # PostgreSQL rejects the mark Drizzle sends; after Stagecraft, Drizzle has nothing to run.
    assert outcomes[0].code == "42601", outcomes
    assert outcomes[1] == OK
    assert tracking_rows(other_postgres_url) == [(hashlib.sha256(data).hexdigest(), BASE_WHEN)]


def test_the_committed_fixture_is_what_drizzle_kit_generates_today(tmp_path: Path) -> None:
    out = tmp_path / "fresh"
    done = subprocess.run(
        ["sh", str(GENERATE_SCRIPT), os.path.relpath(out, ROOT)],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.glob("*.sql")) == [f"{tag}.sql" for tag in GENERATED_TAGS]
    for tag in GENERATED_TAGS:
        assert (out / f"{tag}.sql").read_bytes() == (GENERATED / f"{tag}.sql").read_bytes(), tag
    fresh = json.loads((out / "meta" / "_journal.json").read_text(encoding="utf-8"))
    assert [entry["tag"] for entry in fresh["entries"]] == GENERATED_TAGS
    assert fresh["dialect"] == "postgresql"
