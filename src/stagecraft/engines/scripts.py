"""SQL migration files: reading, checksums, decoding, directives and execution with positions.

Shared by the engines whose migrations are SQL (raw, drizzle, prisma).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .base import Migration
from .database import Database, StatementFailed
from .errors import MigrationFailed, MigrationSourceError, SqlFailure
from .sqlsplit import Statement, line_and_column, line_start_offsets

NO_TRANSACTION = "no-transaction"
KNOWN_DIRECTIVES = frozenset({NO_TRANSACTION})
_DIRECTIVE = re.compile(rb"^[ \t]*--[ \t]*stagecraft:([A-Za-z0-9_-]+)[ \t]*\r?$", re.M)
_TRANSACTION_CONTROL = frozenset({"BEGIN", "START", "COMMIT", "ROLLBACK", "END", "SAVEPOINT"})
STATEMENT_EXCERPT = 200
_READ_SIZE = 64 * 1024


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_file(path: Path) -> bytes:
    """The file's bytes; OSError as os.open and os.read raise it.

    Plain os calls, not Path.read_bytes: a plan reads every file of the folder, and the buffered
    file object costs more system calls and twice the time for the small files migrations are.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(descriptor, _READ_SIZE)]
        while chunks[-1]:
            chunks.append(os.read(descriptor, _READ_SIZE))
    finally:
        os.close(descriptor)
    return b"".join(chunks)


def read_bytes(path: Path) -> bytes:
    try:
        return read_file(path)
    except OSError as error:
        raise MigrationSourceError(
            f"cannot read migration file {path}: {error.strerror}; check its permissions", path
        ) from None


def directives(path: Path, data: bytes) -> frozenset[str]:
    """`-- stagecraft:NAME` lines of a file; an unknown name is an error (a typo must not pass)."""
    if b"stagecraft:" not in data:
        return frozenset()
    found = frozenset(match.group(1).decode() for match in _DIRECTIVE.finditer(data))
    unknown = sorted(found - KNOWN_DIRECTIVES)
    if unknown:
        raise MigrationSourceError(
            f"{path}: unknown directive `-- stagecraft:{unknown[0]}`; known directives: "
            + ", ".join(f"`-- stagecraft:{name}`" for name in sorted(KNOWN_DIRECTIVES)),
            path,
        )
    return found


def decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise MigrationSourceError(
            f"{path}:{line}: not valid UTF-8 (byte {error.start}); save the file as UTF-8", path
        ) from None


def prepare(database: Database, migration: Migration, script: str) -> list[Statement]:
    """Split a migration into statements and refuse transaction control inside a transaction."""
    statements = database.split(script)
    if migration.transactional:
        refuse_transaction_control(
            migration, statements, f"or mark the file `-- stagecraft:{NO_TRANSACTION}`"
        )
    return statements


def refuse_transaction_control(
    migration: Migration, statements: list[Statement], alternative: str = ""
) -> None:
    """A COMMIT inside a migration would commit it apart from its tracking row, which is exactly
    the half-applied state the per-migration transaction exists to prevent."""
    for statement in statements:
        if statement.keyword in _TRANSACTION_CONTROL:
            raise MigrationSourceError(
                f"{migration.path}:{statement.line}:{statement.column}: {statement.keyword} "
                "controls the transaction, but Stagecraft already runs each migration in one; "
                f"remove it{', ' + alternative if alternative else ''}",
                migration.path,
            )


def execute(
    database: Database,
    migration: Migration,
    script: str,
    statements: list[Statement],
    *,
    dirty_on_failure: bool = False,
    resolve_hint: str = "",
) -> None:
    """Run the statements in order; a failure raises MigrationFailed with the file position."""
    for statement in statements:
        try:
            database.execute_statement(statement)
        except StatementFailed as failed:
            raise MigrationFailed(
                migration.id,
                migration.path,
                failure_at(script, statement, failed),
                dirty=dirty_on_failure,
                resolve_hint=resolve_hint,
            ) from None


def failure_in(script: str, statement: Statement | None, failed: StatementFailed) -> SqlFailure:
    """Where a migration failed: at a statement, or (None) around its statements, such as the
    insert of its tracking row or its COMMIT, which have no place in the file."""
    if statement is not None:
        return failure_at(script, statement, failed)
    return SqlFailure(
        message=failed.message, sqlstate=failed.sqlstate, detail=failed.detail, hint=failed.hint
    )


def failure_at(script: str, statement: Statement, failed: StatementFailed) -> SqlFailure:
    line, column = statement.line, statement.column
    if failed.position is not None:
        line, column = line_and_column(
            line_start_offsets(script), statement.offset + min(failed.position, len(statement.text))
        )
    excerpt = statement.text
    if len(excerpt) > STATEMENT_EXCERPT:
        excerpt = excerpt[:STATEMENT_EXCERPT] + "..."
    return SqlFailure(
        message=failed.message,
        sqlstate=failed.sqlstate,
        detail=failed.detail,
        hint=failed.hint,
        line=line,
        column=column,
        statement=excerpt,
    )
