"""The rollout gate's pure decisions: gate hash, webhook mutation, guarded patches, bypass."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from stagecraft.operator.gate import (
    APPROVED_HASH_ANNOTATION,
    CONFIRMATION_PREFIX,
    PENDING_HASH_ANNOTATION,
    RESUME_REFUSED_ANNOTATION,
    Gates,
    GateStep,
    admission_patch,
    annotations_of,
    approve_patch,
    bypassed_by,
    confirm_patch,
    confirmation_key,
    confirmations_of,
    deployment_gate_hash,
    forget_gate_patch,
    gate_hash,
    gate_step,
    hand_over_patch,
    held_note,
    release_patch,
    withdraw_patch,
)
from tests.operator.emulator import ApiError, json_patch, merge_patch


def _deployment(
    images: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    containers = [
        {"name": name, "image": image}
        for name, image in (images or {"api": "shop-api:41", "worker": "worker:1"}).items()
    ]
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop-api", "namespace": "shop", "resourceVersion": "7"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "shop-api"}},
            "template": {
                "metadata": {"labels": {"app": "shop-api"}},
                "spec": {"containers": containers},
            },
        },
    }
    if annotations is not None:
        deployment["metadata"]["annotations"] = annotations
    return deployment


def _with_image(deployment: dict[str, Any], container: str, image: str) -> dict[str, Any]:
    changed = copy.deepcopy(deployment)
    for entry in changed["spec"]["template"]["spec"]["containers"]:
        if entry["name"] == container:
            entry["image"] = image
    return changed


API = Gates.alone(["api"], "shop-db")  # one resource gating the api container


def _hash(deployment: dict[str, Any], containers: tuple[str, ...] = ("api",)) -> str:
    return deployment_gate_hash(deployment, containers)


# ---- the gate hash ---------------------------------------------------------------------


def test_a_new_image_of_a_referenced_container_changes_the_hash() -> None:
    old = _deployment()
    assert _hash(_with_image(old, "api", "shop-api:42")) != _hash(old)


def test_restart_scale_and_unreferenced_containers_leave_the_hash_alone() -> None:
    old = _deployment()
    restarted = copy.deepcopy(old)
    restarted["spec"]["template"]["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/restartedAt": "2026-11-28T15:00:00Z"
    }
    scaled = copy.deepcopy(old)
    scaled["spec"]["replicas"] = 9  # what `kubectl scale` and an HPA change
    sidecar = _with_image(old, "worker", "worker:2")
    for changed in (restarted, scaled, sidecar):
        assert _hash(changed) == _hash(old)


def test_a_rollback_is_the_older_images_own_hash() -> None:
    v41 = _deployment()
    v42 = _with_image(v41, "api", "shop-api:42")
    back = _with_image(v42, "api", "shop-api:41")
    assert _hash(back) == _hash(v41) != _hash(v42)


def test_without_named_containers_the_first_container_counts() -> None:
    old = _deployment()
    assert _hash(_with_image(old, "api", "shop-api:42"), ()) != _hash(old, ())
    assert _hash(_with_image(old, "worker", "worker:2"), ()) == _hash(old, ())


def test_every_named_container_counts_whatever_the_order() -> None:
    old = _deployment()
    both = ("worker", "api")
    assert _hash(_with_image(old, "worker", "worker:2"), both) != _hash(old, both)
    assert _hash(old, both) == _hash(old, ("api", "worker"))


def test_a_pod_has_the_hash_of_the_template_it_was_made_from() -> None:
    deployment = _deployment()
    template = deployment["spec"]["template"]
    pod = {"metadata": {"name": "shop-api-abc", "labels": {"pod-template-hash": "x"}}}
    pod["spec"] = {**template["spec"], "nodeName": "node-1"}
    assert gate_hash(pod, ["api"]) == _hash(deployment)


# ---- the webhook's mutation ------------------------------------------------------------


def test_creation_is_paused_with_its_hash_pending() -> None:
    new = _deployment()
    patch = admission_patch("CREATE", new, None, API, "alice")
    assert patch == {
        "spec": {"paused": True},
        "metadata": {"annotations": {PENDING_HASH_ANNOTATION: _hash(new)}},
    }


def test_an_image_change_to_an_unapproved_hash_is_paused_in_the_same_write() -> None:
    old = _deployment(annotations={APPROVED_HASH_ANNOTATION: _hash(_deployment())})
    new = _with_image(old, "api", "shop-api:42")
    patch = admission_patch("UPDATE", new, old, API, "alice")
    stored = merge_patch(new, patch)
    assert stored["spec"]["paused"] is True
    assert stored["metadata"]["annotations"][PENDING_HASH_ANNOTATION] == _hash(new)
    assert stored["spec"]["template"] == new["spec"]["template"]


def test_restart_and_scale_pass_untouched() -> None:
    old = _deployment(annotations={APPROVED_HASH_ANNOTATION: _hash(_deployment())})
    restarted = copy.deepcopy(old)
    restarted["spec"]["template"]["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/restartedAt": "2026-11-28T15:00:00Z"
    }
    scaled = copy.deepcopy(old)
    scaled["spec"]["replicas"] = 5
    for new in (restarted, scaled):
        assert admission_patch("UPDATE", new, old, API, "alice") == {}


def test_a_second_new_image_while_one_is_pending_becomes_the_pending_one() -> None:
    approved = _hash(_deployment())
    v42 = _with_image(_deployment(), "api", "shop-api:42")
    old = merge_patch(v42, admission_patch("CREATE", v42, None, API, "ci"))
    old["metadata"]["annotations"][APPROVED_HASH_ANNOTATION] = approved
    v43 = _with_image(old, "api", "shop-api:43")
    stored = merge_patch(v43, admission_patch("UPDATE", v43, old, API, "ci"))
    assert stored["metadata"]["annotations"][PENDING_HASH_ANNOTATION] == _hash(v43)
    assert stored["spec"]["paused"] is True


def test_going_back_to_the_approved_image_while_one_is_pending_resumes() -> None:
    approved = _deployment()
    pending = _with_image(approved, "api", "shop-api:42")
    pending["spec"]["paused"] = True
    pending["metadata"]["annotations"] = {
        APPROVED_HASH_ANNOTATION: _hash(approved),
        PENDING_HASH_ANNOTATION: _hash(pending),
    }
    back = _with_image(pending, "api", "shop-api:41")
    stored = merge_patch(back, admission_patch("UPDATE", back, pending, API, "ci"))
    assert stored["spec"]["paused"] is False
    assert PENDING_HASH_ANNOTATION not in stored["metadata"]["annotations"]


def test_a_resume_while_pending_is_paused_again_and_who_did_it_is_recorded() -> None:
    old = _deployment()
    old["spec"]["paused"] = True
    old["metadata"]["annotations"] = {PENDING_HASH_ANNOTATION: _hash(old)}
    resumed = copy.deepcopy(old)
    resumed["spec"]["paused"] = False
    patch = admission_patch("UPDATE", resumed, old, API, "bob")
    assert patch == {
        "spec": {"paused": True},
        "metadata": {"annotations": {RESUME_REFUSED_ANNOTATION: "bob"}},
    }


def test_the_operators_own_release_passes() -> None:
    old = _deployment()
    old["spec"]["paused"] = True
    old["metadata"]["annotations"] = {PENDING_HASH_ANNOTATION: _hash(old)}
    released = json_patch(old, release_patch(_hash(old)))
    assert admission_patch("UPDATE", released, old, API, "operator") == {}


def _held_for_its_migration(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    old = _deployment()
    old["spec"]["paused"] = True
    old["metadata"]["annotations"] = {PENDING_HASH_ANNOTATION: _hash(old), **(annotations or {})}
    return old


def test_a_replace_dropping_the_pending_hash_and_the_pause_stays_paused_with_it() -> None:
    old = _held_for_its_migration()
    replaced = _deployment()  # kubectl replace / Argo CD Replace=true: the object as in Git
    stored = merge_patch(replaced, admission_patch("UPDATE", replaced, old, API, "argocd"))
    assert stored["spec"]["paused"] is True
    assert stored["metadata"]["annotations"] == {
        PENDING_HASH_ANNOTATION: _hash(old),
        RESUME_REFUSED_ANNOTATION: "argocd",
    }


def test_a_replace_dropping_only_the_pending_hash_restores_it() -> None:
    old = _held_for_its_migration()
    replaced = _deployment()
    replaced["spec"]["paused"] = True
    stored = merge_patch(replaced, admission_patch("UPDATE", replaced, old, API, "bob"))
    assert stored["spec"]["paused"] is True
    assert stored["metadata"]["annotations"] == {PENDING_HASH_ANNOTATION: _hash(old)}


def test_a_replace_of_an_approved_template_passes_untouched() -> None:
    old = _held_for_its_migration({APPROVED_HASH_ANNOTATION: _hash(_deployment())})
    replaced = _deployment()
    assert admission_patch("UPDATE", replaced, old, API, "argocd") == {}


def test_a_replace_with_a_new_image_is_paused_for_the_new_hash() -> None:
    old = _held_for_its_migration()
    replaced = _with_image(_deployment(), "api", "shop-api:42")
    stored = merge_patch(replaced, admission_patch("UPDATE", replaced, old, API, "argocd"))
    assert stored["spec"]["paused"] is True
    assert stored["metadata"]["annotations"][PENDING_HASH_ANNOTATION] == _hash(replaced)


def test_creation_with_the_approved_hash_passes() -> None:
    new = _deployment()
    new["metadata"]["annotations"] = {APPROVED_HASH_ANNOTATION: _hash(new)}
    assert admission_patch("CREATE", new, None, API, "argocd") == {}


# ---- the operator's guarded patches ----------------------------------------------------


def _paused_pending(deployment: dict[str, Any]) -> dict[str, Any]:
    paused: dict[str, Any] = merge_patch(
        deployment, admission_patch("CREATE", deployment, None, API, "ci")
    )
    return paused


def test_release_unpauses_and_approves_the_migrated_hash() -> None:
    paused = _paused_pending(_deployment())
    released = json_patch(paused, release_patch(_hash(paused)))
    assert released["spec"]["paused"] is False
    assert released["metadata"]["annotations"] == {APPROVED_HASH_ANNOTATION: _hash(paused)}


def test_release_of_an_older_hash_fails_when_a_newer_one_is_pending() -> None:
    v42 = _paused_pending(_with_image(_deployment(), "api", "shop-api:42"))
    v43 = _with_image(v42, "api", "shop-api:43")
    v43 = merge_patch(v43, admission_patch("UPDATE", v43, v42, API, "ci"))
    with pytest.raises(ApiError) as refused:
        json_patch(v43, release_patch(_hash(v42)))
    assert refused.value.code == 422


def test_approve_records_the_hash_of_a_deployment_that_was_never_paused() -> None:
    deployment = _deployment()
    approved = json_patch(deployment, approve_patch(deployment, _hash(deployment)))
    assert approved["metadata"]["annotations"] == {APPROVED_HASH_ANNOTATION: _hash(deployment)}
    assert "paused" not in approved["spec"]


def test_forgetting_the_gate_resumes_a_paused_deployment_and_removes_its_annotations() -> None:
    paused = _paused_pending(_deployment())
    forgotten = json_patch(paused, forget_gate_patch(paused))
    assert forgotten["spec"]["paused"] is False
    assert forgotten["metadata"]["annotations"] == {}
    assert forget_gate_patch(_deployment()) == []


def test_forgetting_leaves_a_deployment_paused_by_someone_else_paused() -> None:
    deployment = _deployment(annotations={APPROVED_HASH_ANNOTATION: "abc"})
    deployment["spec"]["paused"] = True
    forgotten = json_patch(deployment, forget_gate_patch(deployment))
    assert forgotten["spec"]["paused"] is True


def test_gate_step_releases_only_after_the_targets_migration_succeeded() -> None:
    paused = _paused_pending(_deployment())
    assert gate_step(paused, API, "shop-db", target_succeeded=False) is None
    step = gate_step(paused, API, "shop-db", target_succeeded=True)
    assert step == GateStep(_hash(paused), release=True)


def test_gate_step_approves_an_ungated_deployment_after_its_migration() -> None:
    step = gate_step(_deployment(), API, "shop-db", target_succeeded=True)
    assert step == GateStep(_hash(_deployment()), approve=True)
    approved = _deployment(annotations={APPROVED_HASH_ANNOTATION: _hash(_deployment())})
    assert gate_step(approved, API, "shop-db", target_succeeded=True) is None


def test_gate_step_reports_a_refused_resume() -> None:
    paused = _paused_pending(_deployment())
    paused["metadata"]["annotations"][RESUME_REFUSED_ANNOTATION] = "bob"
    step = gate_step(paused, API, "shop-db", target_succeeded=False)
    assert step == GateStep(_hash(paused), resume_refused="bob")


# ---- a bypassed gate -------------------------------------------------------------------


def _pod(name: str, deployment: dict[str, Any], terminating: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if terminating:
        metadata["deletionTimestamp"] = "2026-11-28T15:00:00Z"
    return {"metadata": metadata, "spec": copy.deepcopy(deployment["spec"]["template"]["spec"])}


def test_pods_of_an_unapproved_hash_on_a_gated_deployment_are_a_bypass() -> None:
    v41 = _deployment(annotations={APPROVED_HASH_ANNOTATION: _hash(_deployment())})
    v42 = _with_image(v41, "api", "shop-api:42")  # changed without the webhook
    pods = [_pod("old-1", v41), _pod("new-1", v42), _pod("new-2", v42, terminating=True)]
    assert bypassed_by(v42, pods, API) == ["new-1"]


def test_no_bypass_when_the_gate_held_or_was_never_set() -> None:
    v41 = _deployment()
    assert bypassed_by(v41, [_pod("old-1", v41)], API) == []  # adopted: never gated
    paused = _paused_pending(_with_image(v41, "api", "shop-api:42"))
    assert bypassed_by(paused, [_pod("old-1", v41)], API) == []


def test_pods_of_a_held_hash_are_no_bypass() -> None:
    """A rollback during a rollout: the older version's pods still serve while it waits."""
    v41 = _deployment()
    v42 = _with_image(v41, "api", "shop-api:42")
    back = _paused_pending(v41)
    back["metadata"]["annotations"][APPROVED_HASH_ANNOTATION] = _hash(v42)
    assert bypassed_by(back, [_pod("old-1", v41), _pod("new-1", v42)], API) == []


