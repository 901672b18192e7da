"""The real kopf operator over HTTP against the emulator, with Jobs run for real on PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg

from tests.operator.harness import Cluster, condition_of, is_true

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


async def test_created_resource_is_migrated_by_its_job_and_becomes_ready(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    cluster.jobs.images[APP_IMAGE] = _image_with_migrations(
        tmp_path / "image",
        {
            "0001_customers.sql": "CREATE TABLE customers (id integer PRIMARY KEY);",
            "0002_orders.sql": "CREATE TABLE orders (id integer PRIMARY KEY);",
        },
    )
    await cluster.create_secret("shop-db", {"url": postgres_url})
    await cluster.create_deployment("shop-api", {"api": APP_IMAGE})

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
