"""The small interface that hides dialect differences from the engines.

Engines write SQL with `%s` placeholders and call these methods; nothing else in an engine
branches on the dialect. `connect` picks the implementation from the URL scheme.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Generator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from .sqlsplit import Statement
from .urls import dialect_of


@dataclass(frozen=True)
class ColumnTypes:
    text: str
    integer: str
    bigint: str
    boolean: str
    timestamp: str


class StatementFailed(Exception):
    """A statement of a migration failed; `position` is a 0-based offset in the statement."""

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
        position: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint
        self.position = position


@dataclass(frozen=True)
class SqlCommand:
    """One statement with `%s` placeholders and its parameters."""

    sql: str
    params: Sequence[Any] = ()


@dataclass(frozen=True)
class MigrationUnit:
    """A migration for `Database.apply_units`: its statements and its tracking row, committed
    together in one transaction."""

    statements: Sequence[Statement]
    record: SqlCommand  # the INSERT of the tracking row
    # Returns a row if another runner recorded the migration meanwhile: it is then skipped.
    recorded: SqlCommand | None = None


class UnitFailed(Exception):
    """Unit `index` failed, at `statement` (None: at its BEGIN, check, row or COMMIT);
    nothing of it, nor of any unit after it, was committed."""

    def __init__(self, index: int, statement: Statement | None, failure: StatementFailed) -> None:
        super().__init__(failure.message)
        self.index = index
        self.statement = statement
        self.failure = failure


class Database(Protocol):
    dialect: str
    types: ColumnTypes
    supports_schemas: bool
    now_sql: str  # an SQL expression for "now" as the dialect stores timestamps
    exclusive_run_lock: bool  # run_lock keeps every other runner out for the whole run

    def qualified(self, schema: str | None, table: str) -> str: ...

    def table_exists(self, schema: str | None, table: str) -> bool: ...

    def table_names(self) -> set[str]:
        """Tables in the connection's default schema (engines check "is the database empty")."""
        ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def transaction(self) -> AbstractContextManager[None]:
        """One atomic unit; on SQLite it also takes the write lock at once (BEGIN IMMEDIATE)."""
        ...

    def run_lock(self, key: str | int, timeout: float) -> AbstractContextManager[None]:
        """Exclude other runners for the whole run where the dialect can (an advisory lock).

        A name is hashed into a key; an integer is used as it is, so a compatible engine can take
        its tool's own fixed key (Prisma's) and the two tools exclude each other.
        """
        ...

    def durable_at_end(self) -> AbstractContextManager[None]:
        """Commits inside may be made durable together when the block ends, not one by one.

        Each commit stays atomic (a migration and its row survive a crash together or not at
        all); only the wait for the disk is shared. When the block ends, normally or not,
        everything committed inside it is durable.
        """
        ...

    def split(self, script: str) -> list[Statement]: ...

    def execute_statement(self, statement: Statement) -> None:
        """Run one statement of a migration; raise StatementFailed on an SQL error."""
        ...

    def apply_units(self, units: Sequence[MigrationUnit]) -> Generator[int | None, None, None]:
        """Commit each unit with its row, in order, yielding its duration in milliseconds, or
        None for a unit skipped because `recorded` found it. The first failure raises
        UnitFailed. PostgreSQL sends the units ahead without waiting for each one's results."""
        ...

    def close(self) -> None: ...


def apply_one_by_one(
    database: Database, units: Sequence[MigrationUnit]
) -> Generator[int | None, None, None]:
    """`apply_units` for a database that waits for each statement: one transaction per unit."""
    for index, unit in enumerate(units):
        yield _apply_one(database, index, unit)


def _apply_one(database: Database, index: int, unit: MigrationUnit) -> int | None:
    with database.transaction():
        if unit.recorded and database.query(unit.recorded.sql, unit.recorded.params):
            return None
        started = time.perf_counter()
        for statement in unit.statements:
            try:
                database.execute_statement(statement)
            except StatementFailed as failed:
                raise UnitFailed(index, statement, failed) from None
        database.execute(unit.record.sql, unit.record.params)
    return round((time.perf_counter() - started) * 1000)


def connect(
    url: str, *, read_only: bool = False, connect_timeout: float = 10.0, lock_timeout: float = 60.0
) -> Database:
    """Open a database by URL. `read_only` connections never create or change anything."""
    module = importlib.import_module(f"{__package__}.{dialect_of(url)}")
    database: Database = module.open_database(
        url, read_only=read_only, connect_timeout=connect_timeout, lock_timeout=lock_timeout
    )
    return database
