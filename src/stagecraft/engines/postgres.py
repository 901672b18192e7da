"""PostgreSQL through psycopg 3: advisory locks with a bounded wait, errors with positions."""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.pq import TransactionStatus

from .database import ColumnTypes, MigrationUnit, StatementFailed
from .errors import DatabaseUnavailable, LockTimeout
from .sqlsplit import POSTGRES, Statement, split_statements
from .urls import redact_url, scrub

LOCK_NOT_AVAILABLE = "55P03"
CLIENT_CHECK_SINCE = 140000  # client_connection_check_interval exists from PostgreSQL 14
CLIENT_CHECK_MS = 1000
QUERY_CANCELED = "57014"


def advisory_lock_key(name: str) -> int:
    """A signed 64-bit key derived from a name, as pg_advisory_lock expects."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _connection_lost(error: psycopg.Error) -> bool:
    # Class 08 is "connection exception"; 57P0x are shutdowns; no sqlstate means the
    # client lost the socket. All are worth retrying once the database is back.
    state = error.sqlstate
    return state is None or state.startswith("08") or state in {"57P01", "57P02", "57P03"}


class PostgresDatabase:
    dialect = "postgresql"
    supports_schemas = True
    exclusive_run_lock = True  # a session advisory lock held for the whole run
    now_sql = "now()"
    types = ColumnTypes(
        text="text", integer="integer", bigint="bigint", boolean="boolean", timestamp="timestamptz"
    )

    def __init__(self, connection: psycopg.Connection[Any], url: str) -> None:
        self._connection = connection
        self._cursor = connection.cursor()
        self._url = url

    def _unavailable(self, error: psycopg.Error) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"lost the connection to {redact_url(self._url)}: {scrub(str(error), self._url)}"
        )

    def qualified(self, schema: str | None, table: str) -> str:
        parts = [schema, table] if schema else [table]
        return ".".join(pgsql.Identifier(part).as_string(None) for part in parts)

    def table_exists(self, schema: str | None, table: str) -> bool:
        rows = self.query("SELECT to_regclass(%s) IS NOT NULL", (self.qualified(schema, table),))
        return bool(rows[0][0])

    def table_names(self) -> set[str]:
        rows = self.query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {name for (name,) in rows}

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            self._cursor.execute(sql.encode(), params or None)
            return self._cursor.fetchall()
        except psycopg.Error as error:
            if _connection_lost(error):
                raise self._unavailable(error) from None
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        try:
            self._cursor.execute(sql.encode(), params or None)
        except psycopg.Error as error:
            if _connection_lost(error):
                raise self._unavailable(error) from None
            raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._connection.transaction():
            yield

    @contextmanager
    def run_lock(self, key: str | int, timeout: float) -> Iterator[None]:
        # A session lock: it survives the per-migration commits and dies with the connection,
        # so a killed runner never leaves it behind. lock_timeout bounds the wait in the server.
        # An integer is used as it is: a compatible engine takes its tool's own fixed key (Prisma's
        # 72707369) so that the tool and Stagecraft exclude each other.
        lock_id = key if isinstance(key, int) else advisory_lock_key(key)
        # At least 1 ms: PostgreSQL reads lock_timeout = 0 as "wait forever".
        self.execute(f"SET lock_timeout = {max(1, int(timeout * 1000))}")
        try:
            self.execute("SELECT pg_advisory_lock(%s)", (lock_id,))
        except psycopg.Error as error:
            if error.sqlstate == LOCK_NOT_AVAILABLE:
                raise LockTimeout(
                    f"another runner has held the migration lock on {redact_url(self._url)} "
                    f"for more than {timeout:g}s; wait for it to finish, or raise --lock-timeout"
                ) from None
            raise
        finally:
            self.execute("RESET lock_timeout")
        try:
            yield
        finally:
            if not self._connection.closed and not self._connection.broken:
                self.execute("SELECT pg_advisory_unlock(%s)", (lock_id,))

    @contextmanager
    def durable_at_end(self) -> Iterator[None]:
        # A commit normally waits for its WAL to reach the disk: one flush per migration, the
        # largest cost of applying small migrations. With synchronous_commit off a crash of the
        # server can lose the last commits, but each whole (a migration with its row), never
        # half; the closing commit below, with the session's own setting back, waits for the WAL
        # up to it, which covers every earlier commit: nothing is reported durable before it is.
        setting = self.query("SHOW synchronous_commit")[0][0]
        self.execute("SET synchronous_commit = off")
        try:
            yield
        finally:
            self._restore_durability(setting)

    def _restore_durability(self, setting: str) -> None:
        connection = self._connection
        if connection.closed or connection.broken:
            return  # nothing more can be committed on it; the server flushes on its own
        status = connection.info.transaction_status
        if status == TransactionStatus.INERROR:
            # A no-transaction script failed inside its own BEGIN: that block is lost anyway.
            self.execute("ROLLBACK")
        elif status != TransactionStatus.IDLE:
            return  # the script left its own transaction open: not ours to end
        self.execute(f"SET synchronous_commit = {pgsql.quote(setting)}")
        with self.transaction():
            # A commit waits for the WAL only if its transaction wrote some: a transactional
            # logical message is the smallest write there is, and its flush covers every
            # earlier commit of the run.
            self.execute("SELECT pg_logical_emit_message(true, 'stagecraft', 'durable')")

    def split(self, script: str) -> list[Statement]:
        return split_statements(script, POSTGRES)

    def execute_statement(self, statement: Statement) -> None:
        try:
            # No parameters: psycopg sends the text as it is, so a % in the SQL stays literal.
            self._cursor.execute(statement.text.encode())
        except psycopg.Error as error:
            if _connection_lost(error):
                raise self._unavailable(error) from None
            diag = error.diag
            position = diag.statement_position
            raise StatementFailed(
                diag.message_primary or str(error).strip(),
                sqlstate=error.sqlstate,
                detail=diag.message_detail,
                hint=diag.message_hint,
                position=int(position) - 1 if position else None,
            ) from None

    def apply_units(self, units: Sequence[MigrationUnit]) -> Generator[int | None, None, None]:
        # Imported here: plans, which never apply anything, need not pay for it.
        from .postgres_pipeline import UnitPipeline

        connection = self._connection
        render = psycopg.ClientCursor(connection).mogrify
        encoding = connection.info.encoding
        pipeline = UnitPipeline(
            connection.pgconn,
            encoding=encoding,
            render=lambda command: render(command.sql, command.params or None).encode(encoding),
            abandon=connection.close,
        )
        try:
            yield from pipeline.apply(units)
        except psycopg.Error as error:
            if _connection_lost(error) or connection.closed:
                raise self._unavailable(error) from None
            raise

    def close(self) -> None:
        self._connection.close()


def open_database(
    url: str, *, read_only: bool, connect_timeout: float, lock_timeout: float
) -> PostgresDatabase:
    try:
        connection = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=max(1, int(connect_timeout)),
            application_name="stagecraft",
        )
    except psycopg.Error as error:
        raise DatabaseUnavailable(
            f"cannot connect to {redact_url(url)}: {scrub(str(error), url).strip()}"
        ) from None
    if read_only:
        connection.execute("SET default_transaction_read_only = on")
    if connection.info.server_version >= CLIENT_CHECK_SINCE:
        # A runner killed mid-migration (SIGKILL, OOM, a deleted pod) must not leave its
        # statement running on the server, holding the migration lock and table locks until
        # it ends: make the server notice the vanished client and roll back within a second.
        connection.execute(f"SET client_connection_check_interval = {CLIENT_CHECK_MS}")
    del lock_timeout  # PostgreSQL bounds the wait per lock, in run_lock
    return PostgresDatabase(connection, url)
