"""The real kopf operator over HTTP against the emulator, with Jobs run for real on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stagecraft.operator.manifests import (
    MigrationSource,
    ResourceIdentity,
    RunnerSettings,
    job_manifest,
    target_hash,
)
from stagecraft.operator.validation import validate_spec
from tests.operator.harness import RUNNER_IMAGE, Cluster, condition_of, is_true
from tests.support.postgres_server import PostgresServer

APP_IMAGE = "registry.example/shop-api:41"


def _image_with_migrations(root: Path, files: Mapping[str, str]) -> Path:
    """A folder that plays the application image: its migrations live in /app/migrations."""
    folder = root / "app" / "migrations"
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    return root


def _spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "migrations": {"engine": "raw", "path": "/app/migrations"},
        "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        "deployment": {"name": "shop-api", "containers": ["api"]},
    }
    spec.update(overrides)
    return spec


GOOD_MIGRATIONS = {
    "0001_customers.sql": "CREATE TABLE customers (id integer PRIMARY KEY);",
    "0002_orders.sql": "CREATE TABLE orders (id integer PRIMARY KEY);",
}


async def _application(
    cluster: Cluster, root: Path, database_url: str, files: Mapping[str, str]
) -> None:
    """The application's image, its Deployment and the Secret with the database URL."""
    cluster.jobs.images[APP_IMAGE] = _image_with_migrations(root, files)
    await cluster.create_secret("shop-db", {"url": database_url})
    await cluster.create_deployment("shop-api", {"api": APP_IMAGE})


async def test_created_resource_is_migrated_by_its_job_and_becomes_ready(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path / "image", postgres_url, GOOD_MIGRATIONS)

    await cluster.apply_database_migration("shop-db", _spec())
    status = await cluster.wait_for_status("shop-db", is_true("Ready"))

    assert [entry["id"] for entry in status["lastRun"]["applied"]] == [
        "0001_customers.sql",
        "0002_orders.sql",
    ]
    assert status["lastRun"]["result"] == "Succeeded"
    assert status["pending"] == 0
    assert status["observedGeneration"] == 1
    assert condition_of(status, "Stalled")["status"] == "False"
    assert len(cluster.jobs_of("shop-db")) == 1
    with psycopg.connect(postgres_url) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    assert {"customers", "orders"} <= {row[0] for row in tables}
    assert await cluster.wait_for_event_reasons("shop-db", 2) == [
        ("RunStarted", "Normal"),
        ("RunSucceeded", "Normal"),
    ]
    metrics = cluster.metrics.render().splitlines()
    assert 'stagecraft_runs_succeeded_total{engine="raw",namespace="shop"} 1' in metrics
    assert 'stagecraft_migration_duration_seconds_count{engine="raw"} 2' in metrics
    assert 'stagecraft_pending_migrations{namespace="shop",name="shop-db"} 0' in metrics


