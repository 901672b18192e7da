"""The mutating webhook that gates Deployments: AdmissionReviews over HTTP to kopf's real webhook
server, with the DatabaseMigrations indexed by the running operator from the emulator."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf
import pytest

from stagecraft.operator.gate import (
    APPROVED_HASH_ANNOTATION,
    PENDING_HASH_ANNOTATION,
    RESUME_REFUSED_ANNOTATION,
    Gate,
    Gates,
    deployment_gate_hash,
)
from stagecraft.operator.gate_index import GateDirectory, GateKey, index_gates
from stagecraft.operator.manifests import RunnerSettings
from stagecraft.operator.reconcile import ReconcilerSettings
from stagecraft.operator.scoping import NamespaceScope, ScopedReconciler, parse_selector
from stagecraft.operator.webhooks import GATE_HANDLER_ID, serving_only
from tests.operator.emulator import json_patch
from tests.operator.harness import (
    RUNNER_IMAGE,
    TEST_RETRY_POLICY,
    WATCHED,
    Cluster,
    OperatorThread,
    _wait_until_serving,
    _wait_until_watching,
)

DEPLOYMENT_RESOURCE = {"group": "apps", "version": "v1", "resource": "deployments"}


def _deployment(name: str = "shop-api", image: str = "shop-api:41") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "api", "image": image}]},
            },
        },
    }


def _review(
    new: dict[str, Any],
    old: dict[str, Any] | None = None,
    *,
    dry_run: bool = False,
    subresource: str | None = None,
) -> dict[str, Any]:
    """An AdmissionReview as the API server sends it for a Deployment."""
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": DEPLOYMENT_RESOURCE,
        "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "requestResource": DEPLOYMENT_RESOURCE,
        "name": new["metadata"]["name"],
        "namespace": "shop",
        "operation": "CREATE" if old is None else "UPDATE",
        "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
        "object": new,
        "oldObject": old,
        "dryRun": dry_run,
    }
    if subresource:
        request["subResource"] = subresource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


async def _admitted(cluster: Cluster, review: dict[str, Any]) -> dict[str, Any]:
    """What the API server would store: the object with the webhook's JSON Patch applied."""
    url = f"{cluster.operator.webhook_url}/{GATE_HANDLER_ID}"
    async with aiohttp.ClientSession() as session, session.post(url, json=review) as response:
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
    result: dict[str, Any] = answer["response"]
    assert result["uid"] == review["request"]["uid"]
    assert result["allowed"] is True
    new: dict[str, Any] = review["request"]["object"]
    if "patch" not in result:
        return new
    assert result["patchType"] == "JSONPatch"
    return json_patch(new, json.loads(base64.b64decode(result["patch"])))


async def _gated_by(cluster: Cluster, strategy: str = "pre_deploy") -> None:
    """A DatabaseMigration referencing shop-api, indexed by the operator once it has its status."""
    await cluster.apply_database_migration(
        "shop-db",
        {
            "migrations": {"engine": "raw", "path": "/app/migrations", "strategy": strategy},
            "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
            "deployment": {"name": "shop-api", "containers": ["api"]},
        },
    )
    await cluster.wait_for_status("shop-db", lambda status: status.get("observedGeneration") == 1)


def _hash(deployment: dict[str, Any]) -> str:
    return deployment_gate_hash(deployment, ["api"])


def _approved(image: str = "shop-api:41") -> dict[str, Any]:
    deployment = _deployment(image=image)
    deployment["metadata"]["annotations"] = {APPROVED_HASH_ANNOTATION: _hash(deployment)}
    return deployment


async def test_creation_of_a_gated_deployment_is_paused_with_its_pending_hash(
    cluster: Cluster,
) -> None:
    await _gated_by(cluster)
    new = _deployment()

    stored = await _admitted(cluster, _review(new))

    assert stored["spec"]["paused"] is True
    assert stored["metadata"]["annotations"] == {PENDING_HASH_ANNOTATION: _hash(new)}


async def test_a_new_image_is_paused_in_the_same_write(cluster: Cluster) -> None:
    await _gated_by(cluster)
    old = _approved()
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "shop-api:42"

    stored = await _admitted(cluster, _review(new, old))

    assert stored["spec"]["paused"] is True
    assert stored["metadata"]["annotations"][PENDING_HASH_ANNOTATION] == _hash(new)
    assert stored["spec"]["template"] == new["spec"]["template"]


