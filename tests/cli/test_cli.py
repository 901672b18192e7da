"""The `stagecraft` command as a process: exit codes, JSON documents, redaction, config mode."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FolderWriter
from tests.support.postgres_server import PASSWORD, PostgresServer, free_port


def stagecraft(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stagecraft", *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def direct(folder: Path, url: str) -> list[str]:
    return ["--path", str(folder), "--database-url", url]


def test_plan_run_status_in_json_follow_the_documented_shape(
    database_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1_a.sql": "CREATE TABLE a (id int);", "2_b.sql": "SELECT 1;"})
    plan = as_json(stagecraft("migrate", "plan", *direct(folder, database_url), "--output", "json"))
    assert plan["kind"] == "plan"
    assert plan["version"] == 1
    assert [m["id"] for m in plan["pending"]] == ["1_a.sql", "2_b.sql"]
    assert plan["blocked"] is False
    run = stagecraft("migrate", "run", *direct(folder, database_url), "--output", "json")
    assert run.returncode == 0
    document = as_json(run)
    assert document["status"] == "succeeded"
    assert document["error"] is None
    assert [a["id"] for a in document["applied"]] == ["1_a.sql", "2_b.sql"]
    assert all(isinstance(a["duration_ms"], int) for a in document["applied"])
    assert document["fingerprint"] == plan["fingerprint"]
    status = as_json(
        stagecraft("migrate", "status", *direct(folder, database_url), "--output", "json")
    )
    assert [(m["id"], m["state"]) for m in status["migrations"]] == [
        ("1_a.sql", "applied"),
        ("2_b.sql", "applied"),
    ]


def test_exit_code_1_for_a_failed_migration_with_its_position_in_json(
    sqlite_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "CREATE TABLE a (id int);\nSELECT nosuch FROM a;"})
    result = stagecraft("migrate", "run", *direct(folder, sqlite_url), "--output", "json")
    assert result.returncode == 1
    error = as_json(result)["error"]
    assert (error["type"], error["migration"], error["line"], error["column"]) == (
        "MigrationFailed",
        "1.sql",
        2,
        1,
    )
    assert "no such column" in error["database_message"]
    assert error["dirty"] is False


def test_exit_code_2_for_invalid_input(sqlite_url: str, tmp_path: Path) -> None:
    missing = stagecraft("migrate", "plan", *direct(tmp_path / "none", sqlite_url))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    unknown = stagecraft("migrate", "plan", "--engine", "flyway", *direct(tmp_path, sqlite_url))
    assert unknown.returncode == 2
    assert "registered engines: " in unknown.stderr
    bad_option = stagecraft("migrate", "plan", "-o", "tabel=x", *direct(tmp_path, sqlite_url))
    assert bad_option.returncode == 2
    assert "tabel: unknown option" in bad_option.stderr
    usage = stagecraft("migrate", "run", "--no-such-flag")
    assert usage.returncode == 2


def test_exit_code_3_when_the_database_is_unreachable_and_no_password_is_shown(
    tmp_path: Path,
) -> None:
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:{free_port()}/shop"
    for output in ("text", "json"):
        result = stagecraft("migrate", "run", *direct(tmp_path, url), "--output", output)
        assert result.returncode == 3
        assert PASSWORD not in result.stdout + result.stderr
        assert "app:***@127.0.0.1" in result.stdout + result.stderr


def test_exit_code_4_when_the_plan_has_problems(
    sqlite_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "SELECT 1;", "3.sql": "SELECT 3;"})
    assert stagecraft("migrate", "run", *direct(folder, sqlite_url)).returncode == 0
    (folder / "2.sql").write_text("SELECT 2;")
    refused = stagecraft("migrate", "run", *direct(folder, sqlite_url), "--output", "json")
    assert refused.returncode == 4
    assert as_json(refused)["error"]["problems"][0]["kind"] == "out_of_order"
    allowed = stagecraft("migrate", "run", *direct(folder, sqlite_url), "--allow-out-of-order")
    assert allowed.returncode == 0
    assert "[1/1] applied 2.sql" in allowed.stdout


def test_an_outdated_reviewed_plan_exits_4(sqlite_url: str, write_folder: FolderWriter) -> None:
    folder = write_folder({"1.sql": "SELECT 1;"})
    result = stagecraft("migrate", "run", *direct(folder, sqlite_url), "--expect-plan", "0000")
    assert result.returncode == 4
    assert "the plan changed since it was reviewed" in result.stderr


def test_text_output_never_shows_the_password(
    postgres_server: PostgresServer, postgres_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "SELECT nosuch;"})
    for command in ("plan", "status", "run"):
        result = stagecraft("migrate", command, *direct(folder, postgres_url))
        assert PASSWORD not in result.stdout + result.stderr
    plan = stagecraft("migrate", "plan", *direct(folder, postgres_url))
    assert "postgres:***@" in plan.stdout


def test_dry_run_and_second_run_messages(sqlite_url: str, write_folder: FolderWriter) -> None:
    folder = write_folder({"1.sql": "CREATE TABLE t (id int);"})
    dry = stagecraft("migrate", "run", *direct(folder, sqlite_url), "--dry-run")
    assert "dry run: 1 migration(s) would be applied" in dry.stdout
    first = stagecraft("migrate", "run", *direct(folder, sqlite_url))
    assert "applied 1 migration(s)" in first.stdout
    second = stagecraft("migrate", "run", *direct(folder, sqlite_url))
    assert "nothing to apply; database is up to date" in second.stdout


def test_resolve_and_baseline_commands(sqlite_url: str, write_folder: FolderWriter) -> None:
    folder = write_folder(
        {
            "1.sql": "CREATE TABLE old (id int);",
            "2.sql": "-- stagecraft:no-transaction\nCREATE TABLE x (id int);\nSELECT nosuch;",
        }
    )
    baseline = stagecraft("migrate", "baseline", *direct(folder, sqlite_url), "--to", "1")
    assert baseline.returncode == 0
    assert "1.sql" in baseline.stdout
    failed = stagecraft("migrate", "run", *direct(folder, sqlite_url))
    assert failed.returncode == 1
    assert "stagecraft migrate resolve --migration 2.sql" in failed.stderr
    no_outcome = stagecraft("migrate", "resolve", *direct(folder, sqlite_url), "-m", "2.sql")
    assert no_outcome.returncode == 2
    resolved = stagecraft(
        "migrate", "resolve", *direct(folder, sqlite_url), "-m", "2.sql", "--applied"
    )
    assert resolved.returncode == 0, resolved.stderr
    assert stagecraft("migrate", "run", *direct(folder, sqlite_url)).returncode == 0


def test_config_mode_reads_the_url_from_connection_env(
    tmp_path: Path, sqlite_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "CREATE TABLE t (id int);"})
    config = tmp_path / "stagecraft.yml"
    config.write_text(
        f"databases:\n  main:\n    connection_env: APP_DB\n"
        f"    migrations: {{engine: raw, path: {folder.name}}}\n"
    )
    unset = stagecraft("migrate", "plan", "--config", str(config), env={"APP_DB": ""})
    assert unset.returncode == 2
    assert "environment variable APP_DB" in unset.stderr
    run = stagecraft("migrate", "run", "-c", str(config), "-d", "main", env={"APP_DB": sqlite_url})
    assert run.returncode == 0, run.stderr
    mixed = stagecraft("migrate", "plan", "-c", str(config), "--engine", "raw")
    assert mixed.returncode == 2


def test_config_validate_and_engines_list(tmp_path: Path) -> None:
    config = tmp_path / "stagecraft.yml"
    config.write_text(
        "databases:\n  main:\n    connection_env: X\n    migrations: {engine: nope, path: m}\n"
    )
    invalid = stagecraft("config", "validate", "--config", str(config))
    assert invalid.returncode == 2
    assert (
        f"{config}:4: databases.main.migrations.engine: unknown migration engine 'nope'"
        in invalid.stderr
    )
    config.write_text(
        "databases:\n  main:\n    connection_env: X\n    migrations: {engine: raw, path: m}\n"
    )
    assert stagecraft("config", "validate", "-c", str(config)).returncode == 0
    engines = as_json(stagecraft("engines", "list", "--output", "json"))
    assert "raw" in engines["engines"]


@pytest.mark.parametrize("args", [["--help"], ["migrate", "--help"], ["--version"]])
def test_help_and_version_answer(args: list[str]) -> None:
    result = stagecraft(*args)
    assert result.returncode == 0
    assert result.stdout


def test_a_terminal_gets_a_live_progress_display(
    sqlite_url: str, write_folder: FolderWriter
) -> None:
    import pty

    folder = write_folder({f"{i}_[draft].sql": "SELECT 1;" for i in range(3)})
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "stagecraft", "migrate", "run", *direct(folder, sqlite_url)],
        stdout=follower,
        stderr=follower,
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the pty closes when the process exits
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=60)
    os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert process.returncode == 0
    assert "applied 2_[draft].sql (" in screen
    assert "applied 3 migration(s)" in screen


def test_status_prints_every_problem_with_its_advice(
    sqlite_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "SELECT 1;"})
    assert stagecraft("migrate", "run", *direct(folder, sqlite_url)).returncode == 0
    (folder / "1.sql").write_text("SELECT 2;")
    status = stagecraft("migrate", "status", *direct(folder, sqlite_url))
    assert re.search(r"^1\.sql\s+edited\s", status.stdout, re.M)
    assert "problem: " in status.stdout
    assert "stagecraft migrate resolve --migration 1.sql --applied" in status.stdout
