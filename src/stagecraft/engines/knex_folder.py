"""Knex's migration folders as Knex itself lists them: which files count and in what order.

Knex (FsMigrations) reads every configured directory, keeps the entries whose extension is in
`loadExtensions` (so `.mjs` only when a project asks for it), and sorts the file names of all
directories together with JavaScript's `<`, which compares UTF-16 code units; with
`sortDirsSeparately` it sorts each directory on its own and keeps the directories' order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from . import scripts
from .base import Migration
from .errors import MigrationSourceError

DEFAULT_LOAD_EXTENSIONS = (
    ".co",
    ".coffee",
    ".eg",
    ".iced",
    ".js",
    ".cjs",
    ".litcoffee",
    ".ls",
    ".ts",
)

# `exports.config = { transaction: false }` (or `export const config = ...`): Knex then runs the
# migration outside any transaction. Read from the text for the plan; Knex decides at run time.
_NO_TRANSACTION = re.compile(rb"config\s*=\s*\{[^}]*\btransaction\s*:\s*false\b", re.DOTALL)


def javascript_order(name: str) -> bytes:
    """A sort key equal to JavaScript's string `<`: UTF-16 code units, compared big-endian."""
    return name.encode("utf-16-be", "surrogatepass")


def node_extname(name: str) -> str:
    """Node's `path.extname` for a bare file name: a leading dot does not start an extension."""
    dot = name.rfind(".")
    if dot <= 0 or name.strip(".") == "":
        return ""
    return name[dot:]


def _entries(directory: Path) -> list[str]:
    try:
        return [entry.name for entry in os.scandir(directory)]
    except FileNotFoundError:
        raise MigrationSourceError(
            f"Knex migrations folder {directory} does not exist; check migrations.path (or "
            "--path) and the engine option extra_directories",
            directory,
        ) from None
    except NotADirectoryError:
        raise MigrationSourceError(
            f"Knex migrations path {directory} is not a folder", directory
        ) from None
    except PermissionError:
        raise MigrationSourceError(
            f"cannot read Knex migrations folder {directory}: permission denied", directory
        ) from None


def find_knex_migrations(
    directories: Sequence[Path],
    load_extensions: Sequence[str] = DEFAULT_LOAD_EXTENSIONS,
    *,
    sort_dirs_separately: bool = False,
) -> list[Migration]:
    """Every migration Knex would see, in Knex's order; contents are read later, if pending."""
    listed: list[tuple[str, Path]] = []
    for directory in directories:
        names = _entries(directory)
        if sort_dirs_separately:
            names.sort(key=javascript_order)
        listed += [(name, directory) for name in names]
    if not sort_dirs_separately:
        listed.sort(key=lambda entry: javascript_order(entry[0]))  # stable, as lodash's sortBy
    wanted = set(load_extensions)
    migrations: list[Migration] = []
    seen: dict[str, Path] = {}
    for name, directory in listed:
        if node_extname(name) not in wanted:
            continue
        if name in seen:
            raise MigrationSourceError(
                f"{name} is in two Knex migration folders ({seen[name]} and {directory}); Knex "
                "records migrations by file name alone, so rename one of them",
                directory / name,
            )
        seen[name] = directory
        migrations.append(Migration(id=name, path=directory / name, checksum=None))
    return migrations


def with_contents(migration: Migration) -> Migration:
    """The migration with its checksum and transaction mode, read from its file."""
    assert migration.path is not None
    try:
        data = scripts.read_file(migration.path)  # a plan reads every pending file: no stat first
    except IsADirectoryError:
        raise MigrationSourceError(
            f"{migration.path} is a folder named like a migration; Knex would try to load it as "
            "one: rename it or move it out of the migrations folder",
            migration.path,
        ) from None
    except OSError as error:
        raise MigrationSourceError(
            f"cannot read migration file {migration.path}: {error.strerror}; check its permissions",
            migration.path,
        ) from None
    return replace(
        migration,
        checksum=scripts.sha256_hex(data),
        transactional=_NO_TRANSACTION.search(data) is None,
    )