async def test_with_two_resources_a_new_image_of_a_container_either_names_is_paused(
    cluster: Cluster,
) -> None:
    await _gated_by(cluster)
    await cluster.apply_database_migration(
        "jobs-db",
        {
            "migrations": {"engine": "raw", "path": "/app/jobs", "strategy": "pre_deploy"},
            "connection": {"secretKeyRef": {"name": "jobs-db", "key": "url"}},
            "deployment": {"name": "shop-api", "containers": ["worker"]},
        },
    )
    await cluster.wait_for_status("jobs-db", lambda status: status.get("observedGeneration") == 1)
    both = Gates.of([("shop-db", ["api"]), ("jobs-db", ["worker"])])
    old = _deployment()
    old["spec"]["template"]["spec"]["containers"].append({"name": "worker", "image": "jobs:1"})
    old["metadata"]["annotations"] = {APPROVED_HASH_ANNOTATION: both.deployment_hash(old)}
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][1]["image"] = "jobs:2"  # only jobs-db's

    stored = await _admitted(cluster, _review(new, old))

    assert stored["spec"]["paused"] is True
    assert stored["metadata"]["annotations"][PENDING_HASH_ANNOTATION] == both.deployment_hash(new)


async def test_restart_and_scale_pass_untouched(cluster: Cluster) -> None:
    await _gated_by(cluster)
    old = _approved()
    restarted = copy.deepcopy(old)
    restarted["spec"]["template"]["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/restartedAt": "2026-11-28T15:00:00Z"
    }
    scaled = copy.deepcopy(old)
    scaled["spec"]["replicas"] = 6

    for new in (restarted, scaled):
        assert await _admitted(cluster, _review(new, old)) == new


async def test_scale_subresource_requests_pass_untouched(cluster: Cluster) -> None:
    await _gated_by(cluster)
    scale = {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "shop-api", "namespace": "shop"},
        "spec": {"replicas": 4},
    }
    old = {**scale, "spec": {"replicas": 2}}

    assert await _admitted(cluster, _review(scale, old, subresource="scale")) == scale


async def test_deployments_without_a_pre_deploy_resource_pass_untouched(cluster: Cluster) -> None:
    await _gated_by(cluster, strategy="post_deploy")
    new = _deployment()
    other = _deployment(name="billing")

    assert await _admitted(cluster, _review(new)) == new
    assert await _admitted(cluster, _review(other)) == other


async def test_a_manual_resume_while_pending_is_paused_again_and_recorded(
    cluster: Cluster,
) -> None:
    await _gated_by(cluster)
    old = _deployment(image="shop-api:42")
    old["spec"]["paused"] = True
    old["metadata"]["annotations"] = {PENDING_HASH_ANNOTATION: _hash(old)}
    resumed = copy.deepcopy(old)
    resumed["spec"]["paused"] = False  # kubectl rollout resume

    stored = await _admitted(cluster, _review(resumed, old))

    assert stored["spec"]["paused"] is True
    assert stored["metadata"]["annotations"][RESUME_REFUSED_ANNOTATION] == "alice"
    assert stored["metadata"]["annotations"][PENDING_HASH_ANNOTATION] == _hash(old)


async def test_a_replace_that_drops_the_pending_hash_and_the_pause_is_paused_again(
    cluster: Cluster,
) -> None:
    await _gated_by(cluster)
    old = _deployment(image="shop-api:42")
    old["spec"]["paused"] = True
    old["metadata"]["annotations"] = {PENDING_HASH_ANNOTATION: _hash(old)}
    replaced = _deployment(image="shop-api:42")  # kubectl replace: no annotation, no paused

    stored = await _admitted(cluster, _review(replaced, old))

    assert stored["spec"]["paused"] is True
    assert stored["metadata"]["annotations"] == {
        PENDING_HASH_ANNOTATION: _hash(old),
        RESUME_REFUSED_ANNOTATION: "alice",
    }


def test_a_resource_being_deleted_gates_nothing_so_its_release_of_the_deployment_passes() -> None:
    spec: Any = {"migrations": {"strategy": "pre_deploy"}, "deployment": {"name": "shop-api"}}
    assert index_gates("shop", "shop-db", spec, meta={}) == {("shop", "shop-api"): ("shop-db", ())}
    deleting = {"deletionTimestamp": "2026-11-28T17:00:00Z"}
    assert index_gates("shop", "shop-db", spec, meta=deleting) == {}


def test_reconciles_see_the_other_resources_gating_their_deployment_once_attached() -> None:
    directory = GateDirectory()
    index: dict[GateKey, list[Gate]] = {
        ("shop", "shop-api"): [("shop-db", ("api",)), ("audit-db", ())],
    }
    assert directory.others("shop", "shop-api", "shop-db") == ()  # not attached: alone
    directory.attach(index)
    assert directory.others("shop", "shop-api", "shop-db") == (("audit-db", ()),)
    assert directory.others("shop", "other-api", "shop-db") == ()