def test_pods_of_a_pending_hash_resumed_behind_the_webhooks_back_are_a_bypass() -> None:
    v41 = _deployment()
    resumed = _paused_pending(_with_image(v41, "api", "shop-api:42"))
    resumed["metadata"]["annotations"][APPROVED_HASH_ANNOTATION] = _hash(v41)
    resumed["spec"]["paused"] = False
    assert bypassed_by(resumed, [_pod("new-1", resumed)], API) == ["new-1"]


def test_a_release_replaces_a_stale_pending_hash_it_tests() -> None:
    paused = _paused_pending(_deployment())  # pending: 41's hash
    changed = _with_image(paused, "api", "shop-api:43")  # behind the webhook's back
    released = json_patch(changed, release_patch(_hash(changed), _hash(paused)))
    assert released["spec"]["paused"] is False
    assert released["metadata"]["annotations"] == {APPROVED_HASH_ANNOTATION: _hash(changed)}


# ---- several resources gating one Deployment (one per database) ------------------------

SHOP_AND_AUDIT = Gates.of([("shop-db", ["api"]), ("audit-db", ["worker"])])
SHOP, AUDIT = confirmation_key("shop-db"), confirmation_key("audit-db")


def _paused_for_both(deployment: dict[str, Any]) -> dict[str, Any]:
    paused: dict[str, Any] = merge_patch(
        deployment, admission_patch("CREATE", deployment, None, SHOP_AND_AUDIT, "ci")
    )
    return paused


