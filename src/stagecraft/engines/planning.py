"""Pure plan computation shared by engines whose tracking table records one row per migration.

It takes the migrations found on disk and the rows found in the database and returns the plan;
it does no I/O, so the rules are tested in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .base import AppliedMigration, Migration, Plan, Problem, ProblemKind

if TYPE_CHECKING:
    from _typeshed import SupportsDunderLT


def dirty_message(migration_id: str, resolve_command: str) -> str:
    return (
        f"{migration_id} started outside a transaction and did not finish, so part of it may be "
        "applied; check the database by hand, finish or undo what it did, then run "
        f"`{resolve_command} --migration {migration_id} --applied` (or `--rolled-back`)"
    )


def compare_by_identity(
    engine_id: str,
    found: Sequence[Migration],
    recorded: Sequence[AppliedMigration],
    *,
    sort_key: Callable[[str], SupportsDunderLT[Any]],
    resolve_command: str = "stagecraft migrate resolve",
) -> Plan:
    """Pending = found migrations without a row, in the order found; plus every problem."""
    found_by_id = {migration.id: migration for migration in found}
    recorded_ids = {row.id for row in recorded}
    problems: list[Problem] = []
    for row in recorded:
        migration = found_by_id.get(row.id)
        if row.dirty:
            problems.append(
                Problem(ProblemKind.DIRTY, row.id, dirty_message(row.id, resolve_command))
            )
        elif migration is None:
            problems.append(
                Problem(
                    ProblemKind.MISSING_FILE,
                    row.id,
                    f"{row.id} is recorded as applied but its file is gone from the migrations "
                    "folder; restore it, or allow missing files for this run",
                )
            )
        elif row.checksum is not None and migration.checksum != row.checksum:
            problems.append(
                Problem(
                    ProblemKind.CHECKSUM_MISMATCH,
                    row.id,
                    f"{migration.path or row.id} was edited after it was applied (checksum "
                    f"{row.checksum[:12]}... recorded, {(migration.checksum or '')[:12]}... now); "
                    "restore the applied version and put the change in a new migration, or "
                    f"accept the edit with `{resolve_command} --migration {row.id} --applied`",
                )
            )
    pending = tuple(m for m in found if m.id not in recorded_ids)
    if recorded and pending:
        last_applied = max(recorded, key=lambda row: sort_key(row.id)).id
        for migration in pending:
            if sort_key(migration.id) < sort_key(last_applied):
                problems.append(
                    Problem(
                        ProblemKind.OUT_OF_ORDER,
                        migration.id,
                        f"{migration.id} is new but sorts before {last_applied}, which is already "
                        "applied; rename it to sort last, or allow out-of-order for this run",
                    )
                )
    return Plan(
        engine=engine_id, pending=pending, applied=tuple(recorded), problems=tuple(problems)
    )
