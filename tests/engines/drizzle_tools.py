"""Running the real Drizzle tools (drizzle-orm's migrator, drizzle-kit) from the tests."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "tools" / "node" / "node_modules"
MIGRATE_SCRIPT = Path(__file__).parent / "node" / "drizzle_migrate.cjs"
DRIZZLE_KIT = NODE_MODULES / "drizzle-kit" / "bin.cjs"
NODE_TIMEOUT = 120


@dataclass(frozen=True)
class DrizzleJob:
    url: str
    folder: Path
    table: str | None = None
    schema: str | None = None


@dataclass(frozen=True)
class DrizzleOutcome:
    ok: bool
    error: str | None = None
    code: str | None = None


def _node_env() -> dict[str, str]:
    return {**os.environ, "NODE_PATH": str(NODE_MODULES)}


def drizzle_orm_migrate(*jobs: DrizzleJob) -> list[DrizzleOutcome]:
    """Run drizzle-orm's `migrate(db, {migrationsFolder})` for each job, in one node process."""
    spec = [
        {"url": job.url, "folder": str(job.folder), "table": job.table, "schema": job.schema}
        for job in jobs
    ]
    done = subprocess.run(
        ["node", str(MIGRATE_SCRIPT), json.dumps(spec)],
        capture_output=True,
        text=True,
        env=_node_env(),
        timeout=NODE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [DrizzleOutcome(**json.loads(line)) for line in done.stdout.splitlines()]


def drizzle_kit_migrate(job: DrizzleJob, work: Path) -> subprocess.CompletedProcess[str]:
    """Run `drizzle-kit migrate` with a drizzle.config.js written for the job."""
    migrations: dict[str, str] = {}
    if job.table:
        migrations["table"] = job.table
    if job.schema:
        migrations["schema"] = job.schema
    config = {
        "dialect": "postgresql",
        "out": str(job.folder),
        "dbCredentials": {"url": job.url},
        "migrations": migrations,
    }
    work.mkdir(parents=True, exist_ok=True)
    config_path = work / "drizzle.config.js"
    config_path.write_text(f"module.exports = {json.dumps(config)};\n", encoding="utf-8")
    return subprocess.run(
        ["node", str(DRIZZLE_KIT), "migrate", "--config", str(config_path)],
        capture_output=True,
        text=True,
        cwd=work,
        env=_node_env(),
        timeout=NODE_TIMEOUT,
        check=False,
    )
