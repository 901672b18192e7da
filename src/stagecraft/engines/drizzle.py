"""The `drizzle` engine: runs a drizzle-kit migrations folder and keeps Drizzle's own records.

It reads `meta/_journal.json` and `<tag>.sql` (drizzle_folder), reads and writes Drizzle's
tracking table with Drizzle's `hash` and `created_at`, and decides what is pending with Drizzle's
rule (drizzle_rules), so a database migrated by drizzle-kit or drizzle-orm's `migrate()` is up to
date here and the other way round. What it adds to Drizzle:

- a lock: Drizzle takes none, so two pods starting together both migrate;
- problems instead of silence: an entry whose `when` is not newer than the last applied one
  (Drizzle skips it forever), an applied file whose hash changed, a row whose entry is gone;
- one transaction per migration, committed with its tracking row. Drizzle runs all pending
  migrations in ONE transaction, which is all-or-nothing but holds every lock the migrations
  take until the last one ends and turns one bad migration into a rollback of all the good ones
  before it. Stagecraft's safety contract is per migration (each applied migration is recorded,
  a failure names the one that failed and records nothing of it), so it commits each one.
  The difference shows only after a failure: the migrations before the failed one stay applied.

Every Drizzle migration is transactional (Drizzle offers no way out of its transaction), so the
engine knows no `-- stagecraft:no-transaction` directive and has no dirty state to resolve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from annotated_types import MinLen

from . import scripts
from .applying import PlanApplier, PreparedMigration, refuse_unsafe
from .base import Migration, Plan, PlanOptions, RunOptions, RunReport
from .database import Database, SqlCommand, connect
from .drizzle_folder import DrizzleMigration, Journal, read_journal, statements_by_chunk
from .drizzle_rules import TrackingRow, compare_with_journal
from .errors import InvalidOptions
from .options import FORBID_UNKNOWN_FIELDS, parse_options
from .registry import register

DEFAULT_SCHEMA = "drizzle"
# Drizzle's column type for `created_at`: bigint on PostgreSQL, numeric on SQLite.
_CREATED_AT_TYPE = {"postgresql": "bigint", "sqlite": "numeric"}


@dataclass(frozen=True)
class DrizzleOptions:
    """Where the tracking table lives, named after drizzle-kit's config.

    `migrations_table` is drizzle-kit's `migrations.table` (drizzle-orm's `migrationsTable`);
    `migrations_schema` is `migrations.schema` (`migrationsSchema`), PostgreSQL only, and
    defaults to `drizzle` there as in Drizzle. Set both as the application's drizzle config
    does, or Stagecraft and the application will keep two different records.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_UNKNOWN_FIELDS

    migrations_table: Annotated[str, MinLen(1)] = "__drizzle_migrations"
    migrations_schema: Annotated[str, MinLen(1)] | None = None