def _applied(deployment: dict[str, Any], step: GateStep | None) -> dict[str, Any]:
    """The Deployment after the operator's writes of `step` (release or confirmation)."""
    assert step is not None
    if step.confirm is not None:
        deployment = json_patch(deployment, confirm_patch(*step.confirm))
    if step.release:
        patch = release_patch(step.gate_hash, step.stale_pending, step.confirmations)
        deployment = json_patch(deployment, patch)
    return deployment


def _confirmed_by_shop_db() -> dict[str, Any]:
    """Paused for both resources, shop-db's migration done and confirmed."""
    paused = _paused_for_both(_deployment())
    return _applied(paused, gate_step(paused, SHOP_AND_AUDIT, "shop-db", True))


def test_a_lone_resource_keeps_its_own_hash_and_several_cover_every_container_named() -> None:
    deployment = _deployment()
    assert Gates.alone(["api"]).deployment_hash(deployment) == _hash(deployment)
    # The first container, named or not, is the same part of the template.
    assert Gates.of([("a", ["api"]), ("b", [])]).deployment_hash(deployment) == _hash(deployment)
    both = SHOP_AND_AUDIT.deployment_hash(deployment)
    assert SHOP_AND_AUDIT.deployment_hash(_with_image(deployment, "worker", "worker:2")) != both
    assert SHOP_AND_AUDIT.deployment_hash(_with_image(deployment, "api", "shop-api:42")) != both


