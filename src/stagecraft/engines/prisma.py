"""The `prisma` engine: runs a Prisma Migrate folder and keeps Prisma's own `_prisma_migrations`.

It reads `migration_lock.toml` and `<name>/migration.sql` (prisma_folder), decides what is pending
with Prisma's rules (prisma_rules) and writes rows exactly as Prisma does (prisma_table), so a
database deployed by `prisma migrate deploy` is up to date here and the other way round. It takes
Prisma's own advisory lock key, so Prisma and Stagecraft never migrate at the same time.

How a migration runs. Prisma sends the whole `migration.sql` as one query, which PostgreSQL runs
as one implicit transaction, and keeps its bookkeeping in separate statements. Stagecraft runs the
script's statements and the migration's row in ONE transaction, so a crash can never leave a
migration applied without its row. A script that controls transactions itself (Prisma generates
`BEGIN; ... COMMIT;` for some enum changes) or is marked `-- stagecraft:no-transaction` runs
outside one: its row is written first with `finished_at` NULL, as Prisma does while it runs.

Failures are recorded the Prisma way, because Prisma must see them too: a row with
`finished_at` NULL and the error in `logs`. That row is not an applied migration: the migration
stays pending, and every run refuses (Prisma's P3009) until someone resolves it with
`stagecraft migrate resolve --rolled-back` or `--applied` (or `prisma migrate resolve`).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar

from . import scripts
from .applying import PlanApplier, prepare_sql_file, refuse_unsafe
from .base import Migration, Plan, PlanOptions, Resolution, RunOptions, RunReport
from .database import Database, connect
from .errors import MigrationFailed, MigrationSourceError, ResolveError, StagecraftError
from .options import FORBID_UNKNOWN_FIELDS, parse_options
from .prisma_folder import PrismaFolder, checksum_matches, read_folder
from .prisma_rules import RESOLVE_COMMAND, plan_deploy
from .prisma_table import PrismaTable
from .registry import register

# The key of Prisma's `pg_advisory_lock` (its schema engine's constant).
PRISMA_ADVISORY_LOCK_KEY = 72707369
_TRANSACTION_CONTROL = frozenset({"BEGIN", "START", "COMMIT", "ROLLBACK", "END", "SAVEPOINT"})


@dataclass(frozen=True)
class PrismaOptions:
    """The prisma engine has no settings of its own yet: Prisma fixes its table and lock key.

    Unknown options are refused, so a setting meant for another engine is noticed.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_UNKNOWN_FIELDS


class PrismaMigrationFailed(MigrationFailed):
    """A migration failed and, as Prisma does, is recorded as failed: it blocks until resolved."""

    def __init__(self, failed: MigrationFailed, logs_recorded: bool) -> None:
        outcome = (
            "part of it may have been applied (it ran outside a transaction)"
            if failed.dirty
            else "its transaction was rolled back, so nothing of it was applied"
        )
        if logs_recorded:
            outcome += (
                "\nas Prisma does, _prisma_migrations records it as failed, which blocks every "
                "run (Prisma's too) until it is resolved: fix it, then run "
                f"`{RESOLVE_COMMAND} --migration {failed.migration} --rolled-back` to run it "
                "again, or `--applied` if you completed it by hand"
            )
        super().__init__(
            failed.migration, failed.path, failed.failure, dirty=failed.dirty, outcome=outcome
        )
        self.applied = failed.applied


def _lock(database: Database, timeout: float) -> AbstractContextManager[None]:
    return database.run_lock(PRISMA_ADVISORY_LOCK_KEY, timeout)


def _logs(failed: MigrationFailed) -> str:
    """What Prisma's `logs` column gets: the error with its position, detail and hint.

    The message's last line says what was recorded, which the row itself tells.
    """
    return "\n".join(str(failed).splitlines()[:-1])


def _transactional(database: Database, migration: Migration) -> Migration:
    """Whether the script can run inside Stagecraft's transaction, decided from its text."""
    assert migration.path is not None
    data = scripts.read_bytes(migration.path)
    if scripts.NO_TRANSACTION in scripts.directives(migration.path, data):
        return replace(migration, transactional=False)
    try:
        text = scripts.decode(migration.path, data)
    except MigrationSourceError:
        return migration  # the run refuses it before anything runs, when it decodes it again
    statements = database.split(text)
    if any(statement.keyword in _TRANSACTION_CONTROL for statement in statements):
        return replace(migration, transactional=False)
    return migration


