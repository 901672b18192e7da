"""Running the real Prisma CLI 6.19.3 offline from the tests, and reading what it wrote.

Prisma 6.19.3 runs without downloading engines through its WebAssembly schema engine and a
driver adapter (tests/engines/node/prisma/prisma.config.ts); the adapter sends each
migration.sql as one query, as Prisma's native engine does (whole_script_adapter.cjs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
PRISMA_CLI = ROOT / "tools" / "node" / "node_modules" / "prisma" / "build" / "index.js"
HELPERS = Path(__file__).parent / "node" / "prisma"
# Without it every `migrate deploy` idles 10 s before exiting (see the file).
UNREF_LONG_TIMERS = HELPERS / "unref_long_timers.cjs"
FIXTURE = Path(__file__).parent / "fixtures" / "prisma" / "generated"
NODE_TIMEOUT = 120
MIGRATION_COLUMNS = (
    "id",
    "checksum",
    "finished_at",
    "migration_name",
    "logs",
    "rolled_back_at",
    "started_at",
    "applied_steps_count",
)
# Prisma needs a schema with a datasource; deploy, status and resolve use none of its models.
SCHEMA = """datasource db {
  provider = "postgresql"
  url      = env("DATABASE_URL")
}

generator client {
  provider   = "prisma-client-js"
  engineType = "client"
}
"""


@dataclass(frozen=True)
class PrismaProject:
    """A Prisma project folder whose `migrations` is the folder under test."""

    root: Path
    url: str

    @property
    def migrations(self) -> Path:
        return self.root / "migrations"

    def _command(self, *args: str) -> list[str]:
        return ["node", "--require", str(UNREF_LONG_TIMERS), str(PRISMA_CLI), *args]

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.url,
            "STAGECRAFT_PRISMA_ADAPTER": str(HELPERS / "whole_script_adapter.cjs"),
            "CHECKPOINT_DISABLE": "1",
            "PRISMA_HIDE_UPDATE_MESSAGE": "1",
            "NO_COLOR": "1",
        }

    def prisma(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._command(*args),
            capture_output=True,
            text=True,
            cwd=self.root,
            env=self._env(),
            timeout=NODE_TIMEOUT,
            check=False,
        )

    def start_deploy(self) -> subprocess.Popen[str]:
        """`prisma migrate deploy` in the background, for tests that make it wait."""
        return subprocess.Popen(
            self._command("migrate", "deploy"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.root,
            env=self._env(),
        )

    def deploy(self) -> subprocess.CompletedProcess[str]:
        return self.prisma("migrate", "deploy")

    def status(self) -> subprocess.CompletedProcess[str]:
        return self.prisma("migrate", "status")


def new_project(
    root: Path, url: str, migrations: dict[str, str | bytes] | None = None
) -> PrismaProject:
    """A project in `root`; its migrations folder is a copy of the fixture unless given."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(HELPERS / "prisma.config.ts", root / "prisma.config.ts")
    (root / "schema.prisma").write_text(SCHEMA, encoding="utf-8")
    project = PrismaProject(root, url)
    if migrations is None:
        shutil.copytree(FIXTURE, project.migrations)
    else:
        project.migrations.mkdir()
        for name, content in migrations.items():
            add_file(project.migrations / name, content)
    return project


def add_file(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(sql.encode()).fetchall()


def execute(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.encode())


def migration_rows(url: str) -> list[dict[str, Any]]:
    """`_prisma_migrations` in Prisma's order, as dicts."""
    columns = ", ".join(MIGRATION_COLUMNS)
    order = "ORDER BY started_at, migration_name"  # names break ties of equal start times
    rows = query(url, f"SELECT {columns} FROM _prisma_migrations {order}")
    return [dict(zip(MIGRATION_COLUMNS, row, strict=True)) for row in rows]
