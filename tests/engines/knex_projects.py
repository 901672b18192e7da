"""Knex projects for the tests: a folder with node_modules (the real Knex 3.3.0 and pg from
tools/node), migrations and optionally a knexfile; and the real Knex CLI run inside one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "tools" / "node" / "node_modules"
KNEX_CLI = NODE_MODULES / "knex" / "bin" / "cli.js"
FIXTURE_PROJECT = Path(__file__).parent / "fixtures" / "knex" / "project"
NODE_TIMEOUT = 120


def js_migration(sql: str, *, transaction: bool | None = None) -> str:
    """A migration whose `up` runs one SQL text through knex.raw."""
    config = (
        f"exports.config = {{ transaction: {json.dumps(transaction)} }};\n"
        if transaction is not None
        else ""
    )
    return (
        f"{config}exports.up = (knex) => knex.raw({json.dumps(sql)});\n"
        "exports.down = () => Promise.resolve();\n"
    )


def make_project(root: Path, migrations: Mapping[str, str], knexfile: str | None = None) -> Path:
    """A project folder with the real node_modules; returns its migrations folder."""
    (root / "migrations").mkdir(parents=True)
    (root / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    for name, text in migrations.items():
        (root / "migrations" / name).write_text(text, encoding="utf-8")
    if knexfile is not None:
        (root / "knexfile.js").write_text(knexfile, encoding="utf-8")
    return root / "migrations"


def copy_fixture_project(root: Path) -> Path:
    """The committed fixture project, copied so tests can add and remove files; its migrations."""
    shutil.copytree(FIXTURE_PROJECT, root)
    (root / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    return root / "migrations"


def knex(project: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real Knex CLI in the project, reading the URL from DATABASE_URL as its knexfile does."""
    return subprocess.run(
        ["node", str(KNEX_CLI), *args],
        cwd=project,
        env={**os.environ, "DATABASE_URL": url, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
