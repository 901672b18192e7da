"""What kopf remembers between events: built for DatabaseMigrations as kopf builds it, and not
at all for the kinds that only on.event and index handlers follow."""

from __future__ import annotations

import json
from typing import Any

import kopf

from stagecraft.operator.persistence import DatabaseMigrationDiffBase

LAST_HANDLED = "kopf.zalando.org/last-handled-configuration"


def _body(raw: dict[str, Any]) -> kopf.Body:
    typed: Any = raw  # kopf's RawBody is a TypedDict of the same shape
    return kopf.Body(typed)


def _resource(status: dict[str, Any] | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "apiVersion": "stagecraft.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {
            "name": "shop-db",
            "namespace": "shop",
            "uid": "u-1",
            "resourceVersion": "7",
            "labels": {"app": "shop"},
            "annotations": {"stagecraft.dev/run": "1", "kopf.zalando.org/touch-dummy": "x"},
        },
        "spec": {"migrations": {"engine": "raw", "path": "/app/migrations"}},
    }
    if status is not None:
        resource["status"] = status
    return resource


def _deployment() -> dict[str, Any]:
    handled = json.dumps({"spec": {"replicas": 1}})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "shop-api",
            "namespace": "shop",
            "annotations": {LAST_HANDLED: handled},
        },
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "shop:42"}]}}},
        "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]},
    }


def test_a_resources_essence_is_the_one_kopf_builds_so_an_upgrade_sees_no_change() -> None:
    ours, kopfs = DatabaseMigrationDiffBase(), kopf.AnnotationsDiffBaseStorage()
    for raw in (_resource(), _resource({"conditions": [{"type": "Ready", "status": "True"}]})):
        assert ours.build(body=_body(raw)) == kopfs.build(body=_body(raw))


def test_a_body_without_its_kind_gets_kopfs_essence() -> None:
    raw = _resource({"lastRun": {"id": "r1"}})
    del raw["kind"]

    essence = DatabaseMigrationDiffBase().build(body=_body(raw))

    assert essence == kopf.AnnotationsDiffBaseStorage().build(body=_body(raw))
    assert essence["spec"] == _resource()["spec"]


def test_a_resources_essence_leaves_its_status_out() -> None:
    essence = DatabaseMigrationDiffBase().build(body=_body(_resource({"lastRun": {"id": "r1"}})))

    assert "status" not in essence
    assert essence["spec"] == _resource()["spec"]


def test_a_handler_filtering_on_a_status_field_still_gets_that_field() -> None:
    body = _body(_resource({"observedGeneration": 3, "lastRun": {"id": "r1"}}))

    essence = DatabaseMigrationDiffBase().build(
        body=body, extra_fields=["status.observedGeneration"]
    )

    assert essence.get("status") == {"observedGeneration": 3}


def test_other_kinds_have_nothing_built_or_read() -> None:
    storage = DatabaseMigrationDiffBase()
    deployment = _body(_deployment())

    assert storage.build(body=deployment) == {}
    # Another kopf operator's annotation on the Deployment is not parsed either.
    assert storage.fetch(body=deployment) is None
    assert kopf.AnnotationsDiffBaseStorage().fetch(body=deployment) == {"spec": {"replicas": 1}}
