"""The knex engine's plan, read natively from Knex's tables on both dialects (no Node.js)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagecraft.engines import InvalidOptions, MigrationSourceError, ProblemKind, RunOptions
from stagecraft.engines.database import connect
from stagecraft.engines.knex import KnexEngine
from tests.conftest import FolderWriter

engine = KnexEngine()
MIGRATION = "exports.up = () => {}; exports.down = () => {};\n"


def knex_tables(url: str, names: list[str], *, is_locked: int) -> None:
    """Knex's two tables as Knex creates them, with rows for `names` in one batch."""
    database = connect(url)
    try:
        with database.transaction():
            database.execute(
                "CREATE TABLE knex_migrations (id integer primary key, name varchar(255), "
                f"batch integer, migration_time {database.types.timestamp})"
            )
            database.execute(
                'CREATE TABLE knex_migrations_lock ("index" integer primary key, is_locked integer)'
            )
            database.execute("INSERT INTO knex_migrations_lock VALUES (1, %s)", (is_locked,))
            for number, name in enumerate(names, start=1):
                database.execute(
                    f"INSERT INTO knex_migrations VALUES (%s, %s, 1, {database.now_sql})",
                    (number, name),
                )
    finally:
        database.close()


def test_plan_on_an_empty_database_lists_every_file_and_creates_nothing(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"002_b.js": MIGRATION, "001_a.js": MIGRATION, "notes.txt": ""})
    seen = engine.plan(RunOptions(path=folder, database_url=database_url))
    assert [m.id for m in seen.pending] == ["001_a.js", "002_b.js"]
    assert (seen.applied, seen.problems) == ((), ())


def test_plan_reads_applied_rows_missing_files_and_a_held_lock(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"001_a.js": MIGRATION, "003_c.js": MIGRATION})
    knex_tables(database_url, ["001_a.js", "002_gone.js"], is_locked=1)
    seen = engine.plan(RunOptions(path=folder, database_url=database_url))
    assert [m.id for m in seen.pending] == ["003_c.js"]
    assert [a.id for a in seen.applied] == ["001_a.js", "002_gone.js"]
    assert {(p.kind, p.migration) for p in seen.problems} == {
        (ProblemKind.MISSING_FILE, "002_gone.js"),
        (ProblemKind.LOCKED, "knex_migrations_lock"),
    }


def test_a_new_file_sorting_before_the_last_applied_one_is_out_of_order(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"001_a.js": MIGRATION, "002_b.js": MIGRATION})
    knex_tables(database_url, ["002_b.js"], is_locked=0)
    [problem] = engine.plan(RunOptions(path=folder, database_url=database_url)).problems
    assert (problem.kind, problem.migration) == (ProblemKind.OUT_OF_ORDER, "001_a.js")


def test_extra_directories_sort_together_with_the_migrations_folder(
    postgres_url: str, tmp_path: Path
) -> None:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "seeds").mkdir()
    (tmp_path / "migrations" / "002_b.js").write_text(MIGRATION)
    (tmp_path / "seeds" / "001_a.js").write_text(MIGRATION)
    (tmp_path / "seeds" / "003_c.js").write_text(MIGRATION)
    seen = engine.plan(
        RunOptions(
            path=tmp_path / "migrations",
            database_url=postgres_url,
            options={"project_root": str(tmp_path), "extra_directories": "seeds"},
        )
    )
    assert [m.id for m in seen.pending] == ["001_a.js", "002_b.js", "003_c.js"]


def test_run_on_sqlite_is_refused_with_the_reason(
    sqlite_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"001_a.js": MIGRATION})
    with pytest.raises(InvalidOptions, match="PostgreSQL only"):
        engine.run(RunOptions(path=folder, database_url=sqlite_url))


@pytest.mark.parametrize("extensions", [".js,.mjs", [".js", ".mjs"]])
def test_load_extensions_take_a_list_or_comma_separated_text(
    extensions: str | list[str], postgres_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"001_a.mjs": MIGRATION, "002_b.js": MIGRATION, "003_c.ts": MIGRATION})
    seen = engine.plan(
        RunOptions(path=folder, database_url=postgres_url, options={"load_extensions": extensions})
    )
    assert [m.id for m in seen.pending] == ["001_a.mjs", "002_b.js"]


def test_a_folder_named_like_a_migration_is_refused_naming_it(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"001_a.js": MIGRATION})
    (folder / "002_folder.js").mkdir()
    with pytest.raises(MigrationSourceError, match=r"002_folder\.js is a folder named like"):
        engine.plan(RunOptions(path=folder, database_url=database_url))
