"""Knex's tracking tables, read from Python: `knex_migrations` and its `_lock` table.

Stagecraft never writes them: Knex does, when it runs. Reading them lets the plan show what Knex
would do (and what would stop it) without starting Node.js.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .base import AppliedMigration
from .database import Database

LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class LockRow:
    """The lock table's state. Knex takes its lock with `UPDATE ... SET is_locked = 1 WHERE
    is_locked = 0`, which must change exactly one row (an empty table gets its row first)."""

    exists: bool
    rows: int = 0
    unlocked: int = 0

    @property
    def free(self) -> bool:
        return not self.exists or self.rows == 0 or self.unlocked == 1


@dataclass(frozen=True)
class RecordedMigration:
    name: str
    batch: int | None
    migration_time: str | None


def _iso(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class KnexTables:
    def __init__(self, database: Database, table: str, schema: str | None) -> None:
        self.db = database
        self.table = table
        self.schema = schema
        self.lock_table = f"{table}_lock"  # Knex's naming: getLockTableName
        self.name = database.qualified(schema, table)
        self.lock_name = database.qualified(schema, self.lock_table)
        # Stagecraft's own table: migrations its Knex started (see knex_config.cjs).
        self.started_table = f"{table}_stagecraft_started"
        self.started_name = database.qualified(schema, self.started_table)

    @property
    def run_lock_key(self) -> str:
        """The advisory lock that keeps Stagecraft's own runners in single file."""
        return f"stagecraft:knex:{self.schema or ''}.{self.table}"

    def recorded(self) -> list[RecordedMigration]:
        if not self.db.table_exists(self.schema, self.table):
            return []
        rows = self.db.query(f"SELECT name, batch, migration_time FROM {self.name} ORDER BY id")
        return [RecordedMigration(name, batch, _iso(time)) for name, batch, time in rows]

    def applied(self) -> list[AppliedMigration]:
        return [
            AppliedMigration(id=row.name, checksum=None, applied_at=row.migration_time)
            for row in self.recorded()
        ]

    def lock_row(self) -> LockRow:
        if not self.db.table_exists(self.schema, self.lock_table):
            return LockRow(exists=False)
        rows = self.db.query(
            f"SELECT count(*), count(CASE WHEN is_locked = 0 THEN 1 END) FROM {self.lock_name}"
        )
        total, unlocked = rows[0]
        return LockRow(exists=True, rows=int(total), unlocked=int(unlocked))

    def started(self) -> set[str]:
        if not self.db.table_exists(self.schema, self.started_table):
            return set()
        return {name for (name,) in self.db.query(f"SELECT name FROM {self.started_name}")}

    def ensure_started_table(self) -> None:
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {self.started_name} (name varchar(255) PRIMARY KEY, "
            f"started_at {self.db.types.timestamp} NOT NULL)"
        )

    def forget_started(self, names: set[str]) -> None:
        """Drop the started rows of these migrations (`resolve`)."""
        for name in sorted(names):
            self.db.execute(f"DELETE FROM {self.started_name} WHERE name = %s", (name,))

    def forget_recorded(self) -> None:
        """Drop the started rows of migrations Knex has recorded: they finished."""
        if self.db.table_exists(self.schema, self.started_table):
            self.db.execute(
                f"DELETE FROM {self.started_name} WHERE name IN (SELECT name FROM {self.name})"
            )

    def record_applied(self, names: Sequence[str]) -> None:
        """Rows as Knex writes them, in one new batch (`resolve --applied`, `baseline`)."""
        batch = self.db.query(f"SELECT COALESCE(MAX(batch), 0) + 1 FROM {self.name}")[0][0]
        for name in names:
            self.db.execute(
                f"INSERT INTO {self.name} (name, batch, migration_time) "
                f"VALUES (%s, %s, {self.db.now_sql})",
                (name, batch),
            )

    def ensure_knex_tables(self) -> None:
        """Knex's two tables exactly as Knex 3 creates them (for `baseline` on a new database)."""
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {self.name} (id serial primary key, "
            "name varchar(255), batch integer, migration_time timestamptz)"
        )
        self.db.execute(
            f'CREATE TABLE IF NOT EXISTS {self.lock_name} ("index" serial primary key, '
            "is_locked integer)"
        )
        if not self.db.query(f"SELECT 1 FROM {self.lock_name}"):
            self.db.execute(f"INSERT INTO {self.lock_name} (is_locked) VALUES (0)")

    def wait_for_running_batch(self, timeout: float) -> bool:
        """Wait, at most `timeout` seconds, for a Knex batch running in one transaction.

        Knex's default mode updates the lock row inside the batch's transaction, so its lock is
        invisible until it commits; locking the row waits for that. False if it did not finish.
        """
        if not self.db.table_exists(self.schema, self.lock_table):
            return True
        try:
            with self.db.transaction():
                self.db.execute(f"SET LOCAL lock_timeout = {max(1, int(timeout * 1000))}")
                self.db.query(f"SELECT is_locked FROM {self.lock_name} FOR UPDATE")
        except Exception as error:  # the driver's own error type stays behind Database
            if getattr(error, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                return False
            raise
        return True
