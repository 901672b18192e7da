"""The emulator's admission and JSON Patch behaviours the gate relies on, through the real client:
webhooks mutate in the same write, an unreachable webhook with failurePolicy Fail refuses the
write, and a release whose `test` operation no longer holds is refused with 422."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from stagecraft.operator.gate import (
    APPROVED_HASH_ANNOTATION,
    PENDING_HASH_ANNOTATION,
    release_patch,
)
from tests.operator.emulator import MutatingWebhook
from tests.operator.harness import NAMESPACE, Cluster, free_port


def _deployment(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop-api", "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": "shop-api"}},
            "template": {
                "metadata": {"labels": {"app": "shop-api"}},
                "spec": {"containers": [{"name": "api", "image": image}]},
            },
        },
    }


async def test_an_unreachable_webhook_with_failure_policy_fail_refuses_the_write(
    cluster: Cluster,
) -> None:
    port = free_port()  # nothing listens there
    cluster.emulator.mutating_webhooks.append(
        MutatingWebhook(
            "down.example", "apps", "deployments", url=lambda: f"http://127.0.0.1:{port}"
        )
    )
    body: Any = _deployment("shop-api:41")

    with pytest.raises(ApiException) as refused:
        await asyncio.to_thread(cluster.api._apps.create_namespaced_deployment, NAMESPACE, body)

    assert refused.value.status == 500
    assert "failed calling webhook" in str(refused.value.body)
    assert cluster.emulator.stored("apps", "deployments", NAMESPACE, "shop-api") is None


async def test_a_release_for_a_hash_no_longer_pending_is_refused_and_changes_nothing(
    cluster: Cluster,
) -> None:
    deployment = _deployment("shop-api:43")
    deployment["spec"]["paused"] = True
    deployment["metadata"]["annotations"] = {
        PENDING_HASH_ANNOTATION: "hash-of-43",
        APPROVED_HASH_ANNOTATION: "hash-of-41",
    }
    await cluster.create("apps", "deployments", deployment)
    before = cluster.emulator.stored("apps", "deployments", NAMESPACE, "shop-api")

    older = await asyncio.to_thread(
        cluster.api.patch_deployment, NAMESPACE, "shop-api", release_patch("hash-of-42")
    )
    current = await asyncio.to_thread(
        cluster.api.patch_deployment, NAMESPACE, "shop-api", release_patch("hash-of-43")
    )

    assert older is False
    assert current is True
    after = cluster.emulator.stored("apps", "deployments", NAMESPACE, "shop-api")
    assert before is not None
    assert after is not None
    assert before["spec"]["paused"] is True
    assert after["spec"]["paused"] is False
    annotations = after["metadata"]["annotations"]
    assert annotations[APPROVED_HASH_ANNOTATION] == "hash-of-43"
    assert PENDING_HASH_ANNOTATION not in annotations
