"""The test emulator behaves like an API server where the operator depends on it."""

from __future__ import annotations

import asyncio

import pytest

from tests.operator.emulator import ApiError, json_patch, matches_selector, merge_patch
from tests.operator.harness import Cluster


def test_merge_patch_merges_objects_replaces_lists_and_deletes_nulls() -> None:
    stored = {"status": {"lastRun": {"job": "a", "failure": {"message": "x"}}, "list": [1, 2]}}
    patch = {"status": {"lastRun": {"job": "b", "failure": None}, "list": [3]}}
    assert merge_patch(stored, patch) == {"status": {"lastRun": {"job": "b"}, "list": [3]}}


def test_json_patch_test_failure_is_a_422() -> None:
    stored = {"metadata": {"resourceVersion": "5", "finalizers": []}}
    operations = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "4"},
        {"op": "add", "path": "/metadata/finalizers/-", "value": "x"},
    ]
    with pytest.raises(ApiError) as raised:
        json_patch(stored, operations)
    assert raised.value.code == 422


def test_json_patch_applies_in_order() -> None:
    stored = {"metadata": {"resourceVersion": "5", "finalizers": []}}
    operations = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "5"},
        {"op": "add", "path": "/metadata/finalizers/-", "value": "x"},
    ]
    assert json_patch(stored, operations)["metadata"]["finalizers"] == ["x"]


def test_label_selectors_match_as_kubernetes_does() -> None:
    labels = {"app": "shop", "tier": "db"}
    assert matches_selector(labels, "app=shop,tier=db")
    assert matches_selector(labels, "app==shop")
    assert matches_selector(labels, "app!=web")
    assert matches_selector(labels, "tier")
    assert not matches_selector(labels, "!tier")
    assert not matches_selector(labels, "app=web")
    assert matches_selector(labels, None)


async def test_writes_bump_resource_version_and_spec_changes_bump_generation(
    cluster: Cluster,
) -> None:
    spec = {
        "migrations": {"engine": "flyway", "path": "/m"},
        "connection": {"secretKeyRef": {"name": "db", "key": "url"}},
        "image": "app:1",
    }
    await cluster.apply_database_migration("probe", spec)
    created = cluster.database_migration("probe")
    assert created["metadata"]["generation"] == 1
    assert created["metadata"]["uid"]

    await cluster.annotate("probe", {"note": "x"})
    annotated = cluster.database_migration("probe")
    assert int(annotated["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    assert annotated["metadata"]["generation"] == 1

    await cluster.patch_spec("probe", {"image": "app:2"})
    assert cluster.database_migration("probe")["metadata"]["generation"] == 2


async def test_status_changes_only_through_the_status_subresource(cluster: Cluster) -> None:
    spec = {
        "migrations": {"engine": "flyway", "path": "/m"},
        "connection": {"secretKeyRef": {"name": "db", "key": "url"}},
        "image": "app:1",
    }
    await cluster.apply_database_migration("probe", spec)
    await cluster.wait_for_status("probe", lambda status: "conditions" in status)
    before = cluster.database_migration("probe")["status"]

    await cluster.patch_spec("probe", {"image": "app:1"})  # a main-resource write
    # never call the sync client on the loop that serves the emulator: it would deadlock
    patch = {"status": {"x": 1}}
    await asyncio.to_thread(cluster.api.patch_database_migration, "shop", "probe", patch)
    assert cluster.database_migration("probe")["status"] == before
