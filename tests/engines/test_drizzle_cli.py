"""The drizzle engine through the `stagecraft` command, as a Job or a developer runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import FolderWriter
from tests.engines.drizzle_folders import BASE_WHEN, GENERATED, write_drizzle_folder
from tests.support.postgres_server import PASSWORD


def stagecraft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stagecraft", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def drizzle(command: str, folder: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return stagecraft(
        "migrate", command, "--engine", "drizzle", "--path", str(folder), "--database-url", url,
        *extra,
    )  # fmt: skip


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


def test_the_generated_folder_runs_into_the_configured_table_and_then_shows_applied(
    postgres_url: str,
) -> None:
    table = ("--option", "migrations_table=history", "--option", "migrations_schema=ops")
    ran = drizzle("run", GENERATED, postgres_url, *table, "--output", "json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert [a["id"] for a in as_json(ran)["applied"]] == [
        "0000_init",
        "0001_posts",
        "0002_touch_trigger",
    ]
    status = as_json(drizzle("status", GENERATED, postgres_url, *table, "--output", "json"))
    assert {m["state"] for m in status["migrations"]} == {"applied"}
    default_table = as_json(drizzle("plan", GENERATED, postgres_url, "--output", "json"))
    assert len(default_table["pending"]) == 3


def test_an_entry_drizzle_would_never_apply_refuses_the_run_with_exit_code_4(
    sqlite_url: str, write_folder: FolderWriter
) -> None:
    first = write_drizzle_folder(
        write_folder, [("0001_b", "SELECT 1;")], dialect="sqlite", whens=[BASE_WHEN + 5]
    )
    assert drizzle("run", first, sqlite_url).returncode == 0
    merged = write_drizzle_folder(
        write_folder,
        [("0001_b", "SELECT 1;"), ("0002_a", "SELECT 2;")],
        dialect="sqlite",
        whens=[BASE_WHEN + 5, BASE_WHEN + 1],
    )
    refused = drizzle("run", merged, sqlite_url)
    assert refused.returncode == 4
    assert "0002_a" in refused.stderr + refused.stdout
    assert "Drizzle never will apply it" in refused.stderr + refused.stdout


def test_a_bad_journal_is_invalid_input_and_no_password_is_printed(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"meta/_journal.json": '{"dialect": "mysql", "entries": []}'})
    done = drizzle("plan", folder, postgres_url)
    assert done.returncode == 2
    assert "the journal's dialect is 'mysql'" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
