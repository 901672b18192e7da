"""The knex engine through the `stagecraft` command: a Job's view of success and failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.engines.knex_projects import copy_fixture_project, js_migration
from tests.support.postgres_server import PASSWORD


def stagecraft(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stagecraft", *args, "--output", "json"],
        check=False,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=cwd,
        timeout=120,
    )


def document(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def test_run_applies_the_fixture_project_then_reports_a_failure_with_exit_code_1(
    postgres_url: str, tmp_path: Path
) -> None:
    folder = copy_fixture_project(tmp_path / "app")
    target = ["--engine", "knex", "--path", "migrations", "--database-url", postgres_url]
    applied = stagecraft("migrate", "run", *target, cwd=folder.parent)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert len(document(applied)["applied"]) == 4

    (folder / "20240106000000_broken.js").write_text(
        js_migration("ALTER TABLE users ADD COLUMN email text"), encoding="utf-8"
    )
    failed = stagecraft("migrate", "run", *target, cwd=folder.parent)
    assert failed.returncode == 1
    error = document(failed)["error"]
    assert (error["type"], error["migration"]) == ("MigrationFailed", "20240106000000_broken.js")
    assert error["database_message"] == 'column "email" of relation "users" already exists'
    assert error["sqlstate"] == "42701"
    assert PASSWORD not in failed.stdout + failed.stderr
