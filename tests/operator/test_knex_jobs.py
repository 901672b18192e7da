"""Knex in a migration Job: Stagecraft's plan, then the project's own Knex CLI in the application
image, then Stagecraft's report; and what the operator makes of each step's failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from stagecraft.operator import knex_job
from stagecraft.operator.manifests import (
    KNEX_CONTAINER,
    KNEX_PLAN_CONTAINER,
    MIGRATIONS_MOUNT,
    RUNNER_CONTAINER,
    MigrationSource,
    ResourceIdentity,
    RunnerSettings,
    job_manifest,
    target_hash,
)
from stagecraft.operator.models import DatabaseMigrationSpec
from stagecraft.operator.runs import observe_job, run_record, verdict_for
from stagecraft.operator.validation import validate_spec
from tests.engines.knex_projects import js_migration, knex, make_project
from tests.operator.harness import Cluster, condition_of, is_true

RESOURCE = ResourceIdentity(namespace="shop", name="shop-db", uid="0b9f6e1c")
SETTINGS = RunnerSettings(image="ghcr.io/stagecraft/stagecraft:0.1.0")
APP_IMAGE = "registry.example/shop-api:41"
KNEXFILE = (
    "module.exports = { client: 'pg', connection: process.env.DATABASE_URL,\n"
    "  migrations: { directory: './migrations' } };\n"
)


def _raw_spec(options: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "migrations": {"engine": "knex", "path": "/app/migrations", "options": options or {}},
        "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        "deployment": {"name": "shop-api", "containers": ["api"]},
    }
    spec.update(overrides)
    return spec


def _pod(options: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = DatabaseMigrationSpec.model_validate(_raw_spec(options))
    source = MigrationSource(image=APP_IMAGE)
    job = job_manifest(RESOURCE, spec, source, target_hash(spec, source), SETTINGS)
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return {**pod, "podFailurePolicy": job["spec"]["podFailurePolicy"]}


def _named(containers: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(container for container in containers if container["name"] == name)


# ---- the pod ---------------------------------------------------------------------------------


def test_knex_job_plans_then_runs_knex_in_the_application_image_then_reports() -> None:
    pod = _pod()

    steps = [container["name"] for container in pod["initContainers"]]
    assert steps == ["copy-migrations", KNEX_PLAN_CONTAINER, KNEX_CONTAINER]
    plan = _named(pod["initContainers"], KNEX_PLAN_CONTAINER)
    assert plan["image"] == SETTINGS.image
    assert "before" in plan["command"]
    assert MIGRATIONS_MOUNT in plan["command"]
    tool = _named(pod["initContainers"], KNEX_CONTAINER)
    assert tool["image"] == APP_IMAGE
    assert tool["command"] == ["node", "node_modules/knex/bin/cli.js", "migrate:latest"]
    assert tool["workingDir"] == "/app"
    assert tool["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert tool["securityContext"]["readOnlyRootFilesystem"] is True
    runner = _named(pod["containers"], RUNNER_CONTAINER)
    assert runner["image"] == SETTINGS.image
    assert "after" in runner["command"]
    assert {"name": "state", "emptyDir": {}} in pod["volumes"]


def test_knex_settings_go_to_knex_and_plan_settings_to_the_plan() -> None:
    options = {
        "table": "schema_history",
        "knexfile": "config/knexfile.js",
        "environment": "production",
        "project_root": "/srv/api",
        "url_env": "PG_URL",
    }
    pod = _pod(options)

    tool = _named(pod["initContainers"], KNEX_CONTAINER)
    assert tool["command"][2:] == [
        "migrate:latest",
        "--knexfile",
        "config/knexfile.js",
        "--env",
        "production",
    ]
    assert tool["workingDir"] == "/srv/api"
    assert {"name": "PG_URL", "value": "$(DATABASE_URL)"} in tool["env"]
    plan = _named(pod["initContainers"], KNEX_PLAN_CONTAINER)
    assert "table=schema_history" in plan["command"]
    assert not any("knexfile" in argument for argument in plan["command"])


@pytest.mark.parametrize(
    ("path", "project_root", "working_dir"),
    [
        ("/app/migrations", None, "/app"),
        ("/app/db/migrations", "..", "/app"),
        ("/app/migrations", "/srv/api", "/srv/api"),
        ("./migrations", None, None),  # the image's own working directory
        ("migrations", None, None),
    ],
)
def test_knex_runs_in_the_project_root_or_the_images_working_directory(
    path: str, project_root: str | None, working_dir: str | None
) -> None:
    options = {"project_root": project_root} if project_root else {}
    spec = DatabaseMigrationSpec.model_validate(
        _raw_spec(options) | {"migrations": {"engine": "knex", "path": path, "options": options}}
    )
    source = MigrationSource(image=APP_IMAGE)
    job = job_manifest(RESOURCE, spec, source, target_hash(spec, source), SETTINGS)

    tool = _named(job["spec"]["template"]["spec"]["initContainers"], KNEX_CONTAINER)
    assert tool.get("workingDir") == working_dir


def test_a_knex_project_root_relative_to_the_images_working_directory_is_refused() -> None:
    spec = _raw_spec() | {"migrations": {"engine": "knex", "path": "app/migrations"}}

    result = validate_spec(spec)

    assert not result.valid
    assert "spec.migrations.path" in result.message
    assert "absolute" in result.message


def test_a_failing_knex_or_a_refused_plan_fails_the_job_without_retries() -> None:
    rules = _pod()["podFailurePolicy"]["rules"]

    by_container = {
        rule["onExitCodes"]["containerName"]: rule["onExitCodes"]
        for rule in rules
        if "onExitCodes" in rule
    }
    assert by_container[KNEX_CONTAINER] == {
        "containerName": KNEX_CONTAINER,
        "operator": "NotIn",
        "values": [0],
    }
    assert by_container[KNEX_PLAN_CONTAINER]["values"] == [1, 2, 4]


def test_knex_from_a_config_map_or_with_extra_directories_is_an_invalid_spec() -> None:
    from_config_map = _raw_spec(configMap={"name": "files"})
    del from_config_map["deployment"]
    result = validate_spec(from_config_map)
    assert not result.valid
    assert "spec.configMap" in result.message
    assert "application image" in result.message

    result = validate_spec(_raw_spec({"extra_directories": ["seeds"]}))
    assert not result.valid
    assert "spec.migrations.options.extra_directories" in result.message


# ---- what the operator reads of each step ----------------------------------------------------


def _failed_job() -> dict[str, Any]:
    return {
        "metadata": {"name": "shop-db-1234567890", "labels": {}},
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "message": "Container knex failed"}]
        },
    }


def _terminated(name: str, code: int, message: str) -> dict[str, Any]:
    return {"name": name, "state": {"terminated": {"exitCode": code, "message": message}}}


def test_knex_failure_is_a_migration_failure_carrying_knexs_output() -> None:
    pod = {
        "metadata": {"creationTimestamp": "2026-11-28T10:00:00Z"},
        "status": {
            "initContainerStatuses": [
                _terminated("copy-migrations", 0, ""),
                _terminated(KNEX_PLAN_CONTAINER, 0, '{"kind":"run","status":"planned"}'),
                _terminated(KNEX_CONTAINER, 1, 'migration file "002_bad.js" failed\nsyntax error'),
            ]
        },
    }
    observed = observe_job(_failed_job(), [pod], RUNNER_CONTAINER, "hash")

    record = run_record(observed)
    assert record.failure is not None
    assert record.failure.error == "MigrationFailed"
    assert record.failure.message.startswith("knex migrate:latest failed: ")
    assert "002_bad.js" in record.failure.message
    assert verdict_for(record).reason == "MigrationFailed"


def test_a_plan_refused_before_knex_is_reported_with_its_problems() -> None:
    document = {
        "kind": "run",
        "status": "failed",
        "applied": [],
        "error": {"type": "RunRefused", "message": "refusing to run Knex: lock held"},
    }
    pod = {
        "metadata": {"creationTimestamp": "2026-11-28T10:00:00Z"},
        "status": {
            "initContainerStatuses": [
                _terminated("copy-migrations", 0, ""),
                _terminated(KNEX_PLAN_CONTAINER, 4, json.dumps(document)),
            ]
        },
    }
    record = run_record(observe_job(_failed_job(), [pod], RUNNER_CONTAINER, "hash"))

    assert record.failure is not None
    assert record.failure.error == "RunRefused"
    assert verdict_for(record).reason == "RunRefused"
    assert "lock held" in verdict_for(record).message


# ---- the steps, on a real PostgreSQL with the real Knex ---------------------------------------


def _step(step: str, migrations: Path, url: str, state: Path) -> tuple[int, dict[str, Any]]:
    module = [sys.executable, "-m", "stagecraft.operator.knex_job"]
    completed = subprocess.run(
        [*module, step, "--path", str(migrations), "--state", str(state)],
        env={"STAGECRAFT_DATABASE_URL": url, "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.returncode, json.loads(completed.stdout)


def test_steps_report_what_knex_applied_between_them(postgres_url: str, tmp_path: Path) -> None:
    migrations = make_project(
        tmp_path / "app",
        {"001_a.js": js_migration("CREATE TABLE a (id int)"), "002_b.js": js_migration("SELECT 1")},
        KNEXFILE,
    )
    state = tmp_path / "plan.json"

    code, planned = _step("before", migrations, postgres_url, state)
    assert (code, planned["status"], planned["pending"]) == (0, "planned", ["001_a.js", "002_b.js"])
    assert knex(tmp_path / "app", postgres_url, "migrate:latest").returncode == 0
    code, report = _step("after", migrations, postgres_url, state)

    assert code == 0, report
    assert report["kind"] == "run"
    assert report["status"] == "succeeded"
    assert [entry["id"] for entry in report["applied"]] == ["001_a.js", "002_b.js"]
    password = urlsplit(postgres_url).password
    assert password
    assert password not in json.dumps(report)


def test_after_fails_when_knex_recorded_nothing_of_the_plan(
    postgres_url: str, tmp_path: Path
) -> None:
    migrations = make_project(tmp_path / "app", {"001_a.js": js_migration("SELECT 1")}, KNEXFILE)
    state = tmp_path / "plan.json"
    _step("before", migrations, postgres_url, state)

    code, report = _step("after", migrations, postgres_url, state)  # Knex never ran

    assert code == knex_job.EXIT_FAILED
    assert report["error"]["type"] == "MigrationFailed"
    assert "001_a.js is not recorded" in report["error"]["message"]


def test_before_refuses_while_knexs_lock_is_held(postgres_url: str, tmp_path: Path) -> None:
    migrations = make_project(tmp_path / "app", {"001_a.js": js_migration("SELECT 1")}, KNEXFILE)
    assert knex(tmp_path / "app", postgres_url, "migrate:latest").returncode == 0
    (migrations / "002_b.js").write_text(js_migration("SELECT 2"), encoding="utf-8")
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("UPDATE knex_migrations_lock SET is_locked = 1")

    code, report = _step("before", migrations, postgres_url, tmp_path / "plan.json")

    assert code == knex_job.EXIT_REFUSED
    assert report["error"]["type"] == "RunRefused"
    assert "knex migrate:unlock" in report["error"]["message"]
    assert not (tmp_path / "plan.json").exists()


# ---- the whole Job, through the real operator ------------------------------------------------


async def _migrate_knex_application(
    cluster: Cluster, root: Path, url: str, migrations: dict[str, str], until: str
) -> dict[str, Any]:
    """A Knex project as the application image, its Deployment and Secret, and its resource;
    the status once condition `until` is true."""
    make_project(root / "app", migrations, KNEXFILE)
    cluster.jobs.images[APP_IMAGE] = root
    await cluster.create_secret("shop-db", {"url": url})
    await cluster.create_deployment("shop-api", {"api": APP_IMAGE})
    await cluster.apply_database_migration("shop-db", _raw_spec())
    return await cluster.wait_for_status("shop-db", is_true(until))


@pytest.mark.xdist_group("knex")
async def test_operator_runs_knex_in_the_application_image_and_becomes_ready(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    migrations = {
        "001_customers.js": js_migration("CREATE TABLE customers (id int)"),
        "002_orders.js": js_migration("CREATE TABLE orders (id int)"),
    }
    status = await _migrate_knex_application(
        cluster, tmp_path / "image", postgres_url, migrations, until="Ready"
    )

    applied = [entry["id"] for entry in status["lastRun"]["applied"]]
    assert applied == ["001_customers.js", "002_orders.js"]
    ran = [outcome.name for outcome in cluster.jobs.runs]
    assert ran == ["copy-migrations", KNEX_PLAN_CONTAINER, KNEX_CONTAINER, RUNNER_CONTAINER]
    with psycopg.connect(postgres_url) as connection:
        names = connection.execute("SELECT name FROM knex_migrations ORDER BY id").fetchall()
    assert [row[0] for row in names] == applied  # Knex's own rows, written by Knex


@pytest.mark.xdist_group("knex")
async def test_operator_stalls_with_knexs_error_when_a_knex_migration_fails(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    migrations = {
        "001_customers.js": js_migration("CREATE TABLE customers (id int)"),
        "002_broken.js": js_migration("CREATE TABLE orders (id int"),
    }
    status = await _migrate_knex_application(
        cluster, tmp_path / "image", postgres_url, migrations, until="Stalled"
    )

    stalled = condition_of(status, "Stalled")
    assert stalled["reason"] == "MigrationFailed"
    assert "knex migrate:latest failed" in stalled["message"]
    assert "002_broken.js" in stalled["message"]
    assert [outcome.name for outcome in cluster.jobs.runs][-1] == KNEX_CONTAINER
    password = urlsplit(postgres_url).password
    assert password
    assert password not in json.dumps(status)
