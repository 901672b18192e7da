"""The `knex` engine: Knex migration folders, planned natively, run by the project's own Knex.

Planning reads the folders and `knex_migrations`/`knex_migrations_lock` from Python, with Knex's
rules (knex_folder, knex_tables). Running hands the planned files to the project's Knex CLI
under Node.js (knex_cli), then reads the table again to report what was applied. Stagecraft
adds what Knex lacks: a plan that shows a held lock row and missing files, a bounded wait for a
running Knex, one Stagecraft runner at a time, and a run bound to the reviewed plan.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar

from annotated_types import MinLen

from . import knex_cli
from .applying import refuse_unsafe
from .base import Migration, Plan, PlanOptions, Problem, ProblemKind, RunOptions, RunReport
from .database import connect
from .errors import InvalidOptions, LockTimeout
from .knex_folder import DEFAULT_LOAD_EXTENSIONS, find_knex_migrations, with_contents
from .knex_report import raise_failure, report_success
from .knex_tables import KnexTables
from .options import FORBID_UNKNOWN_FIELDS, parse_options
from .planning import compare_by_identity
from .registry import register
from .urls import dialect_of, redact_url

UNLOCK_COMMAND = "knex migrate:unlock"
LOCK_POLL_SECONDS = 0.25


# A list in YAML; `--option load_extensions=.js,.ts` gives one comma-separated string.
Names = str | tuple[str, ...]


def names(value: Names) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


@dataclass(frozen=True)
class KnexOptions:
    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_UNKNOWN_FIELDS

    table: Annotated[str, MinLen(1)] = "knex_migrations"  # migrations.tableName
    schema: Annotated[str, MinLen(1)] | None = None  # migrations.schemaName
    # The folder holding node_modules and the knexfile; default: the nearest one at or above
    # the migrations folder with Knex installed (an application image's project root).
    project_root: str | None = None
    knex_bin: str | None = None  # default: <project_root>/node_modules/knex/bin/cli.js
    knexfile: str | None = None  # default: knexfile.js (or .mjs, .ts...) in the project root
    environment: str | None = None  # the knexfile's environment; default: NODE_ENV or development
    node: Annotated[str, MinLen(1)] = "node"
    url_env: Annotated[str, MinLen(1)] = "DATABASE_URL"  # the variable the knexfile reads
    extra_directories: Names = ()  # more migration folders (migrations.directory as a list)
    load_extensions: Names = DEFAULT_LOAD_EXTENSIONS
    sort_dirs_separately: bool = False
    # Knex's own default wraps the whole batch in one transaction; Stagecraft commits each
    # migration with its row, so that a failure keeps what succeeded before it.
    single_transaction: bool = False


@dataclass(frozen=True)
class _Layout:
    """Where everything is, with relative paths resolved the way Knex resolves them."""

    project_root: Path
    directories: tuple[Path, ...]
    knexfile: Path | None
    knex_bin: Path | None
    load_extensions: tuple[str, ...]
    sort_dirs_separately: bool

    def migrations(self) -> list[Migration]:
        return find_knex_migrations(
            self.directories, self.load_extensions, sort_dirs_separately=self.sort_dirs_separately
        )


def _layout(folder: Path, options: KnexOptions) -> _Layout:
    folder = folder.resolve()
    if options.project_root:
        root = Path(options.project_root).resolve()
    else:
        root = knex_cli.find_project_root(folder) or folder.parent
    extra = tuple((root / directory).resolve() for directory in names(options.extra_directories))
    knexfile = (root / options.knexfile).resolve() if options.knexfile else None
    if knexfile is not None and not knexfile.is_file():
        raise InvalidOptions(KnexEngine.id, [("knexfile", f"{knexfile} does not exist")])
    return _Layout(
        project_root=root,
        directories=(folder, *extra),
        knexfile=knexfile or knex_cli.find_knexfile(root),
        knex_bin=(root / options.knex_bin) if options.knex_bin else None,
        load_extensions=names(options.load_extensions),
        sort_dirs_separately=options.sort_dirs_separately,
    )


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
        return replace(
            plan,
            pending=tuple(with_contents(migration) for migration in plan.pending),
            problems=tuple(_missing_file_in_knex_terms(p, tables.table) for p in plan.problems)
            + ((lock,) if lock else ()),
        )

    def plan(self, opts: PlanOptions) -> Plan:
        options = self.parse_options(opts.options)
        layout = _layout(opts.path, options)
        database = connect(opts.database_url, read_only=True, connect_timeout=opts.connect_timeout)
        try:
            tables = KnexTables(database, options.table, options.schema)
            return self._plan_with(tables, layout.migrations())
        finally:
            database.close()

    def run(self, opts: RunOptions) -> RunReport:
        options = self.parse_options(opts.options)
        layout = _layout(opts.path, options)
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
                    invocation = self._invocation(found, layout, options, tools, opts)
                    outcome = knex_cli.migrate_latest(invocation, _progress_reporter(plan, opts))
                    if outcome.lost_lock_race and time.monotonic() < deadline:
                        continue  # a plain `knex migrate` started after we looked: wait for it
                    if outcome.returncode != 0:
                        raise_failure(outcome, plan, tables, opts)
                    return report_success(outcome, plan, tables, opts)
        finally:
            database.close()

    def _plan_when_knex_is_idle(
        self,
        tables: KnexTables,
        layout: _Layout,
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
        found: list[Migration],
        layout: _Layout,
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
