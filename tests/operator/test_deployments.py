"""The test-side Deployment controller rolls out, pauses, holds and fails like the real one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio

from tests.operator.deployments import (
    POD_TEMPLATE_HASH,
    REVISION_ANNOTATION,
    DeploymentController,
    template_hash,
)
from tests.operator.emulator import ApiServerEmulator

NAMESPACE = "shop"
WAIT_TIMEOUT = 30.0  # a bound for hangs, never an expectation of speed


@pytest_asyncio.fixture
async def controller() -> AsyncIterator[DeploymentController]:
    emulator = ApiServerEmulator()
    controller = DeploymentController(emulator, NAMESPACE)
    emulator.write_listeners.append(controller.on_write)
    try:
        yield controller
    finally:
        await controller.stop()


def _deployment(image: str, replicas: int = 1, paused: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop-api", "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "paused": paused,
            "selector": {"matchLabels": {"app": "shop-api"}},
            "template": {
                "metadata": {"labels": {"app": "shop-api"}},
                "spec": {"containers": [{"name": "api", "image": image}]},
            },
        },
    }


async def _change_spec(controller: DeploymentController, **changes: Any) -> None:
    """A spec change as the API server stores it: generation bumped, watchers told."""
    stored = controller.emulator.stored("apps", "deployments", NAMESPACE, "shop-api")
    assert stored is not None
    for key, value in changes.items():
        if key == "image":
            stored["spec"]["template"]["spec"]["containers"][0]["image"] = value
        else:
            stored["spec"][key] = value
    await controller.emulator._replace(("apps", "deployments", NAMESPACE, "shop-api"), stored)


def _stored(controller: DeploymentController) -> dict[str, Any]:
    stored = controller.emulator.stored("apps", "deployments", NAMESPACE, "shop-api")
    assert stored is not None
    return stored


def _progressing(deployment: dict[str, Any]) -> tuple[str, str]:
    for condition in deployment.get("status", {}).get("conditions", []):
        if condition["type"] == "Progressing":
            return condition["status"], condition["reason"]
    return "", ""


async def _wait_for(
    controller: DeploymentController, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while True:
        deployment = _stored(controller)
        if check(deployment):
            return deployment
        assert time.monotonic() < deadline, f"never matched; last: {deployment.get('status')}"
        await asyncio.sleep(0.01)


def _complete(deployment: dict[str, Any]) -> bool:
    status = deployment.get("status", {})
    return (
        status.get("observedGeneration") == deployment["metadata"]["generation"]
        and _progressing(deployment) == ("True", "NewReplicaSetAvailable")
        and status.get("terminatingReplicas") == 0
    )


async def test_new_deployment_rolls_out_a_replica_set_named_by_its_template_hash(
    controller: DeploymentController,
) -> None:
    await controller.emulator.put_object("apps", "deployments", _deployment("api:1", replicas=2))

    deployment = await _wait_for(controller, _complete)

    expected = template_hash(deployment["spec"]["template"])
    (replica_set,) = controller.replica_sets("shop-api")
    assert replica_set["metadata"]["name"] == f"shop-api-{expected}"
    assert replica_set["metadata"]["labels"][POD_TEMPLATE_HASH] == expected
    pods = controller.pods("shop-api")
    assert len(pods) == 2
    assert {pod["spec"]["containers"][0]["image"] for pod in pods} == {"api:1"}
    status = deployment["status"]
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (2, 2, 2)
    assert status["readyReplicas"] == 2
    assert "unavailableReplicas" not in status
    assert deployment["metadata"]["annotations"][REVISION_ANNOTATION] == "1"


async def test_paused_deployment_gets_no_new_replica_set_until_resumed(
    controller: DeploymentController,
) -> None:
    await controller.emulator.put_object("apps", "deployments", _deployment("api:1"))
    first = await _wait_for(controller, _complete)

    await _change_spec(controller, image="api:2", paused=True)
    paused = await _wait_for(
        controller,
        lambda d: (
            d["status"]["observedGeneration"] == d["metadata"]["generation"]
            and _progressing(d) == ("Unknown", "DeploymentPaused")
        ),
    )
    assert len(controller.replica_sets("shop-api")) == 1
    assert "updatedReplicas" not in paused["status"]  # no pod runs the paused template

    await _change_spec(controller, paused=False)
    resumed = await _wait_for(controller, _complete)

    new_hash = template_hash(resumed["spec"]["template"])
    assert new_hash != template_hash(first["spec"]["template"])
    pods = controller.pods("shop-api")
    assert [pod["metadata"]["labels"][POD_TEMPLATE_HASH] for pod in pods] == [new_hash]
    old = next(
        rs for rs in controller.replica_sets("shop-api") if new_hash not in rs["metadata"]["name"]
    )
    assert old["spec"]["replicas"] == 0
    assert resumed["metadata"]["annotations"][REVISION_ANNOTATION] == "2"


async def test_held_rollout_advances_one_step_at_a_time(controller: DeploymentController) -> None:
    await controller.emulator.put_object("apps", "deployments", _deployment("api:1"))
    await _wait_for(controller, _complete)
    controller.hold()

    await _change_spec(controller, image="api:2")
    created = await _wait_for(
        controller, lambda d: _progressing(d) == ("True", "NewReplicaSetCreated")
    )
    assert created["status"]["observedGeneration"] == created["metadata"]["generation"]
    assert "updatedReplicas" not in created["status"]

    await controller.step("shop-api")  # a pod of the new ReplicaSet, not ready yet
    assert _progressing(_stored(controller)) == ("True", "ReplicaSetUpdated")
    await controller.step("shop-api")  # ready
    await controller.step("shop-api")  # the old pod starts terminating
    midway = _stored(controller)
    # As in Kubernetes: reported complete while the old pod still terminates.
    assert _progressing(midway) == ("True", "NewReplicaSetAvailable")
    assert midway["status"]["terminatingReplicas"] == 1
    assert midway["status"]["updatedReplicas"] == 1
    assert any(pod["metadata"].get("deletionTimestamp") for pod in controller.pods("shop-api"))

    controller.release()
    done = await _wait_for(controller, _complete)
    assert len(controller.pods("shop-api")) == 1
    assert done["status"]["replicas"] == done["status"]["updatedReplicas"] == 1


async def test_failed_rollout_reports_progress_deadline_exceeded_until_a_new_template(
    controller: DeploymentController,
) -> None:
    await controller.emulator.put_object("apps", "deployments", _deployment("api:1"))
    await _wait_for(controller, _complete)
    controller.hold()
    await _change_spec(controller, image="api:2")
    await _wait_for(controller, lambda d: _progressing(d) == ("True", "NewReplicaSetCreated"))

    controller.fail("shop-api")
    controller.release()
    failed = await _wait_for(
        controller, lambda d: _progressing(d) == ("False", "ProgressDeadlineExceeded")
    )
    assert "updatedReplicas" not in failed["status"]  # the failed rollout took no step

    await _change_spec(controller, image="api:3")
    fixed = await _wait_for(controller, _complete)
    assert fixed["spec"]["template"]["spec"]["containers"][0]["image"] == "api:3"
    images = [pod["spec"]["containers"][0]["image"] for pod in controller.pods("shop-api")]
    assert images == ["api:3"]


async def test_rollback_reuses_the_old_replica_set_as_the_newest_revision(
    controller: DeploymentController,
) -> None:
    await controller.emulator.put_object("apps", "deployments", _deployment("api:1"))
    first = await _wait_for(controller, _complete)
    await _change_spec(controller, image="api:2")
    await _wait_for(controller, lambda d: _complete(d) and d["metadata"]["generation"] == 2)

    await _change_spec(controller, image="api:1")
    rolled_back = await _wait_for(
        controller, lambda d: _complete(d) and d["metadata"]["generation"] == 3
    )

    assert len(controller.replica_sets("shop-api")) == 2
    original = f"shop-api-{template_hash(first['spec']['template'])}"
    (pod,) = controller.pods("shop-api")
    assert pod["metadata"]["name"].startswith(original)
    assert rolled_back["metadata"]["annotations"][REVISION_ANNOTATION] == "3"


async def test_scaling_keeps_the_replica_set_and_adds_pods(
    controller: DeploymentController,
) -> None:
    await controller.emulator.put_object("apps", "deployments", _deployment("api:1"))
    await _wait_for(controller, _complete)

    await _change_spec(controller, replicas=3)
    scaled = await _wait_for(controller, lambda d: _complete(d) and d["status"]["replicas"] == 3)

    assert len(controller.replica_sets("shop-api")) == 1
    assert scaled["status"]["availableReplicas"] == 3
    assert scaled["metadata"]["annotations"][REVISION_ANNOTATION] == "1"
