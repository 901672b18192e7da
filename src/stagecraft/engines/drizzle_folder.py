"""A Drizzle migrations folder: `meta/_journal.json`, one `<tag>.sql` per entry, and its chunks.

Everything here mirrors drizzle-orm's `readMigrationFiles` (migrator.js): the journal lists the
migrations in the order they run; each file is read whole, hashed, and cut on every occurrence of
`--> statement-breakpoint` (a plain substring split, whatever the journal's `breakpoints` flag
says). What Drizzle leaves unchecked is checked here, with errors naming the file at fault.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import scripts
from .base import Migration
from .database import Database
from .errors import MigrationSourceError
from .sqlsplit import Statement, line_and_column, line_start_offsets

JOURNAL = Path("meta") / "_journal.json"
BREAKPOINT = "--> statement-breakpoint"

# Journal dialect names per Stagecraft dialect. drizzle-kit before 0.21 wrote "pg"; "turso" is
# libSQL, whose migrations are SQLite's.
JOURNAL_DIALECTS: dict[str, frozenset[str]] = {
    "postgresql": frozenset({"postgresql", "pg"}),
    "sqlite": frozenset({"sqlite", "turso"}),
}


@dataclass(frozen=True)
class DrizzleMigration(Migration):
    """A journal entry with its file. `when` is the entry's generation time in milliseconds,
    which Drizzle records as `created_at` and compares to decide what is pending."""

    when: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "when": self.when}


@dataclass(frozen=True)
class Journal:
    path: Path
    dialect: str | None
    migrations: tuple[DrizzleMigration, ...]

    def check_dialect(self, database_dialect: str) -> None:
        """A folder generated for another database must not run: its SQL would be wrong there."""
        accepted = JOURNAL_DIALECTS.get(database_dialect, frozenset())
        if self.dialect is not None and self.dialect not in accepted:
            raise MigrationSourceError(
                f"{self.path}: the journal's dialect is {self.dialect!r}, but the database is "
                f"{database_dialect}; point the migrations path at the folder drizzle-kit "
                f"generated for {database_dialect}, or use a {self.dialect} database URL",
                self.path,
            )


def drizzle_hash(data: bytes) -> str:
    """The `hash` Drizzle records: sha256 of the file as Node reads it into a string.

    Node replaces bytes that are not UTF-8 with U+FFFD before hashing (Python's "replace"
    decoding gives the same string), so only such files differ from a plain sha256 of the bytes.
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        data = data.decode("utf-8", "replace").encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def read_journal(folder: Path) -> Journal:
    """Read the journal and every file it names; a missing or unusable one stops everything,
    as in Drizzle, which reads all files before it runs any."""
    path = folder / JOURNAL
    document = _load_journal(folder, path)
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise _malformed(path, '"entries" must be a list of migrations')
    dialect = document.get("dialect")
    if dialect is not None and not isinstance(dialect, str):
        raise _malformed(path, '"dialect" must be a string such as "postgresql"')
    migrations: list[DrizzleMigration] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        tag, when = _entry_fields(path, index, entry)
        if tag in seen:
            raise _malformed(path, f"entries[{index}] repeats the tag {tag!r}; tags must be unique")
        seen.add(tag)
        migrations.append(_read_migration(folder, path, tag, when))
    return Journal(path=path, dialect=dialect, migrations=tuple(migrations))