def test_the_first_of_several_to_succeed_confirms_and_the_last_releases() -> None:
    paused = _paused_for_both(_deployment())
    pending = SHOP_AND_AUDIT.deployment_hash(paused)

    first = gate_step(paused, SHOP_AND_AUDIT, "shop-db", target_succeeded=True)
    assert first == GateStep(pending, confirm=(SHOP, pending), waiting_for=("audit-db",))
    confirmed = _applied(paused, first)
    assert confirmed["spec"]["paused"] is True
    assert confirmations_of(confirmed) == {SHOP: pending}
    # Asked again, it only says what it waits for: nothing more to write.
    again = gate_step(confirmed, SHOP_AND_AUDIT, "shop-db", target_succeeded=True)
    assert again == GateStep(pending, waiting_for=("audit-db",))
    note = held_note(confirmed, SHOP_AND_AUDIT, again.waiting_for)
    assert note is not None
    assert "until the migrations of DatabaseMigration audit-db succeed" in note

    last = gate_step(confirmed, SHOP_AND_AUDIT, "audit-db", target_succeeded=True)
    assert last is not None
    assert last.release
    released = _applied(confirmed, last)
    assert released["spec"]["paused"] is False
    assert released["metadata"]["annotations"] == {APPROVED_HASH_ANNOTATION: pending}


