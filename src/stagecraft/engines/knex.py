"""The `knex` engine: Knex migration folders, planned natively, run by the project's own Knex.

Planning reads the folders and `knex_migrations`/`knex_migrations_lock` from Python, with Knex's
rules (knex_folder, knex_tables). Running hands the planned files to the project's Knex CLI
under Node.js (knex_cli), then reads the table again to report what was applied. Stagecraft
adds what Knex lacks: a plan that shows a held lock row and missing files, a bounded wait for a
running Knex, one Stagecraft runner at a time, and a run bound to the reviewed plan.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

from . import knex_cli
from .applying import refuse_unsafe
from .base import (
    Migration,
    Plan,
    PlanOptions,
    Problem,
    ProblemKind,
    Resolution,
    RunOptions,
    RunReport,
)
from .database import connect
from .errors import InvalidOptions, LockTimeout, ResolveError
from .knex_folder import with_contents
from .knex_layout import KnexOptions, Layout, layout_of
from .knex_report import raise_failure, report_success
from .knex_resolve import baseline_until, migration_named, resolve_started
from .knex_tables import KnexTables
from .options import parse_options
from .planning import compare_by_identity
from .registry import register
from .urls import dialect_of, redact_url

UNLOCK_COMMAND = "knex migrate:unlock"
RESOLVE_COMMAND = "stagecraft migrate resolve"
LOCK_POLL_SECONDS = 0.25
T = TypeVar("T")


def _lock_problem(tables: KnexTables) -> Problem | None:
    lock = tables.lock_row()
    if lock.free:
        return None
    state = (
        "is held (is_locked = 1)"
        if lock.unlocked == 0
        else f"has {lock.unlocked} unlocked rows where Knex needs exactly one"
    )
    return Problem(
        ProblemKind.LOCKED,
        tables.lock_table,
        f"Knex's migration lock ({tables.lock_table}) {state}: a `knex migrate` is running, or one "
        "stopped without releasing it. If no migration is running, clear it with "
        f"`{UNLOCK_COMMAND}` (in the project, with its knexfile and environment), then run again",
    )


def _missing_file_in_knex_terms(problem: Problem, table: str) -> Problem:
    if problem.kind != ProblemKind.MISSING_FILE:
        return problem
    return replace(
        problem,
        message=f"{problem.migration} is recorded in {table} but its file is gone (Knex "
        "stops with 'The migration directory is corrupt'); restore the file, or allow missing "
        "files for this run",
    )


def _dirty_problem(name: str) -> Problem:
    return Problem(
        ProblemKind.DIRTY,
        name,
        f"{name} started and Knex did not record it: it ran outside a transaction and failed or "
        "was interrupted, or its runner stopped between its commit and Knex's record, so part "
        "or all of it may be applied. Check the database by hand, finish or undo what it did, "
        f"then run `{RESOLVE_COMMAND} --migration {name} --applied` (or `--rolled-back`)",
    )


@register
class KnexEngine:
    id: ClassVar[str] = "knex"

    def parse_options(self, options: Mapping[str, Any]) -> KnexOptions:
        return parse_options(self.id, KnexOptions, options)

    def _plan_with(self, tables: KnexTables, found: list[Migration]) -> Plan:
        position = {migration.id: index for index, migration in enumerate(found)}
        plan = compare_by_identity(
            self.id, found, tables.applied(), sort_key=lambda name: position.get(name, -1)
        )
        lock = _lock_problem(tables)
        recorded = {row.id for row in plan.applied}
        dirty = sorted(tables.started() - recorded, key=lambda name: position.get(name, -1))
        return replace(
            plan,
            pending=tuple(with_contents(migration) for migration in plan.pending),
            problems=tuple(_missing_file_in_knex_terms(p, tables.table) for p in plan.problems)
            + tuple(_dirty_problem(name) for name in dirty)
            + ((lock,) if lock else ()),
        )

    def plan(self, opts: PlanOptions) -> Plan:
        options = self.parse_options(opts.options)
        layout = layout_of(opts.path, options)
        database = connect(opts.database_url, read_only=True, connect_timeout=opts.connect_timeout)
        try:
            tables = KnexTables(database, options.table, options.schema)
            return self._plan_with(tables, layout.migrations())
        finally:
            database.close()

    def run(self, opts: RunOptions) -> RunReport:
        options = self.parse_options(opts.options)
        layout = layout_of(opts.path, options)
        if dialect_of(opts.database_url) != "postgres":
            raise InvalidOptions(
                self.id,
                [("database", "the knex engine runs Knex on PostgreSQL only; plan works anywhere")],
            )
        tools = knex_cli.locate_tools(options.node, layout.knex_bin, layout.project_root)
        deadline = time.monotonic() + opts.lock_timeout
        database = connect(
            opts.database_url, connect_timeout=opts.connect_timeout, lock_timeout=opts.lock_timeout
        )
        try:
            tables = KnexTables(database, options.table, options.schema)
            with database.run_lock(tables.run_lock_key, opts.lock_timeout):
                while True:
                    plan, found = self._plan_when_knex_is_idle(tables, layout, deadline, opts)
                    refuse_unsafe(plan, opts)
                    if opts.dry_run:
                        return RunReport(engine=self.id, plan=plan, dry_run=True)
                    if not plan.pending:
                        return RunReport(engine=self.id, plan=plan)
                    with database.transaction():
                        tables.ensure_started_table()
                    invocation = self._invocation(
                        tables=tables,
                        found=found,
                        layout=layout,
                        options=options,
                        tools=tools,
                        opts=opts,
                    )
                    with database.durable_at_end():
                        outcome = knex_cli.migrate_latest(
                            invocation, _progress_reporter(plan, opts)
                        )
                    if outcome.lost_race and time.monotonic() < deadline:
                        continue  # a plain `knex migrate` got in after we looked: plan again
                    if outcome.returncode != 0:
                        raise_failure(outcome, plan, tables, opts)
                    return report_success(outcome, plan, tables, opts)
        finally:
            database.close()

    def resolve(self, opts: PlanOptions, migration: str, outcome: Resolution) -> str:
        return self._settle(
            opts,
            lambda tables, found: resolve_started(
                tables, migration_named(migration, found).id, outcome
            ),
        )

    def baseline(self, opts: PlanOptions, up_to: str) -> list[str]:
        return self._settle(
            opts, lambda tables, found: baseline_until(tables, found, migration_named(up_to, found))
        )

    def _settle(self, opts: PlanOptions, change: Callable[[KnexTables, list[Migration]], T]) -> T:
        """Change Knex's records as a person asks: under both locks, in one transaction."""
        options = self.parse_options(opts.options)
        found = layout_of(opts.path, options).migrations()
        database = connect(
            opts.database_url, connect_timeout=opts.connect_timeout, lock_timeout=opts.lock_timeout
        )
        try:
            tables = KnexTables(database, options.table, options.schema)
            with database.run_lock(tables.run_lock_key, opts.lock_timeout), database.transaction():
                if not tables.lock_row().free:
                    raise ResolveError(
                        f"Knex's migration lock ({tables.lock_table}) is held: wait for the "
                        f"running migration, or clear a stale lock with `{UNLOCK_COMMAND}`"
                    )
                return change(tables, found)
        finally:
            database.close()

    def _plan_when_knex_is_idle(
        self,
        tables: KnexTables,
        layout: Layout,
        deadline: float,
        opts: RunOptions,
    ) -> tuple[Plan, list[Migration]]:
        """The plan once no Knex holds its lock row, waiting until the deadline at most."""
        while True:
            remaining = deadline - time.monotonic()
            if not tables.wait_for_running_batch(max(remaining, 0.001)):
                raise LockTimeout(
                    f"a Knex migration batch on {redact_url(opts.database_url)} kept "
                    f"{tables.lock_table} locked for more than {opts.lock_timeout:g}s; wait for "
                    "it to finish, or raise --lock-timeout"
                )
            found = layout.migrations()
            plan = self._plan_with(tables, found)
            locked = any(problem.kind == ProblemKind.LOCKED for problem in plan.problems)
            if not locked or time.monotonic() >= deadline:
                return plan, found  # a lock still held after the wait is refused, naming the fix
            time.sleep(min(LOCK_POLL_SECONDS, max(deadline - time.monotonic(), 0)))

    def _invocation(
        self,
        *,
        tables: KnexTables,
        found: list[Migration],
        layout: Layout,
        options: KnexOptions,
        tools: knex_cli.KnexTools,
        opts: RunOptions,
    ) -> knex_cli.KnexInvocation:
        """Knex gets the very list the plan was made from: it runs exactly the planned files."""
        settings = knex_cli.settings_for(
            project_root=layout.project_root,
            knexfile=layout.knexfile,
            environment=options.environment,
            url_env=options.url_env,
            client="pg",
            table=options.table,
            schema=options.schema,
            directories=layout.directories,
            load_extensions=layout.load_extensions,
            sort_dirs_separately=layout.sort_dirs_separately,
            listing=[(m.path.parent, m.id) for m in found if m.path is not None],
            single_transaction=options.single_transaction,
            allow_missing=ProblemKind.MISSING_FILE in opts.allow,
            started_table=tables.started_table,
        )
        return knex_cli.KnexInvocation(
            tools=tools,
            project_root=layout.project_root,
            url=opts.database_url,
            url_env=options.url_env,
            settings=settings,
            single_transaction=options.single_transaction,
        )


def _progress_reporter(plan: Plan, opts: RunOptions) -> knex_cli.EventListener | None:
    progress = opts.progress
    if progress is None:
        return None
    numbered = {migration.id: (index, migration) for index, migration in enumerate(plan.pending, 1)}
    total = len(plan.pending)

    def report(event: dict[str, Any]) -> None:
        entry = numbered.get(str(event.get("name")))
        if entry is None:
            return
        index, migration = entry
        if event.get("event") == "started":
            progress.started(migration, index, total)
        elif event.get("event") == "finished":
            progress.finished(migration, index, total, int(event.get("ms") or 0))

    return report
