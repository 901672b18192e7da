"""Prisma's rules for what `migrate deploy` would do, plus the problems Stagecraft adds.

Pure: it takes the folder's migrations and the rows of `_prisma_migrations` and returns the plan,
so every rule is tested in memory. Prisma's own rules (from its schema engine):

- rows with `rolled_back_at` set are ignored;
- a row with neither `finished_at` nor `rolled_back_at` is a failed migration: nothing runs until
  it is resolved (P3009);
- pending = the folders, in `localeCompare` order, without a finished row of their name;
- no table while the schema has other tables: the database needs a baseline first (P3005).

Prisma's deploy ignores edited applied scripts and rows without a folder; Stagecraft reports
them, and an order of pending migrations that byte order would give differently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .base import AppliedMigration, Migration, Plan, Problem, ProblemKind
from .collation import exactly_collated

RESOLVE_COMMAND = "stagecraft migrate resolve"
# Not one of the shared kinds: Prisma's P3005, a database that needs a baseline.
NEEDS_BASELINE = "needs_baseline"
LOG_EXCERPT = 300


@dataclass(frozen=True)
class MigrationRow:
    """One row of `_prisma_migrations`; timestamps as ISO 8601 text."""

    id: str
    checksum: str
    migration_name: str
    started_at: str
    finished_at: str | None = None
    rolled_back_at: str | None = None
    logs: str | None = None
    applied_steps_count: int = 0

    @property
    def failed(self) -> bool:
        return self.finished_at is None and self.rolled_back_at is None


@dataclass(frozen=True)
class DatabaseState:
    rows: Sequence[MigrationRow]  # ordered by started_at, as Prisma reads them
    table_exists: bool
    other_tables: frozenset[str]


ChecksumTest = Callable[[Migration, str], bool]


def failed_message(row: MigrationRow) -> str:
    logs = " ".join((row.logs or "").split())  # one line, however the tool wrote it
    if len(logs) > LOG_EXCERPT:
        logs = logs[:LOG_EXCERPT] + "..."
    return (
        f"{row.migration_name} failed (started {row.started_at}) and is not resolved, so no "
        f"migration may run (Prisma's P3009){': ' + logs if logs else ''}. Check what it "
        "changed, then run "
        f"`{RESOLVE_COMMAND} --migration {row.migration_name} --rolled-back` to run it again, "
        "or `--applied` if you completed it by hand (`prisma migrate resolve` does the same)"
    )


def plan_deploy(
    engine_id: str,
    migrations: Sequence[Migration],
    state: DatabaseState,
    checksum_matches: ChecksumTest,
) -> Plan:
    live = [row for row in state.rows if row.rolled_back_at is None]
    finished = {row.migration_name: row for row in live if not row.failed}
    problems = [
        Problem(ProblemKind.FAILED, row.migration_name, failed_message(row))
        for row in live
        if row.failed
    ]
    problems += _drift(migrations, finished, checksum_matches)
    pending = tuple(m for m in migrations if m.id not in finished)
    problems += _ambiguous_order(pending)
    if not state.table_exists and state.other_tables:
        problems.append(_needs_baseline(migrations, state.other_tables))
    applied = tuple(
        AppliedMigration(
            id=row.migration_name,
            checksum=row.checksum,
            applied_at=row.finished_at or row.started_at,
            dirty=row.failed,
        )
        for row in live
    )
    return Plan(engine=engine_id, pending=pending, applied=applied, problems=tuple(problems))


def _drift(
    migrations: Sequence[Migration],
    finished: dict[str, MigrationRow],
    checksum_matches: ChecksumTest,
) -> list[Problem]:
    by_name = {migration.id: migration for migration in migrations}
    problems = []
    for name, row in finished.items():
        migration = by_name.get(name)
        if migration is None:
            problems.append(
                Problem(
                    ProblemKind.MISSING_FILE,
                    name,
                    f"{name} is recorded as applied but its folder is gone from the migrations "
                    "folder (Prisma's deploy ignores this); restore it, or allow missing files "
                    "for this run",
                )
            )
        elif row.checksum != migration.checksum and not checksum_matches(migration, row.checksum):
            problems.append(
                Problem(
                    ProblemKind.CHECKSUM_MISMATCH,
                    name,
                    f"{migration.path} was edited after it was applied (checksum "
                    f"{row.checksum[:12]}... recorded, {(migration.checksum or '')[:12]}... now; "
                    "Prisma's deploy does not check this); restore the applied version and put "
                    "the change in a new migration, or allow the edit for this run",
                )
            )
    return problems


def _ambiguous_order(pending: Sequence[Migration]) -> list[Problem]:
    """Pending migrations whose order Prisma's localeCompare and byte order would not agree on.

    Prisma 5's native engine sorted by bytes, Prisma 6 sorts with localeCompare: a folder whose
    order depends on that runs differently depending on who migrates.
    """
    if len(pending) < 2:
        return []
    by_bytes = sorted(pending, key=lambda migration: migration.id.encode())
    problems = []
    for position, migration in enumerate(pending):
        if by_bytes[position] is not migration:
            problems.append(
                Problem(
                    ProblemKind.ORDER_AMBIGUOUS,
                    migration.id,
                    f"{migration.id} is pending at position {position + 1} in Prisma's order "
                    "(JavaScript localeCompare) but would be at position "
                    f"{by_bytes.index(migration) + 1} in byte order (Prisma 5 and most tools); "
                    "rename the pending folders so both orders agree, as Prisma's "
                    "YYYYMMDDHHMMSS_name folders do",
                )
            )
        elif not exactly_collated(migration.id):
            problems.append(
                Problem(
                    ProblemKind.ORDER_AMBIGUOUS,
                    migration.id,
                    f"{migration.id} has characters outside printable ASCII, whose order under "
                    "Node.js's localeCompare Stagecraft cannot reproduce exactly; rename it with "
                    "ASCII letters, digits, `_` and `-` only",
                )
            )
    return problems


def _needs_baseline(migrations: Sequence[Migration], other_tables: frozenset[str]) -> Problem:
    shown = ", ".join(sorted(other_tables)[:5])
    first = migrations[0].id if migrations else "NAME"
    return Problem(
        NEEDS_BASELINE,
        "",
        f"the database already has tables ({shown}) but no _prisma_migrations table, so it was "
        "not migrated by Prisma (Prisma's P3005); baseline it first: record each migration the "
        "database already contains as applied with "
        f"`{RESOLVE_COMMAND} --migration {first} --applied`, or all of them up to one with "
        "`stagecraft migrate baseline --to NAME`",
    )