class _TrackingTable:
    """Drizzle's table, created exactly as Drizzle creates it."""

    def __init__(self, database: Database, options: DrizzleOptions) -> None:
        if options.migrations_schema and not database.supports_schemas:
            raise InvalidOptions(
                DrizzleEngine.id,
                [("migrations_schema", f"{database.dialect} has no schemas; remove the option")],
            )
        self.db = database
        self.schema = (
            (options.migrations_schema or DEFAULT_SCHEMA) if database.supports_schemas else None
        )
        self.table = options.migrations_table
        self.name = database.qualified(self.schema, self.table)

    @property
    def lock_name(self) -> str:
        return f"stagecraft:drizzle:{self.schema or ''}.{self.table}"

    def ensure(self) -> None:
        if self.schema:
            self.db.execute(f"CREATE SCHEMA IF NOT EXISTS {self.db.qualified(None, self.schema)}")
        created_at = _CREATED_AT_TYPE[self.db.dialect]
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {self.name} (id SERIAL PRIMARY KEY, "
            f"hash text NOT NULL, created_at {created_at})"
        )

    def rows_newest_first(self) -> list[TrackingRow]:
        """All rows, in the order of Drizzle's own query, whose first row is Drizzle's "last"."""
        if not self.db.table_exists(self.schema, self.table):
            return []
        rows = self.db.query(
            f"SELECT id, hash, created_at FROM {self.name} ORDER BY created_at DESC"
        )
        return [
            TrackingRow(id=row_id, hash=hash_, created_at=created)
            for row_id, hash_, created in rows
        ]

    def recorded_query(self, migration: Migration) -> SqlCommand:
        assert isinstance(migration, DrizzleMigration)
        return SqlCommand(
            f"SELECT 1 FROM {self.name} WHERE created_at = %s AND hash = %s",
            (migration.when, migration.checksum),
        )

    def is_recorded(self, migration: Migration) -> bool:
        query = self.recorded_query(migration)
        return bool(self.db.query(query.sql, query.params))

    def applied_row(self, migration: Migration) -> SqlCommand:
        # Known before the migration runs (Drizzle's table has no column for its duration), so
        # the applier can send many migrations ahead (PlanApplier.up_front).
        assert isinstance(migration, DrizzleMigration)
        return SqlCommand(
            f'INSERT INTO {self.name} ("hash", "created_at") VALUES (%s, %s)',
            (migration.checksum, migration.when),
        )

    def record_applied(self, migration: Migration, duration_ms: int) -> None:
        del duration_ms
        row = self.applied_row(migration)
        self.db.execute(row.sql, row.params)

    def record_started(self, migration: Migration) -> None:
        raise AssertionError(f"{migration.id}: every Drizzle migration runs in a transaction")

    def record_finished(self, migration: Migration, duration_ms: int) -> None:
        raise AssertionError(f"{migration.id}: every Drizzle migration runs in a transaction")


@register
class DrizzleEngine:
    id: ClassVar[str] = "drizzle"

    def parse_options(self, options: Mapping[str, Any]) -> DrizzleOptions:
        return parse_options(self.id, DrizzleOptions, options)

    def _plan_with(self, tracking: _TrackingTable, journal: Journal) -> Plan:
        return compare_with_journal(self.id, journal.migrations, tracking.rows_newest_first())

    def plan(self, opts: PlanOptions) -> Plan:
        options = self.parse_options(opts.options)
        journal = read_journal(opts.path)
        database = connect(opts.database_url, read_only=True, connect_timeout=opts.connect_timeout)
        try:
            journal.check_dialect(database.dialect)
            return self._plan_with(_TrackingTable(database, options), journal)
        finally:
            database.close()

    def run(self, opts: RunOptions) -> RunReport:
        options = self.parse_options(opts.options)
        journal = read_journal(opts.path)
        database = connect(
            opts.database_url, connect_timeout=opts.connect_timeout, lock_timeout=opts.lock_timeout
        )
        try:
            journal.check_dialect(database.dialect)
            tracking = _TrackingTable(database, options)
            with database.run_lock(tracking.lock_name, opts.lock_timeout):
                plan = self._plan_with(tracking, journal)
                refuse_unsafe(plan, opts)
                if opts.dry_run:
                    return RunReport(engine=self.id, plan=plan, dry_run=True)
                applier = PlanApplier(
                    self.id, database, tracking, opts, prepare=prepare, up_front=tracking
                )
                return applier.apply(plan)
        finally:
            database.close()


def prepare(database: Database, migration: Migration) -> PreparedMigration:
    """The file's text and statements, refused before anything runs if it cannot run safely.

    Drizzle would run a file that is not UTF-8 with U+FFFD in place of the bad bytes, silently
    changing string literals; Stagecraft names the line instead. A COMMIT inside a migration
    would commit it apart from its tracking row.
    """
    assert migration.path is not None
    script = scripts.decode(migration.path, scripts.read_bytes(migration.path))
    statements = statements_by_chunk(database, script, migration.path)
    scripts.refuse_transaction_control(migration, statements)
    return PreparedMigration(migration, script, statements)
