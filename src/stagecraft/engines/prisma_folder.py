"""Reading a Prisma Migrate folder as `prisma migrate deploy` does, and Prisma's checksums.

`<migrations>/migration_lock.toml` names the provider; every direct subdirectory is a migration
whose `migration.sql` is its script. Prisma 6 reads the scripts as UTF-8 text in Node.js (bytes
that are not UTF-8 become U+FFFD) and sorts the directories with JavaScript `localeCompare`.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import scripts
from .base import Migration
from .collation import collation_key
from .errors import MigrationSourceError

LOCK_FILE = "migration_lock.toml"
SCRIPT_FILE = "migration.sql"
# Prisma's provider names for the dialects Stagecraft speaks.
PROVIDER_BY_DIALECT = {"postgresql": "postgresql", "sqlite": "sqlite"}


def prisma_checksum(data: bytes) -> str:
    """What Prisma records: the sha256 of the script as Node.js decodes it, in lowercase hex.

    For a valid UTF-8 file this is the sha256 of its bytes. For any other file, Node.js has
    replaced each bad sequence by U+FFFD before Prisma hashed (and ran) the text.
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        data = data.decode("utf-8", errors="replace").encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def _legacy_form(digest: bytes) -> str:
    # Prisma's first checksums printed each byte in hex without zero padding.
    return "".join(f"{byte:x}" for byte in digest)


def checksum_matches(data: bytes, recorded: str) -> bool:
    """Prisma's comparison: line endings may differ (git rewrites them), legacy form accepted."""
    text = data.decode("utf-8", errors="replace").encode("utf-8")
    unix = text.replace(b"\r\n", b"\n")
    variants = (text, unix, unix.replace(b"\n", b"\r\n"))
    for variant in variants:
        digest = hashlib.sha256(variant).digest()
        rendered = digest.hex() if len(recorded) == len(digest.hex()) else _legacy_form(digest)
        if rendered == recorded:
            return True
    return False


@dataclass(frozen=True)
class PrismaFolder:
    path: Path
    provider: str | None  # from migration_lock.toml; None when the file is absent
    migrations: tuple[Migration, ...]  # in Prisma's order (localeCompare)

    def check_provider(self, dialect: str) -> None:
        expected = PROVIDER_BY_DIALECT[dialect]
        if self.provider is not None and self.provider != expected:
            lock_file = self.path / LOCK_FILE
            raise MigrationSourceError(
                f"{lock_file} says these migrations are for provider {self.provider!r}, but the "
                f"database is {expected!r} (Prisma's P3019); point Stagecraft at the database the "
                "migrations were written for, or regenerate the migrations for this provider",
                lock_file,
            )


def read_folder(folder: Path) -> PrismaFolder:
    """The folder's migrations, refused whole if any directory lacks its `migration.sql`."""
    try:
        # Node.js's `Dirent.isDirectory()` is false for a symbolic link, so Prisma skips those.
        directories = [
            entry.name for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False)
        ]
    except FileNotFoundError:
        raise MigrationSourceError(
            f"migrations folder {folder} does not exist; check migrations.path (or --path), "
            "which must name Prisma's `prisma/migrations` folder",
            folder,
        ) from None
    except NotADirectoryError:
        raise MigrationSourceError(f"migrations path {folder} is not a folder", folder) from None
    except PermissionError:
        raise MigrationSourceError(
            f"cannot read migrations folder {folder}: permission denied", folder
        ) from None
    migrations = []
    for name in sorted(directories, key=collation_key):
        script = folder / name / SCRIPT_FILE
        if not script.is_file():
            raise MigrationSourceError(
                f"{folder / name} has no {SCRIPT_FILE}; every folder in a Prisma migrations folder "
                f"is a migration, so nothing was run. Add its {SCRIPT_FILE} or move the folder "
                "out of the migrations folder",
                script,
            )
        migrations.append(
            Migration(id=name, path=script, checksum=prisma_checksum(scripts.read_bytes(script)))
        )
    return PrismaFolder(folder, _read_provider(folder / LOCK_FILE), tuple(migrations))


def _read_provider(lock_file: Path) -> str | None:
    try:
        data = lock_file.read_bytes()
    except FileNotFoundError:
        return None  # Prisma checks nothing without the file
    except OSError as error:
        raise MigrationSourceError(
            f"cannot read {lock_file}: {error.strerror}; check its permissions", lock_file
        ) from None
    try:
        provider = tomllib.loads(data.decode("utf-8")).get("provider")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise MigrationSourceError(
            f"{lock_file} is not valid TOML ({error}); restore the file Prisma wrote, which holds "
            'one line such as `provider = "postgresql"`',
            lock_file,
        ) from None
    if provider is not None and not isinstance(provider, str):
        raise MigrationSourceError(
            f'{lock_file}: `provider` must be a string such as "postgresql"', lock_file
        )
    return provider
