"""SQLite through the standard library: the embedded default for local runs.

SQLite has no advisory lock, so each migration takes the write lock with BEGIN IMMEDIATE
(bounded by the busy timeout) and checks its own tracking row inside that transaction:
concurrent runners apply each migration exactly once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from .database import ColumnTypes, MigrationUnit, StatementFailed, apply_one_by_one
from .errors import DatabaseUnavailable, InvalidDatabaseUrl, LockTimeout
from .sqlsplit import SQLITE, Statement, split_statements


def sqlite_path(url: str) -> str:
    """The file path of a sqlite: URL (`sqlite:///relative.db`, `sqlite:////abs.db`, `sqlite:x.db`).

    `sqlite://` followed by a host is refused: it is almost always a path missing one slash.
    """
    rest = url.split(":", 1)[1].split("?", 1)[0]
    if rest.startswith("///"):
        path = rest[3:]
    elif rest.startswith("//"):
        raise InvalidDatabaseUrl(
            f"SQLite URL {url!r} names a host; use sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    else:
        path = rest
    if not path:
        raise InvalidDatabaseUrl(f"SQLite URL {url!r} names no file")
    return unquote(path)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteDatabase:
    dialect = "sqlite"
    supports_schemas = False
    exclusive_run_lock = False  # each transaction takes the write lock; runs may interleave
    now_sql = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    types = ColumnTypes(
        text="TEXT", integer="INTEGER", bigint="INTEGER", boolean="INTEGER", timestamp="TEXT"
    )

    def __init__(self, connection: sqlite3.Connection, path: str, lock_timeout: float) -> None:
        self._connection = connection
        self._path = path
        self._lock_timeout = lock_timeout

    def qualified(self, schema: str | None, table: str) -> str:
        del schema  # SQLite has one namespace per file; the engines refuse a schema option
        return '"' + table.replace('"', '""') + '"'

    def table_exists(self, schema: str | None, table: str) -> bool:
        rows = self.query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s", (table,)
        )
        return bool(rows)

    def table_names(self) -> set[str]:
        rows = self.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        return {name for (name,) in rows}

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection.execute(sql.replace("%s", "?"), tuple(params)).fetchall()
        except sqlite3.OperationalError as error:
            raise self._translated(error) from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        try:
            self._connection.execute(sql.replace("%s", "?"), tuple(params))
        except sqlite3.OperationalError as error:
            raise self._translated(error) from None

    def _translated(self, error: sqlite3.OperationalError) -> Exception:
        if _is_busy(error):
            return self._lock_timeout_error()
        return DatabaseUnavailable(f"SQLite database {self._path}: {error}")

    def _lock_timeout_error(self) -> LockTimeout:
        return LockTimeout(
            f"another runner held the write lock on SQLite database {self._path} for "
            f"more than {self._lock_timeout:g}s; wait for it, or raise --lock-timeout"
        )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise self._translated(error) from None
        try:
            yield
        except BaseException:
            if self._connection.in_transaction:  # some errors already rolled back
                self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    @contextmanager
    def run_lock(self, key: str | int, timeout: float) -> Iterator[None]:
        del key, timeout  # each transaction() takes the write lock; see the module docstring
        yield

    @contextmanager
    def durable_at_end(self) -> Iterator[None]:
        yield  # each SQLite commit is durable on its own; nothing to share

    def split(self, script: str) -> list[Statement]:
        return split_statements(script, SQLITE)

    def execute_statement(self, statement: Statement) -> None:
        try:
            self._connection.execute(statement.text)
        except sqlite3.Error as error:
            raise StatementFailed(
                str(error), sqlstate=getattr(error, "sqlite_errorname", None)
            ) from None

    def apply_units(self, units: Sequence[MigrationUnit]) -> Generator[int | None, None, None]:
        return apply_one_by_one(self, units)

    def close(self) -> None:
        self._connection.close()


def open_database(
    url: str, *, read_only: bool, connect_timeout: float, lock_timeout: float
) -> SqliteDatabase:
    del connect_timeout  # a local file opens at once
    path = sqlite_path(url)
    try:
        if read_only:
            # A plan must not create the file; a missing file reads as an empty database.
            target = (
                f"file:{quote(Path(path).as_posix())}?mode=ro"
                if Path(path).exists()
                else ":memory:"
            )
            connection = sqlite3.connect(
                target, uri=True, timeout=lock_timeout, isolation_level=None
            )
        else:
            connection = sqlite3.connect(path, timeout=lock_timeout, isolation_level=None)
    except sqlite3.Error as error:
        raise DatabaseUnavailable(f"cannot open SQLite database {path}: {error}") from None
    return SqliteDatabase(connection, path, lock_timeout)
