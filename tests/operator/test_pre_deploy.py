"""pre_deploy end to end: the real kopf operator and its gate webhook against the emulator (which
calls the webhook on every Deployment write, as the API server does), the Job controller running
the real migrations on PostgreSQL, and the test-side Deployment controller rolling out."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stagecraft.operator.gate import (
    APPROVED_HASH_ANNOTATION,
    PENDING_HASH_ANNOTATION,
    RESUME_REFUSED_ANNOTATION,
    confirmation_key,
    confirmations_of,
    deployment_gate_hash,
)
from stagecraft.operator.models import GROUP, PLURAL, VERSION
from tests.operator.emulator import MutatingWebhook
from tests.operator.harness import (
    NAMESPACE,
    POLL_INTERVAL,
    WAIT_TIMEOUT,
    Cluster,
    condition_of,
    free_port,
)

V41 = "registry.example/shop-api:41"
V42 = "registry.example/shop-api:42"
V43 = "registry.example/shop-api:43"
CUSTOMERS = {"0001_customers.sql": "CREATE TABLE customers (id integer PRIMARY KEY);"}
ORDERS = {**CUSTOMERS, "0002_orders.sql": "CREATE TABLE orders (id integer PRIMARY KEY);"}
INVOICES = {**ORDERS, "0003_invoices.sql": "CREATE TABLE invoices (id integer PRIMARY KEY);"}


def _image(
    cluster: Cluster,
    root: Path,
    image: str,
    files: Mapping[str, str],
    audit: Mapping[str, str] | None = None,
) -> None:
    """A folder that plays an application image: its migrations live in /app/migrations, and
    those of its second database, if any, in /app/audit."""
    app = root / image.rsplit(":", 1)[1] / "app"
    for folder_name, contents in (("migrations", files), ("audit", audit or {})):
        folder = app / folder_name
        folder.mkdir(parents=True)
        for name, content in contents.items():
            (folder / name).write_text(content, encoding="utf-8")
    cluster.jobs.images[image] = app.parent


def _spec(path: str = "/app/migrations", database: str = "shop-db") -> dict[str, Any]:
    """`database`: the Secret that holds its URL."""
    return {
        "migrations": {"engine": "raw", "path": path, "strategy": "pre_deploy"},
        "connection": {"secretKeyRef": {"name": database, "key": "url"}},
        "deployment": {"name": "shop-api", "containers": ["api"]},
    }


def _deployment_manifest(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop-api", "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "shop-api"}},
            "template": {
                "metadata": {"labels": {"app": "shop-api"}},
                "spec": {"containers": [{"name": "api", "image": image}]},
            },
        },
    }


def _gate_hash_of(image: str) -> str:
    return deployment_gate_hash(_deployment_manifest(image), ["api"])


def _deployment(cluster: Cluster) -> dict[str, Any]:
    stored = cluster.emulator.stored("apps", "deployments", NAMESPACE, "shop-api")
    assert stored is not None
    return stored


def _annotations(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["metadata"].get("annotations") or {})


def _images_of_replica_sets(cluster: Cluster) -> set[str]:
    return {
        replica_set["spec"]["template"]["spec"]["containers"][0]["image"]
        for replica_set in cluster.deployments.replica_sets("shop-api")
    }


def _images_of_pods(cluster: Cluster) -> set[str]:
    return {pod["spec"]["containers"][0]["image"] for pod in cluster.deployments.pods("shop-api")}


async def _wait_for(what: str, check: Callable[[], bool], cluster: Cluster) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not check():
        assert not cluster.operator.errors, cluster.operator.errors
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(POLL_INTERVAL)


def _released_with(cluster: Cluster, image: str) -> Callable[[], bool]:
    def released() -> bool:
        deployment = _deployment(cluster)
        annotations = _annotations(deployment)
        return (
            not deployment["spec"].get("paused")
            and annotations.get(APPROVED_HASH_ANNOTATION) == _gate_hash_of(image)
            and PENDING_HASH_ANNOTATION not in annotations
        )

    return released


async def _patch_deployment(cluster: Cluster, patch: Any) -> dict[str, Any]:
    """`kubectl patch` over HTTP; the answer is the object as stored after admission."""
    apps = cluster.api._apps
    response: Any = await asyncio.to_thread(
        apps.patch_namespaced_deployment, "shop-api", NAMESPACE, patch, _preload_content=False
    )
    stored: dict[str, Any] = json.loads(response.data)
    return stored


async def _set_image(cluster: Cluster, image: str) -> dict[str, Any]:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "api", "image": image}]}}}}
    return await _patch_deployment(cluster, patch)


async def _serving(cluster: Cluster, root: Path, database_url: str) -> None:
    """shop-api 41 rolled out and migrated, with its hash approved: the steady state."""
    _image(cluster, root, V41, ORDERS)
    await cluster.create_secret("shop-db", {"url": database_url})
    await cluster.create("apps", "deployments", _deployment_manifest(V41))
    await _wait_for("v41 rolled out", lambda: _images_of_pods(cluster) == {V41}, cluster)
    await cluster.apply_database_migration("shop-db", _spec())
    await _wait_for("v41 approved", _released_with(cluster, V41), cluster)


async def _v42_held_by_its_migration(cluster: Cluster, root: Path, database_url: str) -> None:
    """v41 serving, v42 shipped and held paused while its migration Job waits (released by
    `cluster.jobs.released.set()`)."""
    await _serving(cluster, root, database_url)
    _image(cluster, root, V42, INVOICES)
    cluster.jobs.released.clear()
    await _set_image(cluster, V42)
    await _wait_for("v42's Job", lambda: len(cluster.jobs_of("shop-db")) == 2, cluster)


def _ready_for(image: str) -> Callable[[dict[str, Any]], bool]:
    def ready(status: dict[str, Any]) -> bool:
        return condition_of(status, "Ready").get("status") == "True" and bool(
            status.get("lastRun", {}).get("applied") is not None
        )

    return ready


def _tables(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {row[0] for row in rows}


async def test_a_new_image_is_paused_in_the_same_write_and_released_after_its_migration(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _serving(cluster, tmp_path, postgres_url)
    _image(cluster, tmp_path, V42, INVOICES)
    cluster.jobs.released.clear()  # the migration Job waits: the rollout must wait with it

    stored = await _set_image(cluster, V42)

    assert stored["spec"]["paused"] is True  # in the very write that changed the image
    assert _annotations(stored)[PENDING_HASH_ANNOTATION] == _gate_hash_of(V42)
    await cluster.wait_for_status(
        "shop-db", lambda status: condition_of(status, "Reconciling").get("status") == "True"
    )
    assert len(cluster.jobs_of("shop-db")) == 2  # v41's, and v42's in flight
    assert _images_of_replica_sets(cluster) == {V41}  # no ReplicaSet of v42 yet
    assert "invoices" not in _tables(postgres_url)

    cluster.jobs.released.set()
    await _wait_for("v42 released", _released_with(cluster, V42), cluster)
    await _wait_for("v42 rolled out", lambda: _images_of_pods(cluster) == {V42}, cluster)

    assert "invoices" in _tables(postgres_url)
    # The release goes first (the rollout waits for it), the status follows it.
    status = await cluster.wait_for_status(
        "shop-db", lambda status: condition_of(status, "Ready").get("status") == "True"
    )
    assert [entry["id"] for entry in status["lastRun"]["applied"]] == ["0003_invoices.sql"]
    await _wait_for(
        "the release reported",
        lambda: ("DeploymentReleased", "Normal") in cluster.event_reasons("shop-db"),
        cluster,
    )


async def test_a_first_install_waits_for_its_deployment_and_gates_its_creation(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    # A GitOps tool applies the DatabaseMigration in an earlier sync wave than its Deployment.
    _image(cluster, tmp_path, V41, ORDERS)
    await cluster.create_secret("shop-db", {"url": postgres_url})
    cluster.jobs.released.clear()
    await cluster.apply_database_migration("shop-db", _spec())
    waiting = await cluster.wait_for_status(
        "shop-db", lambda status: status.get("observedGeneration") == 1
    )
    for condition_type in ("Ready", "Reconciling", "Stalled"):
        condition = condition_of(waiting, condition_type)
        assert (condition["status"], condition["reason"]) == ("False", "WaitingForDeployment")
    assert "Deployment shop-api" in condition_of(waiting, "Ready")["message"]
    assert cluster.jobs_of("shop-db") == []

    apps = cluster.api._apps
    body: Any = _deployment_manifest(V41)
    response: Any = await asyncio.to_thread(
        apps.create_namespaced_deployment, NAMESPACE, body, _preload_content=False
    )
    created = json.loads(response.data)
    assert created["spec"]["paused"] is True
    assert _annotations(created)[PENDING_HASH_ANNOTATION] == _gate_hash_of(V41)
    await _wait_for("the Job exists", lambda: len(cluster.jobs_of("shop-db")) == 1, cluster)
    assert cluster.deployments.replica_sets("shop-api") == []

    cluster.jobs.released.set()
    await _wait_for("v41 released", _released_with(cluster, V41), cluster)
    await _wait_for("v41 rolled out", lambda: _images_of_pods(cluster) == {V41}, cluster)
    assert {"customers", "orders"} <= _tables(postgres_url)


async def test_a_failed_migration_keeps_the_old_version_serving_and_stalls(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _serving(cluster, tmp_path, postgres_url)
    _image(cluster, tmp_path, V42, {**ORDERS, "0003_broken.sql": "CREATE TABLE invoices (id"})

    await _set_image(cluster, V42)
    status = await cluster.wait_for_status(
        "shop-db", lambda status: condition_of(status, "Stalled").get("status") == "True"
    )

    stalled = condition_of(status, "Stalled")
    assert stalled["reason"] == "MigrationFailed"
    assert "0003_broken.sql" in stalled["message"]
    assert "Deployment shop-api is held paused" in stalled["message"]
    deployment = _deployment(cluster)
    assert deployment["spec"]["paused"] is True
    assert _annotations(deployment)[PENDING_HASH_ANNOTATION] == _gate_hash_of(V42)
    assert _images_of_replica_sets(cluster) == {V41}
    assert _images_of_pods(cluster) == {V41}  # the old version keeps serving


@pytest.mark.parametrize("restart", [False, True], ids=["same operator", "operator restarted"])
async def test_a_release_the_api_server_refuses_is_reported_and_tried_again(
    cluster: Cluster, postgres_url: str, tmp_path: Path, restart: bool
) -> None:
    await _v42_held_by_its_migration(cluster, tmp_path, postgres_url)
    # A second webhook on Deployments that nobody answers, failurePolicy Fail: the API server
    # refuses every Deployment write with a 500 while it is registered.
    port = free_port()  # nothing listens there
    unreachable = MutatingWebhook(
        name="unreachable.example.com",
        group="apps",
        plural="deployments",
        url=lambda: f"http://127.0.0.1:{port}/mutate",
        operations=("UPDATE",),
    )
    cluster.emulator.mutating_webhooks.append(unreachable)

    cluster.jobs.released.set()
    status = await cluster.wait_for_status(
        "shop-db",
        lambda status: (
            condition_of(status, "Reconciling").get("status") == "True"
            and condition_of(status, "Reconciling").get("reason") == "ReleasePending"
        ),
    )

    assert status["lastRun"]["result"] == "Succeeded"
    assert "HTTP 500" in condition_of(status, "Reconciling")["message"]
    assert _deployment(cluster)["spec"]["paused"] is True
    assert _images_of_pods(cluster) == {V41}
    if restart:  # the new operator finds the release still to do
        await cluster.restart_operator()
    cluster.emulator.mutating_webhooks.remove(unreachable)  # the API server recovers
    await _wait_for("v42 released", _released_with(cluster, V42), cluster)
    await cluster.wait_for_status(
        "shop-db", lambda status: condition_of(status, "Ready").get("status") == "True"
    )


async def test_restart_and_scale_pass_untouched(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _serving(cluster, tmp_path, postgres_url)
    restart = {
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-28T15:00:00Z"}
                }
            }
        }
    }

    restarted = await _patch_deployment(cluster, restart)
    scaled = await _patch_deployment(cluster, {"spec": {"replicas": 3}})

    for stored in (restarted, scaled):
        assert not stored["spec"].get("paused")
        assert PENDING_HASH_ANNOTATION not in _annotations(stored)
    await _wait_for("restarted and scaled", lambda: len(_pods_of_newest(cluster)) == 3, cluster)
    assert len(cluster.jobs_of("shop-db")) == 1  # no migration for a restart or a scale
    assert len(cluster.deployments.replica_sets("shop-api")) == 2  # the restart rolled out


def _pods_of_newest(cluster: Cluster) -> list[dict[str, Any]]:
    """Live pods of the ReplicaSet made for the restart (its template has restartedAt)."""
    restarted = {
        replica_set["metadata"]["labels"]["pod-template-hash"]
        for replica_set in cluster.deployments.replica_sets("shop-api")
        if (replica_set["spec"]["template"]["metadata"].get("annotations") or {}).get(
            "kubectl.kubernetes.io/restartedAt"
        )
    }
    return [
        pod
        for pod in cluster.deployments.pods("shop-api")
        if pod["metadata"]["labels"].get("pod-template-hash") in restarted
        and not pod["metadata"].get("deletionTimestamp")
    ]


async def test_a_second_image_during_a_migration_is_migrated_and_released_in_order(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _serving(cluster, tmp_path, postgres_url)
    _image(cluster, tmp_path, V42, INVOICES)
    refunds = {**INVOICES, "0004_refunds.sql": "CREATE TABLE refunds (id integer PRIMARY KEY);"}
    _image(cluster, tmp_path, V43, refunds)
    cluster.jobs.released.clear()

    await _set_image(cluster, V42)
    await _wait_for("v42's Job", lambda: len(cluster.jobs_of("shop-db")) == 2, cluster)
    stored = await _set_image(cluster, V43)
    assert stored["spec"]["paused"] is True
    assert _annotations(stored)[PENDING_HASH_ANNOTATION] == _gate_hash_of(V43)
    await _wait_for("v43's Job", lambda: len(cluster.jobs_of("shop-db")) == 3, cluster)
    cluster.jobs.released.set()

    await _wait_for("v43 released", _released_with(cluster, V43), cluster)
    await _wait_for("v43 rolled out", lambda: _images_of_pods(cluster) == {V43}, cluster)
    assert _images_of_replica_sets(cluster) == {V41, V43}  # v42 never rolled out
    assert {"invoices", "refunds"} <= _tables(postgres_url)


async def test_a_rollback_is_migrated_like_any_new_hash(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _serving(cluster, tmp_path, postgres_url)
    _image(cluster, tmp_path, V42, ORDERS)  # a release without new migrations
    await _set_image(cluster, V42)
    await _wait_for("v42 released", _released_with(cluster, V42), cluster)
    await _wait_for("v42 rolled out", lambda: _images_of_pods(cluster) == {V42}, cluster)

    stored = await _set_image(cluster, V41)  # kubectl rollout undo

    assert stored["spec"]["paused"] is True
    assert _annotations(stored)[PENDING_HASH_ANNOTATION] == _gate_hash_of(V41)
    await _wait_for("v41 released again", _released_with(cluster, V41), cluster)
    await _wait_for("v41 rolled back", lambda: _images_of_pods(cluster) == {V41}, cluster)
    await cluster.wait_for_status(
        "shop-db", lambda status: condition_of(status, "Ready").get("status") == "True"
    )


async def test_a_manual_resume_while_pending_is_paused_again_and_recorded(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _serving(cluster, tmp_path, postgres_url)
    _image(cluster, tmp_path, V42, INVOICES)
    cluster.jobs.released.clear()
    await _set_image(cluster, V42)

    resumed = await _patch_deployment(cluster, {"spec": {"paused": False}})  # rollout resume

    assert resumed["spec"]["paused"] is True
    await _wait_for(
        "the refused resume reported",
        lambda: ("ResumeRefused", "Warning") in cluster.event_reasons("shop-db"),
        cluster,
    )
    await _wait_for(
        "the report's annotation cleared",
        lambda: RESUME_REFUSED_ANNOTATION not in _annotations(_deployment(cluster)),
        cluster,
    )
    assert _images_of_replica_sets(cluster) == {V41}
    cluster.jobs.released.set()
    await _wait_for("v42 released", _released_with(cluster, V42), cluster)


async def test_deleting_the_resource_releases_the_deployment_it_paused(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _v42_held_by_its_migration(cluster, tmp_path, postgres_url)

    custom = cluster.api._custom
    await asyncio.to_thread(
        custom.delete_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL, "shop-db"
    )
    await _wait_for(
        "the resource is gone",
        lambda: cluster.emulator.stored(GROUP, PLURAL, NAMESPACE, "shop-db") is None,
        cluster,
    )

    deployment = _deployment(cluster)
    assert not deployment["spec"].get("paused")
    assert not {PENDING_HASH_ANNOTATION, APPROVED_HASH_ANNOTATION} & set(_annotations(deployment))
    await _wait_for("v42 rolled out", lambda: _images_of_pods(cluster) == {V42}, cluster)


@pytest.mark.parametrize("while_down", [False, True], ids=["operator up", "operator down"])
async def test_moving_to_another_strategy_while_a_template_is_held_releases_it(
    cluster: Cluster, postgres_url: str, tmp_path: Path, while_down: bool
) -> None:
    await _v42_held_by_its_migration(cluster, tmp_path, postgres_url)

    # post_deploy now: the new version rolls out first, and is migrated once it is out.
    if while_down:  # the next operator finds the change (kopf compares with what it handled)
        await cluster.stop_operator()
    await cluster.patch_spec("shop-db", {"migrations": {"strategy": "post_deploy"}})
    if while_down:
        await cluster.start_operator()

    await _wait_for("v42 resumed", lambda: not _deployment(cluster)["spec"].get("paused"), cluster)
    assert not set(_annotations(_deployment(cluster))) & {
        PENDING_HASH_ANNOTATION,
        APPROVED_HASH_ANNOTATION,
    }
    await _wait_for("v42 rolled out", lambda: _images_of_pods(cluster) == {V42}, cluster)
    await _wait_for(
        "the release reported",
        lambda: ("GateRemoved", "Warning") in cluster.event_reasons("shop-db"),
        cluster,
    )
    (removed,) = [
        event["message"]
        for event in cluster.emulator.stored_objects("", "events", NAMESPACE)
        if event["reason"] == "GateRemoved"
    ]
    assert "DatabaseMigration shop-db is now post_deploy, no longer pre_deploy" in removed
    assert f"its template {_gate_hash_of(V42)} rolls out without waiting" in removed
    cluster.jobs.released.set()
    await cluster.wait_for_status(
        "shop-db", lambda status: condition_of(status, "Ready").get("status") == "True"
    )
    assert "invoices" in _tables(postgres_url)


async def test_an_operator_restart_mid_gate_resumes_and_releases(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _v42_held_by_its_migration(cluster, tmp_path, postgres_url)

    await cluster.restart_operator()
    cluster.jobs.released.set()

    await _wait_for("v42 released", _released_with(cluster, V42), cluster)
    assert len(cluster.jobs_of("shop-db")) == 2  # the Job was adopted, not started again
    assert len(cluster.jobs.runner_runs()) == 2


async def test_pods_of_an_unmigrated_template_stall_the_resource_as_gate_bypassed(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _serving(cluster, tmp_path, postgres_url)
    _image(cluster, tmp_path, V42, INVOICES)
    cluster.jobs.released.clear()
    # The webhook is not called (down with failurePolicy Ignore, or removed): the new template
    # is stored as sent and rolls out.
    webhooks = list(cluster.emulator.mutating_webhooks)
    cluster.emulator.mutating_webhooks.clear()
    try:
        stored = await _set_image(cluster, V42)
    finally:
        cluster.emulator.mutating_webhooks.extend(webhooks)
    assert not stored["spec"].get("paused")

    status = await cluster.wait_for_status(
        "shop-db", lambda status: condition_of(status, "Stalled").get("reason") == "GateBypassed"
    )
    assert "before its migration succeeded" in condition_of(status, "Stalled")["message"]
    assert len(cluster.jobs_of("shop-db")) == 2  # the migration is not held back

    cluster.jobs.released.set()
    await _wait_for("v42 approved", _released_with(cluster, V42), cluster)
    ready = await cluster.wait_for_status(
        "shop-db", lambda status: condition_of(status, "Ready").get("status") == "True"
    )
    assert condition_of(ready, "Stalled")["status"] == "False"
    assert "invoices" in _tables(postgres_url)


async def test_an_operator_restart_while_a_first_creation_is_held_releases_it_once_migrated(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    _image(cluster, tmp_path, V41, ORDERS)
    await cluster.create_secret("shop-db", {"url": postgres_url})
    cluster.jobs.released.clear()
    await cluster.apply_database_migration("shop-db", _spec())
    await cluster.wait_for_status("shop-db", lambda status: status.get("observedGeneration") == 1)
    await cluster.create("apps", "deployments", _deployment_manifest(V41))
    await _wait_for("the Job exists", lambda: len(cluster.jobs_of("shop-db")) == 1, cluster)

    await cluster.restart_operator()
    assert _deployment(cluster)["spec"]["paused"] is True
    cluster.jobs.released.set()

    await _wait_for("v41 released", _released_with(cluster, V41), cluster)
    await _wait_for("v41 rolled out", lambda: _images_of_pods(cluster) == {V41}, cluster)
    assert len(cluster.jobs.runner_runs()) == 1


# ---- one Deployment, two databases: each a pre_deploy resource gating it -------------------

AUDIT_V41 = {"0001_audit_log.sql": "CREATE TABLE audit_log (id integer PRIMARY KEY);"}
AUDIT_V42 = {**AUDIT_V41, "0002_audit_trail.sql": "CREATE TABLE audit_trail (id integer);"}


async def _two_databases_serving(
    cluster: Cluster, root: Path, shop_url: str, audit_url: str
) -> None:
    """v41 rolled out, both its databases migrated, its hash approved."""
    _image(cluster, root, V41, ORDERS, audit=AUDIT_V41)
    await cluster.create_secret("shop-db", {"url": shop_url})
    await cluster.create_secret("audit-db", {"url": audit_url})
    await cluster.create("apps", "deployments", _deployment_manifest(V41))
    await _wait_for("v41 rolled out", lambda: _images_of_pods(cluster) == {V41}, cluster)
    await cluster.apply_database_migration("shop-db", _spec())
    await cluster.apply_database_migration("audit-db", _spec("/app/audit", "audit-db"))
    await _wait_for("v41 approved", _released_with(cluster, V41), cluster)
    for name in ("shop-db", "audit-db"):
        await cluster.wait_for_status(name, _ready_for(V41))


async def _two_databases_held(
    cluster: Cluster, root: Path, shop_url: str, audit_url: str
) -> asyncio.Event:
    """v41 serving with both databases migrated; v42 shipped, shop-db's migration done and
    audit-db's Job held until the returned event is set."""
    await _two_databases_serving(cluster, root, shop_url, audit_url)

    _image(cluster, root, V42, INVOICES, audit=AUDIT_V42)
    audit_held = cluster.jobs.held["audit-db"] = asyncio.Event()
    await _set_image(cluster, V42)
    await cluster.wait_for_status(
        "shop-db",
        lambda status: (
            "until the migrations of DatabaseMigration audit-db succeed"
            in condition_of(status, "Ready").get("message", "")
        ),
    )
    return audit_held


