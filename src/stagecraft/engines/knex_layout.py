"""The knex engine's options and where they put things: folders, project root, knexfile.

Relative paths resolve against the project root, as Knex resolves them against its working
directory, which Stagecraft's knexfile makes the project root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from annotated_types import MinLen

from . import knex_cli
from .base import Migration
from .errors import InvalidOptions
from .knex_folder import DEFAULT_LOAD_EXTENSIONS, find_knex_migrations
from .options import FORBID_UNKNOWN_FIELDS

ENGINE_ID = "knex"


# A list in YAML; `--option load_extensions=.js,.ts` gives one comma-separated string.
Names = str | tuple[str, ...]


def names(value: Names) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


@dataclass(frozen=True)
class KnexOptions:
    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_UNKNOWN_FIELDS

    table: Annotated[str, MinLen(1)] = "knex_migrations"  # migrations.tableName
    schema: Annotated[str, MinLen(1)] | None = None  # migrations.schemaName
    # The folder holding node_modules and the knexfile; default: the nearest one at or above
    # the migrations folder with Knex installed (an application image's project root).
    project_root: str | None = None
    knex_bin: str | None = None  # default: <project_root>/node_modules/knex/bin/cli.js
    knexfile: str | None = None  # default: knexfile.js (or .mjs, .ts...) in the project root
    environment: str | None = None  # the knexfile's environment; default: NODE_ENV or development
    node: Annotated[str, MinLen(1)] = "node"
    url_env: Annotated[str, MinLen(1)] = "DATABASE_URL"  # the variable the knexfile reads
    extra_directories: Names = ()  # more migration folders (migrations.directory as a list)
    load_extensions: Names = DEFAULT_LOAD_EXTENSIONS
    sort_dirs_separately: bool = False
    # Knex's own default, which Knex users expect: the whole batch in one transaction, all or
    # nothing (docs/decisions.md). False commits each migration on its own, so that a failure
    # keeps what succeeded before it.
    single_transaction: bool = True


@dataclass(frozen=True)
class Layout:
    """Where everything is, with relative paths resolved the way Knex resolves them."""

    project_root: Path
    directories: tuple[Path, ...]
    knexfile: Path | None
    knex_bin: Path | None
    load_extensions: tuple[str, ...]
    sort_dirs_separately: bool

    def migrations(self) -> list[Migration]:
        return find_knex_migrations(
            self.directories, self.load_extensions, sort_dirs_separately=self.sort_dirs_separately
        )


def layout_of(folder: Path, options: KnexOptions) -> Layout:
    folder = folder.resolve()
    if options.project_root:
        root = Path(options.project_root).resolve()
    else:
        root = knex_cli.find_project_root(folder) or folder.parent
    extra = tuple((root / directory).resolve() for directory in names(options.extra_directories))
    knexfile = (root / options.knexfile).resolve() if options.knexfile else None
    if knexfile is not None and not knexfile.is_file():
        raise InvalidOptions(ENGINE_ID, [("knexfile", f"{knexfile} does not exist")])
    return Layout(
        project_root=root,
        directories=(folder, *extra),
        knexfile=knexfile or knex_cli.find_knexfile(root),
        knex_bin=(root / options.knex_bin) if options.knex_bin else None,
        load_extensions=names(options.load_extensions),
        sort_dirs_separately=options.sort_dirs_separately,
    )