@register
class PrismaEngine:
    id: ClassVar[str] = "prisma"

    def parse_options(self, options: Mapping[str, Any]) -> PrismaOptions:
        return parse_options(self.id, PrismaOptions, options)

    def _plan_with(self, database: Database, table: PrismaTable, folder: PrismaFolder) -> Plan:
        folder.check_provider(database.dialect)
        plan = plan_deploy(self.id, folder.migrations, table.state(), _matches_file)
        return replace(plan, pending=tuple(_transactional(database, m) for m in plan.pending))

    def plan(self, opts: PlanOptions) -> Plan:
        self.parse_options(opts.options)
        folder = read_folder(opts.path)
        database = connect(opts.database_url, read_only=True, connect_timeout=opts.connect_timeout)
        try:
            return self._plan_with(database, PrismaTable(database), folder)
        finally:
            database.close()

    def run(self, opts: RunOptions) -> RunReport:
        self.parse_options(opts.options)
        folder = read_folder(opts.path)
        database = connect(
            opts.database_url, connect_timeout=opts.connect_timeout, lock_timeout=opts.lock_timeout
        )
        try:
            table = PrismaTable(database)
            with _lock(database, opts.lock_timeout):
                plan = self._plan_with(database, table, folder)
                refuse_unsafe(plan, opts)
                if opts.dry_run:
                    return RunReport(engine=self.id, plan=plan, dry_run=True)
                return _apply(database, table, plan, opts)
        finally:
            database.close()

    def resolve(self, opts: PlanOptions, migration: str, outcome: Resolution) -> str:
        self.parse_options(opts.options)
        folder = read_folder(opts.path)
        database = connect(opts.database_url, lock_timeout=opts.lock_timeout)
        try:
            folder.check_provider(database.dialect)
            table = PrismaTable(database)
            with _lock(database, opts.lock_timeout), database.transaction():
                table.ensure()
                if outcome is Resolution.ROLLED_BACK:
                    return _resolve_rolled_back(table, migration)
                return _resolve_applied(table, _named(folder, migration))
        finally:
            database.close()

    def baseline(self, opts: PlanOptions, up_to: str) -> list[str]:
        self.parse_options(opts.options)
        folder = read_folder(opts.path)
        last = _named(folder, up_to)
        database = connect(opts.database_url, lock_timeout=opts.lock_timeout)
        try:
            folder.check_provider(database.dialect)
            table = PrismaTable(database)
            marked = []
            with _lock(database, opts.lock_timeout), database.transaction():
                table.ensure()
                for migration in folder.migrations[: folder.migrations.index(last) + 1]:
                    rows = table.rows_named(migration.id)
                    if not any(row.finished_at is not None for row in rows):
                        _resolve_applied(table, migration)
                        marked.append(migration.id)
            return marked
        finally:
            database.close()


def _apply(database: Database, table: PrismaTable, plan: Plan, opts: RunOptions) -> RunReport:
    applier = PlanApplier(PrismaEngine.id, database, table, opts, prepare=prepare_sql_file)
    try:
        return applier.apply(plan)
    except MigrationFailed as failed:
        recorded = _record_failure(database, table, plan, failed)
        raise PrismaMigrationFailed(failed, recorded) from None


def _record_failure(
    database: Database, table: PrismaTable, plan: Plan, failed: MigrationFailed
) -> bool:
    """Write Prisma's failed row; False if even that failed (the error then does not claim it)."""
    migration = next(m for m in plan.pending if m.id == failed.migration)
    if not migration.transactional:
        # A script that failed inside its own BEGIN leaves the session in that transaction;
        # with none open, SQLite refuses the ROLLBACK, which is then nothing to undo.
        with suppress(StagecraftError):
            database.execute("ROLLBACK")
    try:
        with database.transaction():
            table.record_failed(migration, _logs(failed), datetime.now(UTC))
    except Exception:  # the migration's own error is the one to report
        return False
    return True


def _matches_file(migration: Migration, recorded: str) -> bool:
    assert migration.path is not None
    return checksum_matches(scripts.read_bytes(migration.path), recorded)


def _named(folder: PrismaFolder, name: str) -> Migration:
    for migration in folder.migrations:
        if migration.id == name.rstrip("/"):
            return migration
    known = ", ".join(m.id for m in folder.migrations[-5:]) or "(none)"
    raise ResolveError(
        f"no migration folder named {name!r} in {folder.path} (Prisma's P3017); the latest "
        f"are: {known}"
    )


def _resolve_rolled_back(table: PrismaTable, name: str) -> str:
    failed = [row for row in table.rows_named(name) if row.failed]
    if not failed:
        raise ResolveError(
            f"{name} has no failed record, so there is nothing to roll back (Prisma's P3012); "
            "only a migration that failed can be marked rolled back"
        )
    for row in failed:
        table.mark_rolled_back(row)
    return f"{name}: failed record marked rolled back; it is pending again"


def _resolve_applied(table: PrismaTable, migration: Migration) -> str:
    rows = table.rows_named(migration.id)
    finished = [row for row in rows if row.finished_at is not None]
    if finished:
        row = finished[-1]
        assert migration.checksum is not None
        if row.checksum == migration.checksum:
            raise ResolveError(
                f"{migration.id} is already recorded as applied and matches its file "
                "(Prisma's P3008); nothing to do"
            )
        table.accept_checksum(row, migration.checksum)
        return f"{migration.id}: the edited migration.sql is accepted as applied"
    for row in rows:
        table.mark_rolled_back(row)  # the failed attempts it replaces, as Prisma does
    table.record_resolved_applied(migration)
    return f"{migration.id}: recorded as applied without running it"
