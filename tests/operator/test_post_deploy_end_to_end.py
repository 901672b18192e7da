"""post_deploy with the real kopf operator, the Job controller and the Deployment controller:
the Job of a new version runs once its rollout is complete, and never for a failed one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stagecraft.operator.gate import deployment_gate_hash
from tests.operator.harness import NAMESPACE, WAIT_TIMEOUT, Cluster, condition_of, is_true

V41, V42, V43 = (f"registry.example/shop-api:{tag}" for tag in (41, 42, 43))
MIGRATIONS = {
    V41: {
        "0001_customers.sql": "CREATE TABLE customers (id integer PRIMARY KEY);",
        "0002_orders.sql": "CREATE TABLE orders (id integer PRIMARY KEY);",
    },
}
MIGRATIONS[V42] = {**MIGRATIONS[V41], "0003_invoices.sql": "CREATE TABLE invoices (id integer);"}
MIGRATIONS[V43] = {**MIGRATIONS[V42], "0004_refunds.sql": "CREATE TABLE refunds (id integer);"}

POST_DEPLOY = {
    "migrations": {"engine": "raw", "path": "/app/migrations", "strategy": "post_deploy"},
    "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
    "deployment": {"name": "shop-api", "containers": ["api"]},
}


def _images(cluster: Cluster, root: Path) -> None:
    """Folders playing each version of the application image, with its migrations."""
    for image, files in MIGRATIONS.items():
        folder = root / image.rsplit(":", 1)[1] / "app" / "migrations"
        folder.mkdir(parents=True)
        for name, content in files.items():
            (folder / name).write_text(content, encoding="utf-8")
        cluster.jobs.images[image] = folder.parent.parent


async def _application(cluster: Cluster, root: Path, database_url: str) -> None:
    _images(cluster, root)
    await cluster.create_secret("shop-db", {"url": database_url})
    await cluster.create_deployment("shop-api", {"api": V41})


def _deployment(cluster: Cluster) -> dict[str, Any]:
    stored = cluster.emulator.stored("apps", "deployments", NAMESPACE, "shop-api")
    assert stored is not None
    return stored


def _gate_hash_of(image: str) -> str:
    template = {"spec": {"template": {"spec": {"containers": [{"name": "api", "image": image}]}}}}
    return deployment_gate_hash(template, ["api"])


def _waiting_for_rollout_of(image: str) -> Any:
    gate = _gate_hash_of(image)

    def check(status: Mapping[str, Any]) -> bool:
        reconciling = condition_of(dict(status), "Reconciling")
        return (
            reconciling.get("status") == "True"
            and reconciling.get("reason") == "WaitingForRollout"
            and f"gate hash {gate}" in reconciling.get("message", "")
        )

    return check


def _applied(status: Mapping[str, Any]) -> list[str]:
    return [entry["id"] for entry in status["lastRun"]["applied"]]


def _job_images(cluster: Cluster) -> list[str]:
    """The application images migration Jobs copied their files from, in tag order (creation
    times have whole seconds, so they cannot order Jobs made in the same second)."""
    jobs = cluster.jobs_of("shop-db")
    return sorted(job["spec"]["template"]["spec"]["initContainers"][0]["image"] for job in jobs)


async def _rollout_completed(cluster: Cluster) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while True:
        deployment = _deployment(cluster)
        status = deployment.get("status", {})
        progressing = [c for c in status.get("conditions", []) if c["type"] == "Progressing"]
        if (
            status.get("observedGeneration") == deployment["metadata"]["generation"]
            and progressing
            and progressing[0]["reason"] == "NewReplicaSetAvailable"
            and not status.get("terminatingReplicas")
        ):
            return deployment
        assert time.monotonic() < deadline, f"the rollout never completed: {status}"
        await asyncio.sleep(0.02)


def _target_ready(previous: Mapping[str, Any]) -> Any:
    return lambda status: (
        status.get("targetHash") != previous.get("targetHash") and is_true("Ready")(status)
    )


async def test_post_deploy_waits_for_the_first_rollout_then_runs_once(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    cluster.deployments.hold()
    await _application(cluster, tmp_path, postgres_url)
    await cluster.apply_database_migration("shop-db", POST_DEPLOY)

    waiting = await cluster.wait_for_status("shop-db", _waiting_for_rollout_of(V41))
    assert condition_of(waiting, "Ready")["status"] == "False"
    assert cluster.jobs_of("shop-db") == []
    await cluster.deployments.step("shop-api")  # a new pod, not ready yet
    await cluster.wait_for_status(
        "shop-db",
        lambda status: (
            "Progressing is True/ReplicaSetUpdated"
            in condition_of(status, "Reconciling").get("message", "")
        ),
    )
    assert cluster.jobs_of("shop-db") == []

    cluster.deployments.release()
    status = await cluster.wait_for_status("shop-db", is_true("Ready"))

    assert _applied(status) == list(MIGRATIONS[V41])
    assert _job_images(cluster) == [V41]
    # Once run, later Deployment changes of the same version (a scale) run nothing again; the
    # spec change tells when the operator has looked since.
    await asyncio.to_thread(
        cluster.api._apps.patch_namespaced_deployment,
        "shop-api",
        NAMESPACE,
        {"spec": {"replicas": 2}},
    )
    await _rollout_completed(cluster)
    await cluster.patch_spec("shop-db", {"job": {"backoffLimit": 3}})
    await cluster.wait_for_status("shop-db", lambda status: status.get("observedGeneration") == 2)
    assert len(cluster.jobs.runner_runs()) == 1
    assert [reason for reason, _ in await cluster.wait_for_event_reasons("shop-db", 2)] == [
        "RunStarted",
        "RunSucceeded",
    ]


async def test_new_version_is_migrated_only_after_its_rollout_completes(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path, postgres_url)
    await cluster.apply_database_migration("shop-db", POST_DEPLOY)
    first = await cluster.wait_for_status("shop-db", is_true("Ready"))
    cluster.deployments.hold()

    await cluster.set_deployment_image("shop-api", "api", V42)
    await cluster.wait_for_status("shop-db", _waiting_for_rollout_of(V42))
    # A new pod, ready, the old pod terminating: the Deployment controller reports
    # NewReplicaSetAvailable already, but the old version still runs.
    for _ in range(3):
        await cluster.deployments.step("shop-api")
    waiting = await cluster.wait_for_status(
        "shop-db",
        lambda status: "1 pods terminating" in condition_of(status, "Reconciling")["message"],
    )
    assert waiting["lastRun"] == first["lastRun"]
    assert _job_images(cluster) == [V41]

    cluster.deployments.release()
    status = await cluster.wait_for_status("shop-db", _target_ready(first))

    assert _applied(status) == ["0003_invoices.sql"]
    assert _job_images(cluster) == [V41, V42]


async def test_failed_rollout_stalls_and_runs_nothing_until_a_new_version_rolls_out(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path, postgres_url)
    await cluster.apply_database_migration("shop-db", POST_DEPLOY)
    first = await cluster.wait_for_status("shop-db", is_true("Ready"))
    cluster.deployments.hold()

    await cluster.set_deployment_image("shop-api", "api", V42)
    await cluster.wait_for_status("shop-db", _waiting_for_rollout_of(V42))
    cluster.deployments.fail("shop-api")
    stalled = await cluster.wait_for_status("shop-db", is_true("Stalled"))

    assert condition_of(stalled, "Stalled")["reason"] == "RolloutFailed"
    assert "ProgressDeadlineExceeded" in condition_of(stalled, "Stalled")["message"]
    assert condition_of(stalled, "Reconciling")["status"] == "False"
    assert _job_images(cluster) == [V41]

    cluster.deployments.release()
    await cluster.set_deployment_image("shop-api", "api", V43)
    status = await cluster.wait_for_status("shop-db", _target_ready(first))

    assert _applied(status) == ["0003_invoices.sql", "0004_refunds.sql"]
    assert _job_images(cluster) == [V41, V43]


async def test_superseding_rollout_is_waited_for_and_migrated_instead(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path, postgres_url)
    await cluster.apply_database_migration("shop-db", POST_DEPLOY)
    first = await cluster.wait_for_status("shop-db", is_true("Ready"))
    cluster.deployments.hold()
    await cluster.set_deployment_image("shop-api", "api", V42)
    await cluster.wait_for_status("shop-db", _waiting_for_rollout_of(V42))
    await cluster.deployments.step("shop-api")
    await cluster.deployments.step("shop-api")

    await cluster.set_deployment_image("shop-api", "api", V43)
    await cluster.wait_for_status("shop-db", _waiting_for_rollout_of(V43))
    assert _job_images(cluster) == [V41]
    cluster.deployments.release()
    status = await cluster.wait_for_status("shop-db", _target_ready(first))

    assert _applied(status) == ["0003_invoices.sql", "0004_refunds.sql"]
    assert _job_images(cluster) == [V41, V43]
    pods = cluster.deployments.pods("shop-api")
    assert [pod["spec"]["containers"][0]["image"] for pod in pods] == [V43]


async def test_operator_restarted_while_a_rollout_is_in_flight_runs_once_it_completes(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path, postgres_url)
    await cluster.apply_database_migration("shop-db", POST_DEPLOY)
    first = await cluster.wait_for_status("shop-db", is_true("Ready"))
    cluster.deployments.hold()
    await cluster.set_deployment_image("shop-api", "api", V42)
    await cluster.wait_for_status("shop-db", _waiting_for_rollout_of(V42))
    await cluster.deployments.step("shop-api")

    await cluster.restart_operator()
    await cluster.wait_for_status("shop-db", _waiting_for_rollout_of(V42))
    assert _job_images(cluster) == [V41]
    cluster.deployments.release()
    status = await cluster.wait_for_status("shop-db", _target_ready(first))

    assert _applied(status) == ["0003_invoices.sql"]
    assert _job_images(cluster) == [V41, V42]
    assert len(cluster.jobs.runner_runs()) == 2


async def test_operator_restarted_while_the_post_deploy_job_runs_adopts_it(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path, postgres_url)
    await cluster.apply_database_migration("shop-db", POST_DEPLOY)
    first = await cluster.wait_for_status("shop-db", is_true("Ready"))
    cluster.jobs.released.clear()  # the next Job is created but its pod does not start yet

    await cluster.set_deployment_image("shop-api", "api", V42)
    await cluster.wait_for_status(
        "shop-db",
        lambda status: condition_of(status, "Reconciling").get("reason") == "JobRunning",
    )
    await cluster.restart_operator()
    cluster.jobs.released.set()
    status = await cluster.wait_for_status("shop-db", _target_ready(first))

    assert _applied(status) == ["0003_invoices.sql"]
    assert _job_images(cluster) == [V41, V42]
    assert len(cluster.jobs.runner_runs()) == 2
