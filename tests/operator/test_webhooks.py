"""The validating webhook: AdmissionReviews over HTTP to kopf's real webhook server."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from stagecraft.engines import registry
from stagecraft.operator.webhooks import VALIDATE_HANDLER_ID
from tests.operator.harness import Cluster


def _review(spec: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    """An AdmissionReview as the API server sends it for a DatabaseMigration."""
    resource = {"group": "stagecraft.dev", "version": "v1alpha1", "resource": "databasemigrations"}
    body = {
        "apiVersion": "stagecraft.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {"name": "shop-db", "namespace": "shop"},
        "spec": spec,
    }
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "stagecraft.dev", "version": "v1alpha1", "kind": "DatabaseMigration"},
            "resource": resource,
            "requestKind": {
                "group": "stagecraft.dev",
                "version": "v1alpha1",
                "kind": "DatabaseMigration",
            },
            "requestResource": resource,
            "name": "shop-db",
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "developer", "groups": ["system:authenticated"]},
            "object": body,
            "oldObject": body if operation == "UPDATE" else None,
            "dryRun": False,
        },
    }


def _spec(**migrations: Any) -> dict[str, Any]:
    return {
        "migrations": {"engine": "raw", "path": "/app/migrations", **migrations},
        "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        "image": "registry.example/shop-api:41",
    }


async def _admit(cluster: Cluster, review: dict[str, Any]) -> dict[str, Any]:
    url = f"{cluster.operator.webhook_url}/{VALIDATE_HANDLER_ID}"
    async with aiohttp.ClientSession() as session, session.post(url, json=review) as response:
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
    response_part: dict[str, Any] = answer["response"]
    assert response_part["uid"] == review["request"]["uid"]
    return response_part


async def test_valid_resource_is_admitted(cluster: Cluster) -> None:
    response = await _admit(cluster, _review(_spec()))
    assert response["allowed"] is True


async def test_unknown_engine_is_rejected_with_the_registered_ids(cluster: Cluster) -> None:
    response = await _admit(cluster, _review(_spec(engine="flyway")))
    assert response["allowed"] is False
    assert response["status"]["code"] == 422
    message = response["status"]["message"]
    assert message.startswith("spec.migrations.engine: unknown migration engine 'flyway'")
    for engine_id in registry.ids():
        assert engine_id in message


async def test_empty_path_unknown_strategy_and_bad_options_are_rejected(cluster: Cluster) -> None:
    for spec, field in [
        (_spec(path=""), "spec.migrations.path"),
        (_spec(strategy="sometimes"), "spec.migrations.strategy"),
        (_spec(options={"tabel": "x"}), "spec.migrations.options.tabel"),
    ]:
        response = await _admit(cluster, _review(spec))
        assert response["allowed"] is False, field
        assert response["status"]["message"].startswith(field)


async def test_updates_are_checked_too(cluster: Cluster) -> None:
    response = await _admit(cluster, _review(_spec(engine="flyway"), operation="UPDATE"))
    assert response["allowed"] is False