async def test_with_two_databases_a_new_template_waits_for_both_migrations(
    cluster: Cluster, postgres_url: str, other_postgres_url: str, tmp_path: Path
) -> None:
    audit_held = await _two_databases_held(cluster, tmp_path, postgres_url, other_postgres_url)

    # shop-db's migration succeeded first: it confirms, and the template stays held.
    shop = condition_of(cluster.database_migration("shop-db")["status"], "Ready")
    assert shop["status"] == "True"
    assert "Deployment shop-api is held paused" in shop["message"]
    deployment = _deployment(cluster)
    pending = _gate_hash_of(V42)
    assert deployment["spec"]["paused"] is True
    assert _annotations(deployment)[PENDING_HASH_ANNOTATION] == pending
    assert confirmations_of(deployment) == {confirmation_key("shop-db"): pending}
    assert "invoices" in _tables(postgres_url)
    assert "audit_trail" not in _tables(other_postgres_url)
    assert _images_of_replica_sets(cluster) == {V41}  # v42 waits for audit-db's schema

    audit_held.set()
    await _wait_for("v42 released", _released_with(cluster, V42), cluster)
    await _wait_for("v42 rolled out", lambda: _images_of_pods(cluster) == {V42}, cluster)
    assert "audit_trail" in _tables(other_postgres_url)
    assert confirmations_of(_deployment(cluster)) == {}
    await _wait_for(
        "the last to succeed reports the release",
        lambda: ("DeploymentReleased", "Normal") in cluster.event_reasons("audit-db"),
        cluster,
    )