async def test_failing_sql_stalls_with_the_migration_file_and_database_message(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    files = {
        "0001_customers.sql": "CREATE TABLE customers (id integer PRIMARY KEY);",
        "0002_broken.sql": "CREATE TABLE orders (id integer PRIMARY KEY",
    }
    await _application(cluster, tmp_path / "image", postgres_url, files)

    await cluster.apply_database_migration("shop-db", _spec())
    status = await cluster.wait_for_status("shop-db", is_true("Stalled"))

    stalled = condition_of(status, "Stalled")
    assert stalled["reason"] == "MigrationFailed"
    assert "0002_broken.sql" in stalled["message"]
    assert "syntax error" in stalled["message"]
    assert condition_of(status, "Ready")["status"] == "False"
    failure = status["lastRun"]["failure"]
    assert failure["migration"] == "0002_broken.sql"
    assert failure["file"].endswith("/0002_broken.sql")
    assert failure["sqlstate"] == "42601"
    assert [entry["id"] for entry in status["lastRun"]["applied"]] == ["0001_customers.sql"]
    assert len(cluster.jobs.runner_runs()) == 1  # a failed migration is not retried blindly


async def test_invalid_spec_stalls_without_a_job(cluster: Cluster) -> None:
    spec = _spec(migrations={"engine": "flyway", "path": "/app/migrations"})

    await cluster.apply_database_migration("shop-db", spec)
    status = await cluster.wait_for_status("shop-db", is_true("Stalled"))

    stalled = condition_of(status, "Stalled")
    assert stalled["reason"] == "InvalidSpec"
    assert "spec.migrations.engine: unknown migration engine 'flyway'" in stalled["message"]
    assert "registered engines: " in stalled["message"]
    assert status["observedGeneration"] == 1
    assert cluster.jobs_of("shop-db") == []


async def test_restarted_operator_adopts_the_running_job_instead_of_starting_another(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path / "image", postgres_url, GOOD_MIGRATIONS)
    cluster.jobs.released.clear()  # the Job is created but its pod does not start yet

    await cluster.apply_database_migration("shop-db", _spec())
    await cluster.wait_for_status("shop-db", is_true("Reconciling"))
    await cluster.restart_operator()
    cluster.jobs.released.set()
    status = await cluster.wait_for_status("shop-db", is_true("Ready"))

    assert len(cluster.jobs_of("shop-db")) == 1
    assert len(cluster.jobs.runner_runs()) == 1
    assert status["lastRun"]["job"] == cluster.jobs_of("shop-db")[0]["metadata"]["name"]


async def test_operator_stopped_before_recording_its_job_adopts_it_instead_of_starting_another(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path / "image", postgres_url, GOOD_MIGRATIONS)
    cluster.jobs.released.clear()
    await cluster.stop_operator()
    spec = _spec(image=APP_IMAGE)
    del spec["deployment"]
    await cluster.apply_database_migration("shop-db", spec)
    # The Job an operator created just before it stopped, before it could write the status.
    stored = cluster.database_migration("shop-db")
    validated = validate_spec(spec).spec
    assert validated is not None
    source = MigrationSource(image=APP_IMAGE)
    identity = ResourceIdentity("shop", "shop-db", stored["metadata"]["uid"])
    runner = RunnerSettings(image=RUNNER_IMAGE)
    manifest = job_manifest(identity, validated, source, target_hash(validated, source), runner)
    await cluster.create("batch", "jobs", manifest)
    assert stored.get("status") is None

    await cluster.start_operator()
    cluster.jobs.released.set()
    status = await cluster.wait_for_status("shop-db", is_true("Ready"))

    assert len(cluster.jobs_of("shop-db")) == 1
    assert len(cluster.jobs.runner_runs()) == 1
    assert status["lastRun"]["job"] == manifest["metadata"]["name"]
    assert [entry["id"] for entry in status["lastRun"]["applied"]] == list(GOOD_MIGRATIONS)
    assert await cluster.wait_for_event_reasons("shop-db", 1) == [("RunSucceeded", "Normal")]


async def test_job_deleted_after_its_result_was_recorded_is_not_run_again(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path / "image", postgres_url, GOOD_MIGRATIONS)
    await cluster.apply_database_migration("shop-db", _spec())
    await cluster.wait_for_status("shop-db", is_true("Ready"))
    (job,) = cluster.jobs_of("shop-db")

    await cluster.emulator.remove_object("batch", "jobs", "shop", job["metadata"]["name"])
    # A spec change that leaves the target alone makes the operator look again, and the new
    # observedGeneration tells when it has.
    await cluster.patch_spec("shop-db", {"job": {"backoffLimit": 3}})
    status = await cluster.wait_for_status(
        "shop-db", lambda status: status.get("observedGeneration") == 2
    )

    assert condition_of(status, "Ready")["status"] == "True"
    assert cluster.jobs_of("shop-db") == []
    assert len(cluster.jobs.runner_runs()) == 1


async def test_no_credential_reaches_a_job_spec_status_termination_message_or_log(
    cluster: Cluster, postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password = postgres_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert password  # the fixture's URL carries a real password
    files = {**GOOD_MIGRATIONS, "0003_broken.sql": "SELECT * FROM missing_table;"}
    await _application(cluster, tmp_path / "image", postgres_url, files)

    with caplog.at_level(logging.DEBUG):
        await cluster.apply_database_migration("shop-db", _spec())
        status = await cluster.wait_for_status("shop-db", is_true("Stalled"))

    assert "missing_table" in json.dumps(status)
    await cluster.wait_for_event_reasons("shop-db", 2)  # RunStarted, RunFailed
    seen = {
        "jobs": json.dumps(cluster.jobs_of("shop-db")),
        "status": json.dumps(cluster.database_migration("shop-db")),
        "pods": json.dumps(cluster.emulator.stored_objects("", "pods", "shop")),
        "events": json.dumps(cluster.emulator.stored_objects("", "events", "shop")),
        "runner output": json.dumps([run.log for run in cluster.jobs.runs]),
        "operator log": "\n".join(record.getMessage() for record in caplog.records),
    }
    for where, text in seen.items():
        assert password not in text, where
    assert "secretKeyRef" in seen["jobs"]
    assert "RunFailed" in seen["events"]


async def test_fixed_migration_is_applied_after_a_retry_request(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    files = {**GOOD_MIGRATIONS, "0003_broken.sql": "CREATE TABLE invoices (id integer"}
    await _application(cluster, tmp_path / "image", postgres_url, files)
    await cluster.apply_database_migration("shop-db", _spec())
    await cluster.wait_for_status("shop-db", is_true("Stalled"))

    fixed = cluster.jobs.images[APP_IMAGE] / "app" / "migrations" / "0003_broken.sql"
    fixed.write_text("CREATE TABLE invoices (id integer);", encoding="utf-8")  # same tag, new push
    await cluster.annotate("shop-db", {"stagecraft.dev/retry": "after-fix"})
    status = await cluster.wait_for_status("shop-db", is_true("Ready"))

    assert [entry["id"] for entry in status["lastRun"]["applied"]] == ["0003_broken.sql"]
    assert status["lastRun"]["attempt"] == 2
    assert status["handledRetry"] == "after-fix"
    assert len(cluster.jobs_of("shop-db")) == 2
    assert [reason for reason, _ in await cluster.wait_for_event_reasons("shop-db", 4)] == [
        "RunStarted",
        "RunFailed",
        "RunStarted",
        "RunSucceeded",
    ]


def _run_admin_sql(server: PostgresServer, sql: str) -> None:
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(sql.encode())


async def test_unreachable_database_recovers_by_itself_once_it_is_back(
    cluster: Cluster, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    database = f"later_{uuid.uuid4().hex[:12]}"
    await _application(cluster, tmp_path / "image", postgres_server.url(database), GOOD_MIGRATIONS)
    await cluster.apply_database_migration("shop-db", _spec(job={"backoffLimit": 0}))
    waiting = await cluster.wait_for_status(
        "shop-db",
        lambda status: condition_of(status, "Reconciling").get("reason") == "RetryScheduled",
    )
    assert condition_of(waiting, "Stalled")["status"] == "False"
    assert waiting["lastRun"]["failure"]["error"] == "DatabaseUnavailable"

    # Hold the next attempts while the database comes back, so the retry limit cannot run out
    # on a slow machine before it is there.
    cluster.jobs.released.clear()
    await asyncio.to_thread(_run_admin_sql, postgres_server, f'CREATE DATABASE "{database}"')
    cluster.jobs.released.set()
    try:
        status = await cluster.wait_for_status("shop-db", is_true("Ready"))
    finally:
        drop = f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'
        await asyncio.to_thread(_run_admin_sql, postgres_server, drop)

    assert status["lastRun"]["attempt"] >= 2
    assert status.get("nextRetryAt") is None
    assert [entry["id"] for entry in status["lastRun"]["applied"]] == list(GOOD_MIGRATIONS)


async def test_manual_strategy_waits_then_runs_once_per_request(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path / "image", postgres_url, GOOD_MIGRATIONS)
    manual = {"engine": "raw", "path": "/app/migrations", "strategy": "manual"}
    await cluster.apply_database_migration("shop-db", _spec(migrations=manual))
    waiting = await cluster.wait_for_status(
        "shop-db", lambda status: status.get("observedGeneration") == 1
    )
    assert condition_of(waiting, "Ready")["reason"] == "WaitingForRunRequest"
    assert condition_of(waiting, "Reconciling")["status"] == "False"
    assert cluster.jobs_of("shop-db") == []

    await cluster.annotate("shop-db", {"stagecraft.dev/run-request": "first"})
    first = await cluster.wait_for_status(
        "shop-db",
        lambda status: status.get("handledRunRequest") == "first" and is_true("Ready")(status),
    )
    assert [entry["id"] for entry in first["lastRun"]["applied"]] == list(GOOD_MIGRATIONS)

    await cluster.annotate("shop-db", {"stagecraft.dev/run-request": "second"})
    second = await cluster.wait_for_status(
        "shop-db",
        lambda status: status.get("handledRunRequest") == "second" and is_true("Ready")(status),
    )
    assert second["lastRun"]["applied"] == []  # nothing was pending the second time
    assert len(cluster.jobs.runner_runs()) == 2


async def test_new_application_image_runs_its_new_migrations(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path / "v41", postgres_url, GOOD_MIGRATIONS)
    await cluster.apply_database_migration("shop-db", _spec())
    first = await cluster.wait_for_status("shop-db", is_true("Ready"))
    newer = {**GOOD_MIGRATIONS, "0003_invoices.sql": "CREATE TABLE invoices (id integer);"}
    cluster.jobs.images["registry.example/shop-api:42"] = _image_with_migrations(
        tmp_path / "v42", newer
    )

    await cluster.set_deployment_image("shop-api", "api", "registry.example/shop-api:42")
    status = await cluster.wait_for_status(
        "shop-db",
        lambda status: status.get("targetHash") != first["targetHash"] and is_true("Ready")(status),
    )

    assert [entry["id"] for entry in status["lastRun"]["applied"]] == ["0003_invoices.sql"]
    assert len(cluster.jobs_of("shop-db")) == 2
    assert status["pending"] == 0


async def test_missing_deployment_is_waited_for_until_it_appears(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    cluster.jobs.images[APP_IMAGE] = _image_with_migrations(tmp_path / "image", GOOD_MIGRATIONS)
    await cluster.create_secret("shop-db", {"url": postgres_url})
    await cluster.apply_database_migration("shop-db", _spec())
    waiting = await cluster.wait_for_status(
        "shop-db", lambda status: condition_of(status, "Ready").get("reason") is not None
    )
    assert condition_of(waiting, "Ready")["reason"] == "WaitingForDeployment"
    assert condition_of(waiting, "Stalled")["status"] == "False"
    assert cluster.jobs_of("shop-db") == []

    await cluster.create_deployment("shop-api", {"api": APP_IMAGE})
    status = await cluster.wait_for_status("shop-db", is_true("Ready"))

    assert [entry["id"] for entry in status["lastRun"]["applied"]] == list(GOOD_MIGRATIONS)


async def test_config_map_files_are_migrated_and_an_edit_runs_again(
    cluster: Cluster, postgres_url: str
) -> None:
    await cluster.create_secret("shop-db", {"url": postgres_url})
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "shop-migrations"},
        "data": {"0001_customers.sql": "CREATE TABLE customers (id integer PRIMARY KEY);"},
    }
    await cluster.create("", "configmaps", config_map)
    spec = _spec(configMap={"name": "shop-migrations"})
    del spec["deployment"]

    await cluster.apply_database_migration("shop-db", spec)
    first = await cluster.wait_for_status("shop-db", is_true("Ready"))
    assert [entry["id"] for entry in first["lastRun"]["applied"]] == ["0001_customers.sql"]

    await cluster.update_config_map(
        "shop-migrations", {"0002_orders.sql": "CREATE TABLE orders (id integer PRIMARY KEY);"}
    )
    second = await cluster.wait_for_status(
        "shop-db",
        lambda status: status.get("targetHash") != first["targetHash"] and is_true("Ready")(status),
    )
    assert [entry["id"] for entry in second["lastRun"]["applied"]] == ["0002_orders.sql"]


async def test_a_spec_mistake_stalls_without_losing_the_record_of_the_last_run(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path / "image", postgres_url, GOOD_MIGRATIONS)
    await cluster.apply_database_migration("shop-db", _spec())
    ready = await cluster.wait_for_status("shop-db", is_true("Ready"))
    (job,) = cluster.jobs_of("shop-db")
    await cluster.emulator.remove_object("batch", "jobs", "shop", job["metadata"]["name"])

    await cluster.patch_spec("shop-db", {"migrations": {"engine": "flyway"}})
    stalled = await cluster.wait_for_status(
        "shop-db", lambda status: status.get("observedGeneration") == 2
    )
    assert condition_of(stalled, "Stalled")["reason"] == "InvalidSpec"
    assert stalled["lastRun"] == ready["lastRun"]

    await cluster.patch_spec("shop-db", {"migrations": {"engine": "raw"}})
    fixed = await cluster.wait_for_status(
        "shop-db", lambda status: status.get("observedGeneration") == 3
    )
    assert condition_of(fixed, "Ready")["status"] == "True"
    assert fixed["lastRun"] == ready["lastRun"]
    assert cluster.jobs_of("shop-db") == []
    assert len(cluster.jobs.runner_runs()) == 1