async def test_dry_run_gets_the_same_answer_and_changes_nothing(cluster: Cluster) -> None:
    await _gated_by(cluster)
    before = {
        plural: cluster.emulator.stored_objects(group, plural)
        for group, plural in (("apps", "deployments"), ("", "events"))
    }
    old = _approved()
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "shop-api:42"

    dry = await _admitted(cluster, _review(new, old, dry_run=True))
    real = await _admitted(cluster, _review(new, old))

    assert dry == real
    assert dry["spec"]["paused"] is True
    after = {
        plural: cluster.emulator.stored_objects(group, plural)
        for group, plural in (("apps", "deployments"), ("", "events"))
    }
    assert after == before


async def _scoped_operator(cluster: Cluster, scope: NamespaceScope) -> None:
    """The running operator replaced by one serving only the namespaces `scope` admits, as
    STAGECRAFT_NAMESPACE_SELECTOR makes it (the scope is fed here instead of by the Namespace
    watch, which tests/operator/test_scoping.py covers)."""
    await cluster.stop_operator()
    cluster.emulator.served_watches.clear()
    settings = ReconcilerSettings(RunnerSettings(image=RUNNER_IMAGE), retry=TEST_RETRY_POLICY)
    reconciler = ScopedReconciler(scope, cluster.api, settings, metrics=cluster.metrics)
    cluster.operator = OperatorThread(cluster.operator.server, reconciler)
    cluster.operator.start()
    await _wait_until_watching(cluster.emulator, WATCHED)
    await _wait_until_serving(cluster.operator.webhook_port)


async def test_deployments_in_namespaces_out_of_the_selectors_scope_are_not_paused(
    cluster: Cluster,
) -> None:
    scope = NamespaceScope(parse_selector("team=shop"))
    scope.observe("shop", {"team": "shop"})
    await _scoped_operator(cluster, scope)
    await _gated_by(cluster)
    new = _deployment()
    assert (await _admitted(cluster, _review(new)))["spec"]["paused"] is True

    scope.observe("shop", {"team": "billing"})  # relabelled: this operator no longer serves it

    assert await _admitted(cluster, _review(new)) == new  # nothing here would ever release it


MISSED_BY_THE_INDEX = {
    "apiVersion": "stagecraft.dev/v1alpha1",
    "kind": "DatabaseMigration",
    "metadata": {"name": "shop-db", "namespace": "shop"},
    "spec": {
        "migrations": {"engine": "raw", "path": "/app/migrations", "strategy": "pre_deploy"},
        "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        "deployment": {"name": "shop-api", "containers": ["api"]},
    },
}


async def test_a_resource_the_index_missed_is_read_from_the_api_before_a_deployment_passes(
    cluster: Cluster,
) -> None:
    """A replica that kopf's peering paused watches nothing, and still serves the webhook: the
    gate reads the namespace's DatabaseMigrations before it lets a Deployment pass."""
    missed = copy.deepcopy(MISSED_BY_THE_INDEX)
    await cluster.emulator.put_object_unwatched("stagecraft.dev", "databasemigrations", missed)

    created = await _admitted(cluster, _review(_deployment()))

    assert created["spec"]["paused"] is True
    assert created["metadata"]["annotations"][PENDING_HASH_ANNOTATION] == _hash(_deployment())
    # A Deployment no resource references still passes, after the same read.
    other = await _admitted(cluster, _review(_deployment("worker")))
    assert "paused" not in other["spec"]


async def test_a_standalone_operator_decides_from_its_index_without_reading_the_api(
    cluster: Cluster,
) -> None:
    """Without peering nothing pauses the operator's watching, so its index (complete once
    warm) is the truth, and an opted-in Deployment no resource gates costs no read of the API
    server. The resource that only a read would find shows that none was made."""
    await cluster.stop_operator()
    await cluster.start_operator(peered=False)
    missed = copy.deepcopy(MISSED_BY_THE_INDEX)
    await cluster.emulator.put_object_unwatched("stagecraft.dev", "databasemigrations", missed)

    created = await _admitted(cluster, _review(_deployment()))

    assert "paused" not in created["spec"]


async def test_the_gate_fails_closed_when_it_cannot_read_the_resources() -> None:
    async def unreachable(namespace: str) -> Mapping[GateKey, list[Gate]]:
        raise ConnectionError(f"the API server does not answer for {namespace}")

    gate = serving_only(None, unreachable)
    raw: Any = _deployment()  # kopf's RawBody is a TypedDict of the same shape
    body = kopf.Body(raw)

    with pytest.raises(kopf.AdmissionError) as refused:
        await gate(
            body=body,
            operation="CREATE",
            subresource=None,
            userinfo={"username": "alice"},
            patch=kopf.Patch(),
            migration_index={},
        )

    assert refused.value.code == 503
    assert "could not read the DatabaseMigrations of namespace shop" in str(refused.value)
