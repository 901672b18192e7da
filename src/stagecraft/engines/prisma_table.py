"""`_prisma_migrations`, read and written exactly as Prisma's schema engine does.

Rows carry a uuid4 `id`, Prisma's checksum, `started_at`/`finished_at` as Prisma's JavaScript
engine writes them (ISO 8601 with milliseconds), `applied_steps_count` 1 once applied, and
`logs` when a migration failed. The table is created with Prisma's own DDL for the dialect.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .base import Migration
from .database import Database
from .errors import RefusalReason, RunRefused
from .prisma_rules import DatabaseState, MigrationRow, failed_message

TABLE = "_prisma_migrations"
# Prisma's own DDL, copied from its schema engine, so the table is the one Prisma would create.
_CREATE_TABLE = {
    "postgresql": f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
)""",
    "sqlite": f"""CREATE TABLE IF NOT EXISTS "{TABLE}" (
    "id"                    TEXT PRIMARY KEY NOT NULL,
    "checksum"              TEXT NOT NULL,
    "finished_at"           DATETIME,
    "migration_name"        TEXT NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        DATETIME,
    "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
)""",
}
_COLUMNS = (
    "id, checksum, migration_name, started_at, finished_at, rolled_back_at, logs, "
    "applied_steps_count"
)


def timestamp(moment: datetime) -> str:
    """Prisma's text form, as its JavaScript engine writes it: `2026-11-28T09:48:37.694+00:00`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _now() -> datetime:
    return datetime.now(UTC)


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    assert isinstance(value, datetime)
    return timestamp(value)


class PrismaTable:
    """The rows of `_prisma_migrations`; also the Tracker that applying.PlanApplier records with."""

    def __init__(self, database: Database) -> None:
        self.db = database
        self.name = database.qualified(None, TABLE)
        self._started: dict[str, str] = {}  # migration name -> id of its unfinished row

    def ensure(self) -> None:
        self.db.execute(_CREATE_TABLE[self.db.dialect])

    def state(self) -> DatabaseState:
        # One look at the table names: with two (is ours there? which others?) a concurrent
        # runner could create ours and its migrations' tables in between, which reads as P3005.
        names = self.db.table_names()
        exists = TABLE in names
        rows = self._rows() if exists else []
        return DatabaseState(rows, exists, frozenset(names - {TABLE}))

    def _rows(self, where: str = "", params: tuple[Any, ...] = ()) -> list[MigrationRow]:
        found = self.db.query(
            f"SELECT {_COLUMNS} FROM {self.name} {where} ORDER BY started_at, migration_name",
            params,
        )
        return [
            MigrationRow(
                id=row_id,
                checksum=checksum,
                migration_name=name,
                started_at=_as_text(started) or "",
                finished_at=_as_text(finished),
                rolled_back_at=_as_text(rolled_back),
                logs=logs,
                applied_steps_count=int(steps),
            )
            for row_id, checksum, name, started, finished, rolled_back, logs, steps in found
        ]

    def rows_named(self, name: str) -> list[MigrationRow]:
        return self._rows("WHERE migration_name = %s AND rolled_back_at IS NULL", (name,))

    def _insert(
        self,
        migration: Migration,
        *,
        started_at: datetime,
        finished_at: datetime | None,
        logs: str | None = None,
        steps: int = 0,
    ) -> str:
        row_id = str(uuid.uuid4())
        self.db.execute(
            f"INSERT INTO {self.name} (id, checksum, finished_at, migration_name, logs, "
            "rolled_back_at, started_at, applied_steps_count) "
            "VALUES (%s, %s, %s, %s, %s, NULL, %s, %s)",
            (
                row_id,
                migration.checksum,
                timestamp(finished_at) if finished_at else None,
                migration.id,
                logs,
                timestamp(started_at),
                steps,
            ),
        )
        return row_id

    # The Tracker protocol of applying.PlanApplier.
    def is_recorded(self, migration: Migration) -> bool:
        """Whether another runner applied it meanwhile; refuses if one left a failed row."""
        live = self._rows("WHERE rolled_back_at IS NULL AND finished_at IS NULL")
        if live:
            raise RunRefused(
                [RefusalReason("failed", row.migration_name, failed_message(row)) for row in live],
                advice=f"another runner recorded a failure; {migration.id} was not run",
            )
        return any(row.finished_at is not None for row in self.rows_named(migration.id))

    def record_applied(self, migration: Migration, duration_ms: int) -> None:
        finished = _now()
        self._insert(
            migration,
            started_at=finished - timedelta(milliseconds=duration_ms),
            finished_at=finished,
            steps=1,
        )

    def record_started(self, migration: Migration) -> None:
        self._started[migration.id] = self._insert(migration, started_at=_now(), finished_at=None)

    def record_finished(self, migration: Migration, duration_ms: int) -> None:
        del duration_ms  # Prisma keeps no duration; started_at and finished_at tell it
        self.db.execute(
            f"UPDATE {self.name} SET finished_at = %s, applied_steps_count = 1 WHERE id = %s",
            (timestamp(_now()), self._started.pop(migration.id)),
        )

    # Failures and resolutions, as Prisma records them.
    def record_failed(self, migration: Migration, logs: str, started_at: datetime) -> None:
        """A failed row: `finished_at` NULL with the error in `logs`, which blocks (P3009)."""
        row_id = self._started.pop(migration.id, None)
        if row_id is None:
            self._insert(migration, started_at=started_at, finished_at=None, logs=logs)
        else:
            self.db.execute(f"UPDATE {self.name} SET logs = %s WHERE id = %s", (logs, row_id))

    def record_resolved_applied(self, migration: Migration) -> None:
        """Prisma's `resolve --applied`: empty logs, no steps, started when finished."""
        now = _now()
        self._insert(migration, started_at=now, finished_at=now, logs="")

    def accept_checksum(self, row: MigrationRow, checksum: str) -> None:
        self.db.execute(f"UPDATE {self.name} SET checksum = %s WHERE id = %s", (checksum, row.id))

    def mark_rolled_back(self, row: MigrationRow) -> None:
        self.db.execute(
            f"UPDATE {self.name} SET rolled_back_at = %s WHERE id = %s",
            (timestamp(_now()), row.id),
        )