async def test_with_two_databases_a_failed_migration_holds_the_template_for_both(
    cluster: Cluster, postgres_url: str, other_postgres_url: str, tmp_path: Path
) -> None:
    await _two_databases_serving(cluster, tmp_path, postgres_url, other_postgres_url)
    broken = {**AUDIT_V41, "0002_broken.sql": "CREATE TABLE audit_trail (id"}
    _image(cluster, tmp_path, V42, INVOICES, audit=broken)

    await _set_image(cluster, V42)

    stalled = await cluster.wait_for_status(
        "audit-db", lambda status: condition_of(status, "Stalled").get("status") == "True"
    )
    assert "0002_broken.sql" in condition_of(stalled, "Stalled")["message"]
    await cluster.wait_for_status(
        "shop-db",
        lambda status: (
            "until the migrations of DatabaseMigration audit-db succeed"
            in condition_of(status, "Ready").get("message", "")
        ),
    )
    assert _deployment(cluster)["spec"]["paused"] is True
    assert _images_of_pods(cluster) == {V41}  # the old version keeps serving


@pytest.mark.parametrize("while_down", [False, True], ids=["operator up", "restarted"])
async def test_deleting_the_database_still_migrating_releases_what_the_others_migrated(
    cluster: Cluster,
    postgres_url: str,
    other_postgres_url: str,
    tmp_path: Path,
    while_down: bool,
) -> None:
    await _two_databases_held(cluster, tmp_path, postgres_url, other_postgres_url)
    if while_down:  # the confirmation lives on the Deployment: a new process finds it
        await cluster.restart_operator()

    custom = cluster.api._custom
    await asyncio.to_thread(
        custom.delete_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL, "audit-db"
    )

    await _wait_for("v42 released", _released_with(cluster, V42), cluster)
    await _wait_for("v42 rolled out", lambda: _images_of_pods(cluster) == {V42}, cluster)
    assert confirmations_of(_deployment(cluster)) == {}
