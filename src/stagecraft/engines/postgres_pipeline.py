"""Many migrations without a round trip each on PostgreSQL: libpq's pipeline mode.

Each migration goes out as BEGIN, a check that no other runner recorded it (where others may
write the table), its statements, the INSERT of its tracking row and COMMIT, and the next one
follows without waiting for results; one Sync ends the lot. The server runs them in order and
commits each at its COMMIT. After the first error it skips everything up to the Sync, later
transactions included, so nothing after a failed migration runs; the results, which come back
in order, say which statement failed, with its position.
"""

from __future__ import annotations

import re
import select
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

import psycopg
from psycopg import pq

from .database import MigrationUnit, SqlCommand, StatementFailed, UnitFailed
from .sqlsplit import Statement

# The check divides by zero when the migration is recorded: one statement that fails, and so
# stops the migration's transaction before its statements run, exactly when it must be skipped.
_RECORDED_CHECK = "SELECT 1 / (NOT EXISTS ({query}))::integer"
DIVISION_BY_ZERO = "22012"
_CLIENT_SIDE = re.compile(r"\b(STDIN|STDOUT)\b", re.I)
_DONE = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY)


class Step(Enum):
    BEGIN = "BEGIN"
    CHECK = "the check that no other runner recorded it"
    STATEMENT = "statement"
    RECORD = "the INSERT of its tracking row"
    COMMIT = "COMMIT"
    SYNC = "sync"


@dataclass(frozen=True)
class _Sent:
    unit: int
    step: Step
    statement: Statement | None = None


@dataclass(frozen=True)
class _Error:
    sent: _Sent
    failure: StatementFailed


def refuse_copy_from_client(units: Sequence[MigrationUnit]) -> None:
    """COPY FROM STDIN (or TO STDOUT) waits for data the client would have to send: a migration
    file has none, and in a pipeline it would stall every migration after it."""
    for index, unit in enumerate(units):
        for statement in unit.statements:
            if statement.keyword == "COPY" and _CLIENT_SIDE.search(statement.text):
                raise UnitFailed(
                    index,
                    statement,
                    StatementFailed(
                        "COPY ... FROM STDIN / TO STDOUT needs a client that sends or reads the "
                        "data; load the data with INSERT, or COPY from a file on the server"
                    ),
                )


