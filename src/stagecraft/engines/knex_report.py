"""What a Knex run did, from its events and the tracking table read afterwards.

Knex's word is not taken for what was applied: the table is read again, so the report names
exactly the migrations that are recorded now, and a failure names the migration that started
and did not finish, with the database's message.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

from .base import AppliedResult, Migration, Plan, RunOptions, RunReport
from .errors import (
    InvalidOptions,
    MigrationFailed,
    MigrationSourceError,
    SqlFailure,
    StagecraftError,
)
from .knex_cli import KnexOutcome
from .knex_tables import KnexTables
from .urls import redact_url, scrub

FAILED_WITH = "migration failed with error: "
BATCH_RUN = re.compile(r"Batch (\d+) run: (\d+) migrations")

# The knexfile's migrations settings, by the engine option that must match each one.
OPTION_FOR_KNEX_SETTING = {
    "tableName": "table",
    "schemaName": "schema",
    "directory": "the migrations path and extra_directories",
    "loadExtensions": "load_extensions",
    "sortDirsSeparately": "sort_dirs_separately",
    "migrationSource": "(none: use migration folders)",
}


class KnexFailed(StagecraftError):
    """Knex stopped for a reason that is not one migration's failure (config, connection...)."""


BATCH_ROLLED_BACK = (
    "Knex ran the batch in one transaction, which rolled back: none of its migrations were "
    "applied or recorded"
)


def migration_failed(
    migration: Migration, failure: SqlFailure, *, dirty: bool, batch_transaction: bool = False
) -> MigrationFailed:
    return MigrationFailed(
        migration.id,
        migration.path,
        failure,
        dirty=dirty,
        resolve_hint=f"Once it is repaired, run `stagecraft migrate resolve --migration "
        f"{migration.id} --applied` (or `--rolled-back`).",
        outcome=BATCH_ROLLED_BACK if batch_transaction and not dirty else None,
    )


def _recorded_names(tables: KnexTables) -> set[str]:
    return {row.name for row in tables.recorded()}


def _batch_run(outcome: KnexOutcome) -> tuple[int, int] | None:
    """`Batch N run: K migrations`, the line Knex's CLI prints on success."""
    for line in reversed(outcome.output):
        match = BATCH_RUN.search(line)
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


def _applied(plan: Plan, outcome: KnexOutcome, ours: set[str]) -> list[AppliedResult]:
    finished = outcome.finished
    return [
        AppliedResult(migration.id, finished.get(migration.id, 0))
        for migration in plan.pending
        if migration.id in ours
    ]


def report_success(
    outcome: KnexOutcome, plan: Plan, tables: KnexTables, opts: RunOptions
) -> RunReport:
    rows = tables.recorded()
    tables.forget_recorded()
    missing = sorted({m.id for m in plan.pending} - {row.name for row in rows})
    if missing:
        raise KnexFailed(
            f"Knex reported success, but {', '.join(missing)} is not recorded in {tables.table} "
            f"on {redact_url(opts.database_url)}: Knex must have used another database. Make the "
            "knexfile's connection read the URL from the variable named by the engine option "
            "url_env (DATABASE_URL by default)"
        )
    # This run's rows carry the batch number Knex printed; rows of another batch were written
    # by a runner that got in between (Knex then prints that it ran fewer).
    batch = _batch_run(outcome)
    ours = {row.name for row in rows if batch and batch[1] and row.batch == batch[0]}
    applied = _applied(plan, outcome, ours)
    skipped = tuple(migration.id for migration in plan.pending if migration.id not in ours)
    return RunReport(engine=plan.engine, plan=plan, applied=tuple(applied), skipped=skipped)


def _failure_of(outcome: KnexOutcome, name: str, url: str) -> SqlFailure:
    started = max(
        index
        for index, event in enumerate(outcome.events)
        if event.get("event") == "started" and event.get("name") == name
    )
    for event in outcome.events[started:]:
        if event.get("event") == "query-error":
            return SqlFailure(
                message=scrub(str(event.get("message")), url),
                sqlstate=_text(event.get("code")),
                detail=_text(event.get("detail")),
                hint=_text(event.get("hint")),
                statement=_text(event.get("statement")),
            )
    messages = [line[len(FAILED_WITH) :] for line in outcome.warnings() if FAILED_WITH in line]
    return SqlFailure(message=scrub(messages[-1] if messages else outcome.tail(url), url))


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


def _mismatch(outcome: KnexOutcome) -> InvalidOptions | None:
    for event in outcome.of_kind("mismatch"):
        setting = str(event.get("field"))
        option = OPTION_FOR_KNEX_SETTING.get(setting, setting)
        return InvalidOptions(
            "knex",
            [
                (
                    option,
                    f"the knexfile sets migrations.{setting} = {event.get('knexfile')!r} but "
                    f"Stagecraft planned with {event.get('stagecraft')!r}; make them agree",
                )
            ],
        )
    return None


def raise_failure(
    outcome: KnexOutcome, plan: Plan, tables: KnexTables, opts: RunOptions
) -> NoReturn:
    url = opts.database_url
    mismatch = _mismatch(outcome)
    if mismatch:
        raise mismatch
    for event in outcome.of_kind("config-error"):
        raise KnexFailed(
            "Knex could not load its configuration: "
            f"{scrub(str(event.get('message')), url)}; nothing was run. Check the project's "
            "knexfile (engine options knexfile and environment)"
        )
    for event in outcome.of_kind("listing-mismatch"):
        raise KnexFailed(
            f"Knex lists the migrations differently from Stagecraft's plan (position "
            f"{event.get('index')}: Knex {event.get('knex')!r}, Stagecraft "
            f"{event.get('stagecraft')!r}); nothing was run. Please report this as a bug"
        )
    failed_name = outcome.unfinished
    by_id = {migration.id: migration for migration in plan.pending}
    if failed_name in by_id:
        assert failed_name is not None
        recorded = _recorded_names(tables)
        tables.forget_recorded()
        # A transaction's rollback took its started row with it; one outside a transaction
        # left its row, and the plan now reports it as dirty.
        dirty = failed_name in tables.started() - recorded
        failed = migration_failed(
            by_id[failed_name],
            _failure_of(outcome, failed_name, url),
            dirty=dirty,
            batch_transaction=outcome.batch_transaction,
        )
        # Per-migration transactions keep what finished before the failure (and is recorded).
        done = recorded & set(outcome.finished)
        failed.applied = tuple(_applied(plan, outcome, done))
        raise failed
    loading = [line[len(FAILED_WITH) :] for line in outcome.warnings() if FAILED_WITH in line]
    if loading:
        raise MigrationSourceError(
            f"Knex could not load the migrations: {scrub(loading[-1], url)}; nothing was run"
        )
    raise KnexFailed(
        f"`knex migrate:latest` failed (exit code {outcome.returncode}) before running a "
        f"migration; its output ends with:\n{outcome.tail(url)}"
    )
