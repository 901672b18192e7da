"""Applying a plan of SQL migrations: the run loop every SQL engine shares.

The engine supplies how to prepare a migration (read, decode, split, check) and a Tracker for
its own tracking table; this module owns the order of operations that make a run safe: prepare
everything before changing anything, commit each migration with its tracking row, record a
migration that runs outside a transaction as dirty before it starts, and report progress.
Where the tracking rows are known before the migrations run (UpFrontRows), it hands the
database whole units instead, which PostgreSQL sends ahead without a round trip each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import scripts
from .base import AppliedResult, Migration, Plan, RunOptions, RunReport
from .database import Database, MigrationUnit, SqlCommand, UnitFailed
from .errors import MigrationFailed, PlanChanged, RefusalReason, RunRefused
from .sqlsplit import Statement


@dataclass(frozen=True)
class PreparedMigration:
    migration: Migration
    script: str
    statements: list[Statement]


class Tracker(Protocol):
    """An engine's tracking table, as the run loop needs it."""

    def ensure(self) -> None:
        """Create the table if needed (called inside a transaction)."""
        ...

    def is_recorded(self, migration: Migration) -> bool:
        """Whether a row exists for it now (another runner may have applied it meanwhile)."""
        ...

    def record_applied(self, migration: Migration, duration_ms: int) -> None: ...

    def record_started(self, migration: Migration) -> None:
        """A dirty row for a migration about to run outside a transaction."""
        ...

    def record_finished(self, migration: Migration, duration_ms: int) -> None:
        """Turn the dirty row of `record_started` into an applied one."""
        ...


class UpFrontRows(Protocol):
    """A tracking table whose row for a migration is known before it runs (Drizzle's: its hash
    and `when`, no duration), so that the database may send many migrations ahead, each still
    committed with its row (`Database.apply_units`)."""

    def applied_row(self, migration: Migration) -> SqlCommand:
        """The INSERT that records it as applied."""
        ...

    def recorded_query(self, migration: Migration) -> SqlCommand:
        """A query that returns a row if another runner recorded it."""
        ...


def refuse_unsafe(plan: Plan, opts: RunOptions) -> None:
    """Raise before anything runs if the plan has blocking problems or is not the reviewed one."""
    blocking = plan.blocking_problems(opts.allow)
    if blocking:
        raise RunRefused(
            [RefusalReason(p.kind, p.migration, p.message) for p in blocking],
            advice="nothing was run",
        )
    if opts.expected_plan and opts.expected_plan != plan.fingerprint:
        raise PlanChanged(opts.expected_plan, plan.fingerprint)


def prepare_sql_file(database: Database, migration: Migration) -> PreparedMigration:
    assert migration.path is not None
    script = scripts.decode(migration.path, scripts.read_bytes(migration.path))
    return PreparedMigration(migration, script, scripts.prepare(database, migration, script))


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


@dataclass
class PlanApplier:
    engine_id: str
    database: Database
    tracker: Tracker
    opts: RunOptions
    prepare: Callable[[Database, Migration], PreparedMigration] = prepare_sql_file
    resolve_command: str = "stagecraft migrate resolve"
    # False when only runners holding the same run lock write the tracking table (raw's own
    # table; Prisma's, whose tool takes the same key). Where the lock is exclusive, a row cannot
    # appear between the plan and the apply, so the per-migration re-check is skipped.
    others_may_write: bool = True
    # Set when the tracker's rows are known up front: migrations then go through apply_units.
    up_front: UpFrontRows | None = None
    _recheck: bool = field(default=True, init=False)

    def apply(self, plan: Plan) -> RunReport:
        # Prepare everything first: a bad file later in the plan stops the run before the
        # first migration changes anything.
        prepared = [self.prepare(self.database, migration) for migration in plan.pending]
        if not prepared:
            return RunReport(engine=self.engine_id, plan=plan)
        with self.database.transaction():
            self.tracker.ensure()
        self._recheck = self.others_may_write or not self.database.exclusive_run_lock
        with self.database.durable_at_end():
            return self._apply_all(plan, prepared)

    def _apply_all(self, plan: Plan, prepared: list[PreparedMigration]) -> RunReport:
        if self.up_front and all(step.migration.transactional for step in prepared):
            return self._apply_units(plan, prepared, self.up_front)
        applied: list[AppliedResult] = []
        skipped: list[str] = []
        progress = self.opts.progress
        for index, step in enumerate(prepared, start=1):
            if progress:
                progress.started(step.migration, index, len(prepared))
            run = self._in_transaction if step.migration.transactional else self._outside
            try:
                duration = run(step)
            except MigrationFailed as failed:
                failed.applied = tuple(applied)
                raise
            if duration is None:
                skipped.append(step.migration.id)
                continue
            applied.append(AppliedResult(step.migration.id, duration))
            if progress:
                progress.finished(step.migration, index, len(prepared), duration)
        return RunReport(
            engine=self.engine_id, plan=plan, applied=tuple(applied), skipped=tuple(skipped)
        )

    def _apply_units(
        self, plan: Plan, prepared: list[PreparedMigration], rows: UpFrontRows
    ) -> RunReport:
        units = [
            MigrationUnit(
                statements=step.statements,
                record=rows.applied_row(step.migration),
                recorded=rows.recorded_query(step.migration) if self._recheck else None,
            )
            for step in prepared
        ]
        applied: list[AppliedResult] = []
        skipped: list[str] = []
        progress = self.opts.progress
        # Every outcome is read, to the end: the database finishes its work after the last one.
        outcomes = self.database.apply_units(units)
        try:
            for index, duration in enumerate(outcomes, start=1):
                step = prepared[index - 1]
                if duration is None:
                    skipped.append(step.migration.id)  # another runner applied it meanwhile
                    continue
                applied.append(AppliedResult(step.migration.id, duration))
                if progress:
                    progress.started(step.migration, index, len(prepared))
                    progress.finished(step.migration, index, len(prepared), duration)
        except UnitFailed as failed:
            step = prepared[failed.index]
            error = MigrationFailed(
                step.migration.id,
                step.migration.path,
                scripts.failure_in(step.script, failed.statement, failed.failure),
            )
            error.applied = tuple(applied)
            raise error from None
        finally:
            outcomes.close()  # stops the database's work if this loop stopped early
        return RunReport(
            engine=self.engine_id, plan=plan, applied=tuple(applied), skipped=tuple(skipped)
        )

    def _in_transaction(self, step: PreparedMigration) -> int | None:
        with self.database.transaction():
            if self._recheck and self.tracker.is_recorded(step.migration):
                return None  # another runner applied it since the plan was made (SQLite)
            started = time.perf_counter()
            scripts.execute(self.database, step.migration, step.script, step.statements)
            duration = _elapsed_ms(started)
            self.tracker.record_applied(step.migration, duration)
        return duration

    def _outside(self, step: PreparedMigration) -> int | None:
        with self.database.transaction():
            if self._recheck and self.tracker.is_recorded(step.migration):
                return None
            # Recorded dirty before it starts: a crash from here on leaves a visible dirty row.
            self.tracker.record_started(step.migration)
        started = time.perf_counter()
        scripts.execute(
            self.database,
            step.migration,
            step.script,
            step.statements,
            dirty_on_failure=True,
            resolve_hint=(
                f"Run `{self.resolve_command} --migration {step.migration.id}` once it is repaired."
            ),
        )
        duration = _elapsed_ms(started)
        with self.database.transaction():
            self.tracker.record_finished(step.migration, duration)
        return duration