class UnitPipeline:
    """Applies units through one connection in pipeline mode; see the module's docstring."""

    def __init__(
        self,
        pgconn: pq.abc.PGconn,
        *,
        encoding: str,
        render: Callable[[SqlCommand], bytes],
        abandon: Callable[[], None],
    ) -> None:
        self._pg = pgconn
        self._encoding = encoding
        self._render = render  # a command with its parameters inlined as SQL literals
        self._abandon = abandon  # close the connection: the server rolls back what is open
        self._sent: deque[_Sent] = deque()
        self._sent_at: dict[int, float] = {}
        self._last_done = 0.0
        self._error: _Error | None = None

    def apply(self, units: Sequence[MigrationUnit]) -> Generator[int | None, None, None]:
        refuse_copy_from_client(units)
        start = 0
        while start < len(units):
            # A skipped migration ends a round: the server skipped the ones after it as well.
            start = yield from self._round(units, start)

    def _round(
        self, units: Sequence[MigrationUnit], start: int
    ) -> Generator[int | None, None, int]:
        pg = self._pg
        pg.enter_pipeline_mode()
        pg.nonblocking = 1
        self._error = None
        self._last_done = time.perf_counter()
        settled = False
        try:
            for index in range(start, len(units)):
                self._send_unit(index, units[index])
                yield from self._outcomes(block=False)
                if self._stopped_by() is not None:
                    break
            self._send(b"", _Sent(-1, Step.SYNC))
            yield from self._outcomes(block=True)
            self._drain()
            settled = True
        finally:
            if not settled:
                # Interrupted (the caller stopped, the connection failed): do not wait for
                # migrations still queued on the server; closing rolls back the open one.
                self._abandon()
        self._leave_pipeline()
        error = self._stopped_by()
        if error is None:
            return len(units)
        if error.sent.step is Step.CHECK and error.failure.sqlstate == DIVISION_BY_ZERO:
            yield None  # recorded by another runner meanwhile: skipped, nothing of it committed
            return error.sent.unit + 1
        raise UnitFailed(error.sent.unit, error.sent.statement, self._described(error))

    def _stopped_by(self) -> _Error | None:
        return self._error

    def _described(self, error: _Error) -> StatementFailed:
        if error.sent.step is Step.STATEMENT:
            return error.failure
        failure = error.failure
        return StatementFailed(
            f"{error.sent.step.value} failed: {failure.message}",
            sqlstate=failure.sqlstate,
            detail=failure.detail,
            hint=failure.hint,
        )

    def _send_unit(self, index: int, unit: MigrationUnit) -> None:
        self._sent_at[index] = time.perf_counter()
        self._send(b"BEGIN", _Sent(index, Step.BEGIN))
        if unit.recorded is not None:
            query = self._render(unit.recorded).decode(self._encoding)
            check = _RECORDED_CHECK.format(query=query).encode(self._encoding)
            self._send(check, _Sent(index, Step.CHECK))
        for statement in unit.statements:
            self._send(statement.text.encode(), _Sent(index, Step.STATEMENT, statement))
        self._send(self._render(unit.record), _Sent(index, Step.RECORD))
        self._send(b"COMMIT", _Sent(index, Step.COMMIT))
        # Results come back as each migration commits, not only at the Sync.
        self._pg.send_flush_request()
        self._pg.flush()

    def _send(self, sql: bytes, sent: _Sent) -> None:
        if sent.step is Step.SYNC:
            self._pg.pipeline_sync()
        else:
            self._pg.send_query_params(sql, None)
        self._sent.append(sent)

    def _outcomes(self, *, block: bool) -> Iterator[int]:
        """The durations (ms) of the migrations that committed, in order, as far as their results
        have come (all of them, if `block`); none after an error."""
        while (duration := self._next_outcome(block=block)) is not None:
            yield duration

    def _next_outcome(self, *, block: bool) -> int | None:
        while self._error is None and self._sent and self._sent[0].step is not Step.SYNC:
            taken = self._take(block=block)
            if taken is None:
                return None
            sent, result = taken
            if result.status not in _DONE:
                self._error = _Error(sent, self._failure(result))
            elif sent.step is Step.COMMIT:
                now = time.perf_counter()
                started = max(self._sent_at.pop(sent.unit), self._last_done)
                self._last_done = now
                return round((now - started) * 1000)
        return None

    def _take(self, *, block: bool) -> tuple[_Sent, pq.abc.PGresult] | None:
        """The next command's result; None if it has not arrived and `block` is false."""
        pg = self._pg
        while pg.is_busy():
            writing = pg.flush() == 1
            readable, _, _ = select.select(
                [pg.socket], [pg.socket] if writing else [], [], None if block else 0
            )
            if readable:
                pg.consume_input()
            elif not block:
                return None
        result = pg.get_result()
        if result is None:
            raise psycopg.OperationalError(self._text(pg.error_message) or "connection lost")
        sent = self._sent.popleft()
        if result.status != pq.ExecStatus.PIPELINE_SYNC:
            pg.get_result()  # the empty result that ends each command's results
        return sent, result

    def _drain(self) -> None:
        """Read every result still due, up to and including the Sync's."""
        while self._sent:
            taken = self._take(block=True)
            assert taken is not None
            sent, result = taken
            if result.status not in _DONE and sent.step is not Step.SYNC and not self._error:
                self._error = _Error(sent, self._failure(result))

    def _leave_pipeline(self) -> None:
        pg = self._pg
        pg.nonblocking = 0
        pg.exit_pipeline_mode()
        if pg.transaction_status != pq.TransactionStatus.IDLE:
            # The failed (or skipped) migration's transaction: the server skipped its COMMIT.
            pg.exec_(b"ROLLBACK")

    def _failure(self, result: pq.abc.PGresult) -> StatementFailed:
        if result.status == pq.ExecStatus.FATAL_ERROR and self._pg.status == pq.ConnStatus.BAD:
            raise psycopg.OperationalError(self._text(result.error_message) or "connection lost")
        field = pq.DiagnosticField
        position = self._text(result.error_field(field.STATEMENT_POSITION))
        return StatementFailed(
            self._text(result.error_field(field.MESSAGE_PRIMARY))
            or self._text(result.error_message)
            or f"unexpected result {pq.ExecStatus(result.status).name}",
            sqlstate=self._text(result.error_field(field.SQLSTATE)),
            detail=self._text(result.error_field(field.MESSAGE_DETAIL)),
            hint=self._text(result.error_field(field.MESSAGE_HINT)),
            position=int(position) - 1 if position else None,
        )

    def _text(self, value: bytes | None) -> str | None:
        return value.decode(self._encoding, "replace").strip() if value else None
