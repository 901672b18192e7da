"""Drizzle's pending rule, and the problems it hides, as a pure function of journal and rows.

Drizzle reads one row, the one its own `ORDER BY created_at DESC LIMIT 1` returns, and runs
every journal entry whose `when` is greater than that row's `created_at`. Stagecraft computes
exactly that set, then looks at what Drizzle never looks at: entries older than the last row
that have no row (Drizzle skips them forever), rows whose file changed since they were applied,
and rows whose journal entry is gone. It does no I/O, so the rules are tested in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from .base import AppliedMigration, Plan, Problem, ProblemKind
from .drizzle_folder import DrizzleMigration


@dataclass(frozen=True)
class TrackingRow:
    """A row of Drizzle's table: `hash` of the file, `created_at` = the entry's `when`."""

    id: int | None  # NULL on SQLite, where `id SERIAL PRIMARY KEY` is no rowid alias
    hash: str
    created_at: object  # whatever the database holds; compared as JavaScript's Number() would


def js_number(value: object) -> float:
    """JavaScript's `Number(value)` for what a driver returns, so comparisons match Drizzle's."""
    if value is None:
        return 0.0
    if isinstance(value, int | float | Decimal):
        return float(value)
    try:
        return float(str(value).strip() or 0)
    except ValueError:
        return math.nan


def _row_label(row: TrackingRow) -> str:
    return f"created_at {row.created_at}"


def compare_with_journal(
    engine_id: str, migrations: Sequence[DrizzleMigration], rows_newest_first: Sequence[TrackingRow]
) -> Plan:
    """Pending, applied and problems. `rows_newest_first` is in Drizzle's own query order."""
    last = rows_newest_first[0] if rows_newest_first else None
    last_millis = js_number(last.created_at) if last else None
    by_time: dict[float, list[TrackingRow]] = {}
    for recorded in reversed(rows_newest_first):  # oldest first reads better in `applied`
        by_time.setdefault(js_number(recorded.created_at), []).append(recorded)
    pending: list[DrizzleMigration] = []
    not_pending: list[DrizzleMigration] = []
    for migration in migrations:
        is_pending = last_millis is None or last_millis < migration.when
        (pending if is_pending else not_pending).append(migration)
    matched = _match_rows(by_time, not_pending)
    applied: list[AppliedMigration] = []
    problems: list[Problem] = []
    for migration, row in matched:
        if row is None:
            assert last is not None
            problems.append(_never_applied(migration, last, migrations))
            continue
        applied.append(AppliedMigration(id=migration.id, checksum=row.hash))
        if row.hash != migration.checksum:
            problems.append(_edited(migration, row))
    for left_over in by_time.values():
        for orphan in left_over:
            applied.append(AppliedMigration(id=_row_label(orphan), checksum=orphan.hash))
            problems.append(_entry_gone(orphan))
    return Plan(
        engine=engine_id, pending=tuple(pending), applied=tuple(applied), problems=tuple(problems)
    )


def _match_rows(
    by_time: dict[float, list[TrackingRow]], migrations: Sequence[DrizzleMigration]
) -> list[tuple[DrizzleMigration, TrackingRow | None]]:
    """Each migration's row, taken from `by_time`: same `created_at` and hash first, so that
    entries sharing a `when` find their own rows; then same `created_at` alone (an edit)."""
    found: dict[str, TrackingRow] = {}
    for same_hash in (True, False):
        for migration in migrations:
            rows = by_time.get(float(migration.when), [])
            row = next((r for r in rows if r.hash == migration.checksum or not same_hash), None)
            if migration.id not in found and row is not None:
                found[migration.id] = row
                rows.remove(row)
    return [(migration, found.get(migration.id)) for migration in migrations]


def _never_applied(
    migration: DrizzleMigration, last: TrackingRow, migrations: Sequence[DrizzleMigration]
) -> Problem:
    last_tag = next(
        (m.id for m in migrations if m.when == js_number(last.created_at)), _row_label(last)
    )
    return Problem(
        ProblemKind.NEVER_APPLIED,
        migration.id,
        f"{migration.id} (when {migration.when}) was never applied, and Drizzle never will "
        f"apply it: its `when` is not newer than the last applied migration ({last_tag}, "
        f"created_at {last.created_at}); give it a `when` greater than that in "
        "meta/_journal.json and move its entry after the applied ones, or apply its SQL by "
        "hand and record it",
    )


def _edited(migration: DrizzleMigration, row: TrackingRow) -> Problem:
    return Problem(
        ProblemKind.CHECKSUM_MISMATCH,
        migration.id,
        f"{migration.path or migration.id} was edited after it was applied (hash "
        f"{row.hash[:12]}... recorded, {(migration.checksum or '')[:12]}... now); Drizzle "
        "never checks this. Restore the applied version and put the change in a new "
        "migration, or allow checksum_mismatch for this run",
    )


def _entry_gone(row: TrackingRow) -> Problem:
    return Problem(
        ProblemKind.MISSING_FILE,
        _row_label(row),
        f"the tracking table records a migration with created_at {row.created_at} (hash "
        f"{row.hash[:12]}...), but no journal entry has that `when`; restore the entry and "
        "its file, or allow missing_file for this run",
    )
