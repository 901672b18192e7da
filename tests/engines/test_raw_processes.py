"""Real runner processes: concurrency, SIGKILL in the middle of a migration, bounded lock waits."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from stagecraft.engines.postgres import advisory_lock_key
from tests.conftest import FolderWriter

STAGECRAFT = [sys.executable, "-m", "stagecraft"]
pytestmark = pytest.mark.slow


def runner(folder: Path, url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *STAGECRAFT,
            "migrate",
            "run",
            "--path",
            str(folder),
            "--database-url",
            url,
            "--output",
            "json",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: object, timeout: float = 30.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_eight_concurrent_runners_apply_each_migration_exactly_once(
    database_url: str, write_folder: FolderWriter
) -> None:
    count = 25
    folder = write_folder(
        {
            f"{i:03d}_m.sql": f"CREATE TABLE t{i} (id int);\nINSERT INTO t{i} VALUES ({i});"
            for i in range(count)
        }
    )
    processes = [runner(folder, database_url) for _ in range(8)]
    documents = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, (stdout, stderr)
        documents.append(json.loads(stdout))
    applied = [entry["id"] for document in documents for entry in document["applied"]]
    assert sorted(applied) == [f"{i:03d}_m.sql" for i in range(count)]
    check = subprocess.run(
        [
            *STAGECRAFT,
            "migrate",
            "plan",
            "--path",
            str(folder),
            "--database-url",
            database_url,
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    plan = json.loads(check.stdout)
    assert plan["pending"] == []
    assert len(plan["applied"]) == count


def test_a_runner_killed_mid_migration_leaves_no_record_and_the_next_run_succeeds(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as control:
        control.execute("CREATE TABLE test_control (seconds int)")
        control.execute("INSERT INTO test_control VALUES (3600)")
        folder = write_folder(
            {
                "1.sql": "CREATE TABLE before_kill (id int);",
                "2.sql": (
                    "CREATE TABLE during_kill (id int);\n"
                    "SELECT pg_sleep((SELECT seconds FROM test_control));\n"
                ),
            }
        )
        process = runner(folder, postgres_url)

        def sleeping() -> bool:
            row = control.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%'"
            ).fetchone()
            return bool(row and row[0])

        wait_until(sleeping)
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
        control.execute("UPDATE test_control SET seconds = 0")
        tables = {
            name
            for (name,) in control.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
        assert "during_kill" not in tables
        recorded = control.execute("SELECT version FROM stagecraft_migrations").fetchall()
        assert recorded == [("1.sql",)]
    second = runner(folder, postgres_url)
    stdout, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr
    assert [entry["id"] for entry in json.loads(stdout)["applied"]] == ["2.sql"]


def test_the_lock_wait_is_bounded_on_postgres(
    postgres_url: str, write_folder: FolderWriter
) -> None:
    folder = write_folder({"1.sql": "CREATE TABLE t (id int);"})
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        holder.execute(
            "SELECT pg_advisory_lock(%s)", (advisory_lock_key("stagecraft:.stagecraft_migrations"),)
        )
        process = runner(folder, postgres_url, "--lock-timeout", "1")
        stdout, _ = process.communicate(timeout=60)
        no_wait = runner(folder, postgres_url, "--lock-timeout", "0")
        no_wait_stdout, _ = no_wait.communicate(timeout=60)
    assert no_wait.returncode == 3, "--lock-timeout 0 must not wait forever"
    assert json.loads(no_wait_stdout)["error"]["type"] == "LockTimeout"
    assert process.returncode == 3
    document = json.loads(stdout)
    assert document["error"]["type"] == "LockTimeout"
    assert "for more than 1s" in document["error"]["message"]
    assert document["applied"] == []


def test_the_lock_wait_is_bounded_on_sqlite(tmp_path: Path, write_folder: FolderWriter) -> None:
    database = tmp_path / "locked.db"
    folder = write_folder({"1.sql": "CREATE TABLE t (id int);"})
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        process = runner(folder, f"sqlite:///{database}", "--lock-timeout", "0.5")
        stdout, _ = process.communicate(timeout=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert process.returncode == 3
    assert json.loads(stdout)["error"]["type"] == "LockTimeout"