def test_nothing_is_released_while_another_resources_migration_has_not_succeeded() -> None:
    confirmed = _confirmed_by_shop_db()
    assert gate_step(confirmed, SHOP_AND_AUDIT, "audit-db", target_succeeded=False) is None
    # shop-db's migration no longer stands (its target changed): it withdraws.
    withdrawn = gate_step(confirmed, SHOP_AND_AUDIT, "shop-db", target_succeeded=False)
    assert withdrawn is not None
    assert withdrawn.withdraw == (SHOP, confirmations_of(confirmed)[SHOP])
    assert not withdrawn.release


def test_a_release_fails_when_a_confirmation_it_counted_was_withdrawn() -> None:
    confirmed = _confirmed_by_shop_db()
    last = gate_step(confirmed, SHOP_AND_AUDIT, "audit-db", target_succeeded=True)
    assert last is not None
    withdrawn = json_patch(confirmed, withdraw_patch(SHOP, confirmations_of(confirmed)[SHOP]))
    with pytest.raises(ApiError):
        _applied(withdrawn, last)


def _admitted_for_both(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    stored: dict[str, Any] = merge_patch(
        new, admission_patch("UPDATE", new, old, SHOP_AND_AUDIT, "ci")
    )
    return stored


def test_a_new_template_clears_the_confirmations_of_the_one_it_replaces() -> None:
    confirmed = _confirmed_by_shop_db()
    newer = _with_image(confirmed, "worker", "worker:2")

    stored = _admitted_for_both(newer, confirmed)

    assert confirmations_of(stored) == {}
    assert annotations_of(stored)[PENDING_HASH_ANNOTATION] == SHOP_AND_AUDIT.deployment_hash(newer)


def test_going_back_to_the_approved_template_clears_the_confirmations_too() -> None:
    serving = _deployment()
    approved = SHOP_AND_AUDIT.deployment_hash(serving)
    serving["metadata"]["annotations"] = {APPROVED_HASH_ANNOTATION: approved}
    v42 = _with_image(serving, "api", "shop-api:42")
    held = _admitted_for_both(v42, serving)
    held = json_patch(held, confirm_patch(SHOP, annotations_of(held)[PENDING_HASH_ANNOTATION]))
    back = _with_image(held, "api", "shop-api:41")

    resumed = _admitted_for_both(back, held)

    assert resumed["spec"]["paused"] is False
    assert annotations_of(resumed) == {APPROVED_HASH_ANNOTATION: approved}


def test_a_resource_leaving_releases_the_template_the_others_all_migrated() -> None:
    confirmed = _confirmed_by_shop_db()
    remaining = SHOP_AND_AUDIT.without("audit-db")

    released = json_patch(confirmed, hand_over_patch(confirmed, remaining, "audit-db"))

    assert released["spec"]["paused"] is False
    assert released["metadata"]["annotations"] == {
        APPROVED_HASH_ANNOTATION: remaining.deployment_hash(confirmed)
    }


def test_a_resource_leaving_before_the_others_migrated_only_takes_its_confirmation() -> None:
    confirmed = _confirmed_by_shop_db()
    remaining = SHOP_AND_AUDIT.without("shop-db")

    left = json_patch(confirmed, hand_over_patch(confirmed, remaining, "shop-db"))

    assert left["spec"]["paused"] is True
    assert confirmations_of(left) == {}
    assert hand_over_patch(_paused_for_both(_deployment()), remaining, "shop-db") == []


def test_a_confirmation_key_is_a_valid_annotation_name_for_any_resource_name() -> None:
    long_names = ["a" * 63, "a" * 64, "b" * 253, "a" * 50 + "-" + "c" * 100]
    keys = [confirmation_key(name) for name in long_names]
    assert keys[0] == CONFIRMATION_PREFIX + "a" * 63
    assert len(set(keys)) == len(keys)
    name_part = re.compile(r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
    for key in keys:
        name = key.removeprefix(CONFIRMATION_PREFIX)
        assert len(name) <= 63
        assert name_part.match(name), key