def _load_journal(folder: Path, path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        where = "does not exist" if not folder.is_dir() else f"has no {JOURNAL}"
        raise MigrationSourceError(
            f"Drizzle migrations folder {folder} {where}; point the migrations path at "
            "drizzle-kit's `out` folder (the one holding meta/_journal.json)",
            path,
        ) from None
    except OSError as error:
        raise MigrationSourceError(f"cannot read {path}: {error.strerror}", path) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise _malformed(path, f"not valid JSON at line {error.lineno}: {error.msg}") from None
    except UnicodeDecodeError:
        raise _malformed(path, "not valid UTF-8 text") from None
    if not isinstance(document, dict):
        raise _malformed(path, "expected an object with an `entries` list")
    return document


def _entry_fields(path: Path, index: int, entry: object) -> tuple[str, int]:
    if not isinstance(entry, dict):
        raise _malformed(path, f"entries[{index}] must be an object with `tag` and `when`")
    tag, when = entry.get("tag"), entry.get("when")
    if not isinstance(tag, str) or not tag:
        raise _malformed(path, f"entries[{index}].tag must be the migration's file name stem")
    if isinstance(when, float) and math.isfinite(when) and when.is_integer():
        when = int(when)
    if not isinstance(when, int) or isinstance(when, bool):
        raise _malformed(
            path,
            f"entries[{index}] ({tag}): `when` must be a whole number of milliseconds since "
            f"the epoch, got {when!r}",
        )
    return tag, when


def _sql_path(folder: Path, tag: str) -> Path:
    make_child = getattr(folder, "_make_child_relpath", None)
    if make_child is None or "/" in tag or "\\" in tag:
        return folder / f"{tag}.sql"
    # What Path.iterdir uses, which neither parses nor interns the name again: a plan builds a
    # path per entry, and this is a fifth of the time of `folder / name`.
    child: Path = make_child(f"{tag}.sql")
    return child


def _read_migration(folder: Path, journal: Path, tag: str, when: int) -> DrizzleMigration:
    sql_path = _sql_path(folder, tag)
    try:
        data = scripts.read_file(sql_path)
    except FileNotFoundError:
        raise MigrationSourceError(
            f"{journal} lists migration {tag!r}, but {sql_path} does not exist; restore the "
            "file, or remove the entry with `drizzle-kit drop`",
            sql_path,
        ) from None
    except OSError as error:
        raise MigrationSourceError(
            f"cannot read migration file {sql_path}: {error.strerror}", sql_path
        ) from None
    return DrizzleMigration(id=tag, path=sql_path, checksum=drizzle_hash(data), when=when)


def _malformed(path: Path, problem: str) -> MigrationSourceError:
    return MigrationSourceError(
        f"{path} is not a valid Drizzle journal: {problem}; regenerate it with drizzle-kit "
        "or fix it by hand",
        path,
    )


def statements_by_chunk(database: Database, script: str, path: Path) -> list[Statement]:
    """The statements Drizzle would run, each placed where it starts in the whole file.

    Drizzle sends each chunk between breakpoints to the database as it is. A chunk may hold
    several statements, which PostgreSQL's simple protocol runs in order; splitting the chunk
    runs the same statements in the same order, on every dialect, and lets an error name its own
    statement. A breakpoint is never looked through: one that cuts a statement (inside a
    dollar-quoted body, a string, a comment or parentheses) makes the migration fail under
    Drizzle, so it is refused here, before anything runs, naming both positions.
    """
    line_starts = line_start_offsets(script)
    chunks = script.split(BREAKPOINT)
    statements: list[Statement] = []
    chunk_start = 0
    for number, chunk in enumerate(chunks, start=1):
        line, column = line_and_column(line_starts, chunk_start)
        found = database.split(chunk + _SENTINEL)
        if found and found[-1].text == _SENTINEL_TEXT:
            found.pop()
        elif number < len(chunks):
            cut = _shifted(found[-1], chunk_start, line, column)
            raise _cut_statement(path, line_starts, chunk_start + len(chunk), cut)
        statements += [_shifted(s, chunk_start, line, column) for s in found]
        chunk_start += len(chunk) + len(BREAKPOINT)
    return statements


# Appended to each chunk: the splitter returns it as a statement of its own only when the chunk
# ends outside any quote, comment or parenthesis, that is when the chunk is complete.
_SENTINEL_TEXT = "SELECT 1"
_SENTINEL = f"\n;{_SENTINEL_TEXT}"


def _shifted(statement: Statement, chunk_start: int, line: int, column: int) -> Statement:
    """A statement found in a chunk, placed in the whole file."""
    return Statement(
        text=statement.text,
        offset=chunk_start + statement.offset,
        line=line + statement.line - 1,
        column=statement.column + (column - 1 if statement.line == 1 else 0),
    )


def _cut_statement(
    path: Path, line_starts: list[int], breakpoint_offset: int, cut: Statement
) -> MigrationSourceError:
    line, column = line_and_column(line_starts, breakpoint_offset)
    return MigrationSourceError(
        f"{path}:{line}:{column}: this `{BREAKPOINT}` cuts the statement that starts at line "
        f"{cut.line}, column {cut.column} (it falls inside a quoted string, a dollar-quoted body, "
        "a comment or parentheses); Drizzle sends the two parts separately, so the migration "
        "fails under Drizzle too. Move the breakpoint after the end of the statement",
        path,
    )
