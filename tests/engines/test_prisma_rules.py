"""Prisma's deploy rules, checksums and folder order, in memory (and Node.js's own order)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from stagecraft.engines import Migration, ProblemKind
from stagecraft.engines.collation import collation_key, exactly_collated
from stagecraft.engines.prisma_folder import checksum_matches, prisma_checksum
from stagecraft.engines.prisma_rules import (
    NEEDS_BASELINE,
    DatabaseState,
    MigrationRow,
    plan_deploy,
)

SCRIPT = b"CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n"
CHECKSUM = hashlib.sha256(SCRIPT).hexdigest()


def migration(name: str, checksum: str = CHECKSUM) -> Migration:
    return Migration(id=name, path=Path(name) / "migration.sql", checksum=checksum)


def row(
    name: str, *, finished: bool = True, rolled_back: bool = False, **extra: str
) -> MigrationRow:
    return MigrationRow(
        id=f"id-{name}-{finished}-{rolled_back}",
        checksum=extra.get("checksum", CHECKSUM),
        migration_name=name,
        started_at="2026-01-01T00:00:00.000+00:00",
        finished_at="2026-01-01T00:00:01.000+00:00" if finished else None,
        rolled_back_at="2026-01-01T00:00:02.000+00:00" if rolled_back else None,
        logs=extra.get("logs"),
        applied_steps_count=1 if finished else 0,
    )


def state(*rows: MigrationRow, other_tables: frozenset[str] = frozenset()) -> DatabaseState:
    return DatabaseState(rows, table_exists=bool(rows), other_tables=other_tables)


def never_matches(found: Migration, recorded: str) -> bool:
    return False


def kinds(plan_problems: object) -> list[tuple[str, str]]:
    assert isinstance(plan_problems, tuple)
    return [(problem.kind, problem.migration) for problem in plan_problems]


def test_pending_are_the_folders_without_a_finished_row_in_folder_order() -> None:
    found = [migration("1_a"), migration("2_b"), migration("3_c")]
    plan = plan_deploy("prisma", found, state(row("2_b")), never_matches)
    assert [m.id for m in plan.pending] == ["1_a", "3_c"]  # no ordering check, as in Prisma
    assert plan.problems == ()


def test_rolled_back_rows_are_ignored_and_the_migration_is_pending_again() -> None:
    found = [migration("1_a")]
    plan = plan_deploy(
        "prisma", found, state(row("1_a", finished=False, rolled_back=True)), never_matches
    )
    assert ([m.id for m in plan.pending], plan.applied, plan.problems) == (["1_a"], (), ())


def test_a_failed_row_blocks_and_leaves_its_migration_pending() -> None:
    found = [migration("1_a"), migration("2_b")]
    failed = row("2_b", finished=False, logs='relation "x" does not exist')
    plan = plan_deploy("prisma", found, state(row("1_a"), failed), never_matches)
    assert [m.id for m in plan.pending] == ["2_b"]
    assert kinds(plan.problems) == [(ProblemKind.FAILED, "2_b")]
    assert 'relation "x" does not exist' in plan.problems[0].message
    assert [(a.id, a.dirty) for a in plan.applied] == [("1_a", False), ("2_b", True)]


def test_edited_and_vanished_applied_migrations_are_reported() -> None:
    found = [migration("1_a", checksum="0" * 64)]
    plan = plan_deploy("prisma", found, state(row("1_a"), row("2_gone")), never_matches)
    assert sorted(kinds(plan.problems)) == [
        (ProblemKind.CHECKSUM_MISMATCH, "1_a"),
        (ProblemKind.MISSING_FILE, "2_gone"),
    ]


def test_an_edit_the_checksum_test_accepts_is_no_problem() -> None:
    found = [migration("1_a", checksum="0" * 64)]
    plan = plan_deploy("prisma", found, state(row("1_a")), lambda found, recorded: True)
    assert plan.problems == ()


def test_a_database_with_other_tables_and_no_prisma_table_needs_a_baseline() -> None:
    found = [migration("1_a")]
    legacy = DatabaseState((), table_exists=False, other_tables=frozenset({"users"}))
    assert kinds(plan_deploy("prisma", found, legacy, never_matches).problems) == [
        (NEEDS_BASELINE, "")
    ]
    empty = DatabaseState((), table_exists=False, other_tables=frozenset())
    assert plan_deploy("prisma", found, empty, never_matches).problems == ()


def test_pending_folders_whose_order_depends_on_the_collation_are_reported() -> None:
    names = sorted(["20240101_a_first", "20240101_B_second", "20240102_c"], key=collation_key)
    assert names == ["20240101_a_first", "20240101_B_second", "20240102_c"]
    found = [migration(name) for name in names]
    plan = plan_deploy("prisma", found, state(), never_matches)
    assert kinds(plan.problems) == [
        (ProblemKind.ORDER_AMBIGUOUS, "20240101_a_first"),
        (ProblemKind.ORDER_AMBIGUOUS, "20240101_B_second"),
    ]
    # Once they are applied, their order no longer matters.
    applied = state(row("20240101_a_first"), row("20240101_B_second"))
    assert plan_deploy("prisma", found, applied, never_matches).problems == ()


def test_a_pending_name_outside_ascii_is_reported_among_other_pending_ones() -> None:
    found = [migration("20240101_café"), migration("20240102_next")]
    assert kinds(plan_deploy("prisma", found, state(), never_matches).problems) == [
        (ProblemKind.ORDER_AMBIGUOUS, "20240101_café")
    ]
    assert plan_deploy("prisma", found[:1], state(), never_matches).problems == ()


@pytest.mark.parametrize(
    "recorded",
    [
        SCRIPT,
        SCRIPT.replace(b"\n", b"\r\n"),  # recorded on Windows, checked out on Linux
    ],
)
def test_checksums_tolerate_line_endings_both_ways(recorded: bytes) -> None:
    digest = hashlib.sha256(recorded).hexdigest()
    assert checksum_matches(SCRIPT, digest)
    assert checksum_matches(SCRIPT.replace(b"\n", b"\r\n"), digest)
    assert not checksum_matches(SCRIPT + b"-- more\n", digest)


def test_legacy_checksums_print_bytes_without_zero_padding() -> None:
    digest = hashlib.sha256(SCRIPT).digest()
    legacy = "".join(f"{byte:x}" for byte in digest)
    assert len(legacy) < 64
    assert checksum_matches(SCRIPT, legacy)


def test_the_checksum_of_a_file_that_is_not_utf8_is_that_of_nodes_decoded_text() -> None:
    data = b"SELECT 'caf\xe9';\n"
    assert prisma_checksum(data) == hashlib.sha256("SELECT 'caf\ufffd';\n".encode()).hexdigest()
    assert prisma_checksum(SCRIPT) == CHECKSUM


def test_collation_key_sorts_as_node_localecompare() -> None:
    printable = [chr(code) for code in range(32, 127)]
    names = [
        *(f"x{char}y" for char in printable),
        "20240101000000_init",
        "20240101000000_Init",
        "20240101000000_init-2",
        "20240101000000_init_2",
        "20240101000000_initial",
        "20240101000000_INIT",
        "2024_a",
        "2024-a",
        "2024a",
        "aB",
        "Ab",
        "ab",
        "AB",
    ]
    script = (
        "const names = JSON.parse(process.argv[1]);"
        "process.stdout.write(JSON.stringify(names.sort((a, b) => a.localeCompare(b))));"
    )
    done = subprocess.run(
        ["node", "-e", script, json.dumps(names)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert sorted(names, key=collation_key) == json.loads(done.stdout)
    assert all(exactly_collated(name) for name in names)
    assert not exactly_collated("café")
