"""The pre_deploy rollout gate as pure decisions: the gate hash, the webhook's mutation, the
guarded release, and a bypassed gate, all from plain Deployment and pod dicts.

The gate hash covers what a migration depends on (the referenced containers' images), not the
whole template: a `rollout restart` (a template annotation), a scale or an HPA leave it alone,
and a rollback is just that older image's hash. The webhook pauses a Deployment in the same
write that gives it a hash not yet approved and records the hash as pending; the operator
releases it with a JSON Patch that first tests the pending hash, so an older migration can
never release a newer template.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .conditions import Phase, Reason, Verdict

PENDING_HASH_ANNOTATION = "stagecraft.dev/pending-hash"  # the hash that waits for its migration
APPROVED_HASH_ANNOTATION = "stagecraft.dev/approved-hash"  # the last hash migrated and released
# Written by the webhook when it pauses again a Deployment someone resumed while a hash was
# pending (it has no side effects of its own); the operator turns it into an Event and clears it.
RESUME_REFUSED_ANNOTATION = "stagecraft.dev/resume-refused"
GATE_ANNOTATIONS = (PENDING_HASH_ANNOTATION, APPROVED_HASH_ANNOTATION, RESUME_REFUSED_ANNOTATION)
HASH_LENGTH = 16


def _pointer(*parts: str) -> str:
    """A JSON Pointer (RFC 6901): `/` in a key is written `~1`, as in annotation names."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def gate_hash(pod_template: Mapping[str, Any], containers: Sequence[str]) -> str:
    """Hash of the migration-relevant part of a pod template (or of a pod, which has the same
    shape): the images of the named containers, or of the first container when none is named.

    A named container that the template lacks counts as having no image, so adding it later is
    a change too.
    """
    listed = (pod_template.get("spec") or {}).get("containers") or []
    images = {str(container.get("name")): container.get("image") for container in listed}
    if containers:
        relevant = [[name, images.get(name)] for name in sorted(set(containers))]
    else:
        first = listed[0] if listed else {}
        relevant = [[first.get("name"), first.get("image")]]
    encoded = json.dumps(relevant, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()[:HASH_LENGTH]


def deployment_gate_hash(deployment: Mapping[str, Any], containers: Sequence[str]) -> str:
    return gate_hash((deployment.get("spec") or {}).get("template") or {}, containers)


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def is_paused(deployment: Mapping[str, Any]) -> bool:
    return bool((deployment.get("spec") or {}).get("paused"))


def _pause(gate: str) -> dict[str, Any]:
    return {"spec": {"paused": True}, "metadata": {"annotations": {PENDING_HASH_ANNOTATION: gate}}}


def admission_patch(
    operation: str,
    new: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    containers: Sequence[str],
    user: str,
) -> dict[str, Any]:
    """What the mutating webhook changes in a gated Deployment, as a merge patch ({}: nothing).

    - created, or updated to a hash not yet approved: paused, and the hash recorded as pending;
    - updated back to the approved hash while another waits: nothing is left to migrate, so the
      pending hash goes and the Deployment resumes;
    - resumed by someone while its hash is pending: paused again, and who did it recorded;
    - written whole without the pending hash the stored object has (`kubectl replace`, Argo CD's
      Replace=true), same template: paused again with that hash restored, as a resume;
    - anything else (a restart, a scale, labels...) passes untouched.
    """
    gate = deployment_gate_hash(new, containers)
    annotations = annotations_of(new)
    approved = annotations.get(APPROVED_HASH_ANNOTATION)
    pending = annotations.get(PENDING_HASH_ANNOTATION)
    if operation == "CREATE" or old is None:
        return {} if gate == approved else _pause(gate)
    if gate != deployment_gate_hash(old, containers):
        if gate != approved:
            return _pause(gate)
        if pending is not None:
            resumed: dict[str, Any] = {PENDING_HASH_ANNOTATION: None}
            return {"spec": {"paused": False}, "metadata": {"annotations": resumed}}
        return {}
    return _held_template_patch(new, old, gate, user)


def _held_template_patch(
    new: Mapping[str, Any], old: Mapping[str, Any], gate: str, user: str
) -> dict[str, Any]:
    """The same template written again: a resume while its hash is pending is paused again,
    and a pending hash the write left out is restored."""
    annotations: dict[str, Any] = {}
    dropped = _dropped_pending(new, old, gate)
    if dropped is not None:
        annotations[PENDING_HASH_ANNOTATION] = dropped
    pending = dropped or annotations_of(new).get(PENDING_HASH_ANNOTATION)
    if pending == gate and is_paused(old) and not is_paused(new):
        annotations[RESUME_REFUSED_ANNOTATION] = user or "unknown"
    elif dropped is None:
        return {}
    return {"spec": {"paused": True}, "metadata": {"annotations": annotations}}


def _dropped_pending(new: Mapping[str, Any], old: Mapping[str, Any], gate: str) -> str | None:
    """The pending hash of the stored object that a write of the same template leaves out, when
    that template is not approved (None otherwise). Only the operator's release removes a
    pending hash legitimately, and it records the hash as approved in the same write; a
    DatabaseMigration being deleted no longer gates anything (`webhooks.index_gates`)."""
    dropped = annotations_of(old).get(PENDING_HASH_ANNOTATION)
    if dropped is None or PENDING_HASH_ANNOTATION in annotations_of(new):
        return None
    approved = {
        annotations_of(new).get(APPROVED_HASH_ANNOTATION),
        annotations_of(old).get(APPROVED_HASH_ANNOTATION),
    }
    return None if gate in approved else dropped


@dataclass(frozen=True)
class GateStep:
    """What the operator does to the Deployment after a reconcile (JSON Patch operations).

    `release` unpauses the pending hash it tests, `approve` records the hash of a Deployment
    that was never paused (it was there before its DatabaseMigration), `resume_refused` is the
    user whose resume the webhook undid, to be reported once.
    """

    gate_hash: str
    release: bool = False
    approve: bool = False
    resume_refused: str | None = None
    stale_pending: str | None = None  # an older pending hash the release replaces


def release_patch(gate: str, pending: str | None = None) -> list[dict[str, Any]]:
    """Unpause the template whose migration succeeded, only if the pending hash is still the one
    seen (a newer template that arrived meanwhile is left paused for its own migration).

    `pending` is the hash the Deployment was paused for, when it is not `gate` itself: a
    template changed while the webhook was bypassed leaves the older pending hash behind.
    """
    path = _pointer("metadata", "annotations", PENDING_HASH_ANNOTATION)
    return [
        {"op": "test", "path": path, "value": pending if pending is not None else gate},
        {
            "op": "add",
            "path": _pointer("metadata", "annotations", APPROVED_HASH_ANNOTATION),
            "value": gate,
        },
        {"op": "remove", "path": path},
        {"op": "add", "path": "/spec/paused", "value": False},
    ]


def approve_patch(deployment: Mapping[str, Any], gate: str) -> list[dict[str, Any]]:
    """Record the hash of a Deployment that was not paused, guarded by its resourceVersion."""
    version = (deployment.get("metadata") or {}).get("resourceVersion")
    guard = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}]
    if (deployment.get("metadata") or {}).get("annotations") is None:
        value: Any = {APPROVED_HASH_ANNOTATION: gate}
        return [*guard, {"op": "add", "path": "/metadata/annotations", "value": value}]
    path = _pointer("metadata", "annotations", APPROVED_HASH_ANNOTATION)
    return [*guard, {"op": "add", "path": path, "value": gate}]


def clear_resume_refused_patch(user: str) -> list[dict[str, Any]]:
    path = _pointer("metadata", "annotations", RESUME_REFUSED_ANNOTATION)
    return [{"op": "test", "path": path, "value": user}, {"op": "remove", "path": path}]


def forget_gate_patch(deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    """On deletion of the DatabaseMigration: its annotations go, and a Deployment it paused
    resumes. Each removal tests the value it removes ([]: nothing of the gate is left)."""
    annotations = annotations_of(deployment)
    operations: list[dict[str, Any]] = []
    for key in GATE_ANNOTATIONS:
        if key in annotations:
            path = _pointer("metadata", "annotations", key)
            operations += [
                {"op": "test", "path": path, "value": annotations[key]},
                {"op": "remove", "path": path},
            ]
    if holds_a_template(deployment):
        operations.append({"op": "add", "path": "/spec/paused", "value": False})
    return operations


def holds_a_template(deployment: Mapping[str, Any]) -> bool:
    """The gate paused this Deployment for a template that waits for its migration."""
    return PENDING_HASH_ANNOTATION in annotations_of(deployment) and is_paused(deployment)


def under_gate(deployment: Mapping[str, Any]) -> bool:
    """Whether the webhook has ever handled this Deployment (a pending or approved hash)."""
    annotations = annotations_of(deployment)
    return PENDING_HASH_ANNOTATION in annotations or APPROVED_HASH_ANNOTATION in annotations


def pods_of_hash(
    pods: Sequence[Mapping[str, Any]], gate: str, containers: Sequence[str]
) -> list[str]:
    """Names of the live (not terminating) pods whose images give this gate hash."""
    return sorted(
        str((pod.get("metadata") or {}).get("name"))
        for pod in pods
        if not (pod.get("metadata") or {}).get("deletionTimestamp")
        and gate_hash(pod, containers) == gate
    )


def bypassed_by(
    deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], containers: Sequence[str]
) -> list[str]:
    """Pods of a template that runs before its migration succeeded although the Deployment is
    gated: the webhook was bypassed (down with failurePolicy Ignore, removed, or resumed by a
    path it does not see). [] when the gate held."""
    if not may_be_bypassed(deployment, containers):
        return []
    return pods_of_hash(pods, deployment_gate_hash(deployment, containers), containers)


def may_be_bypassed(deployment: Mapping[str, Any], containers: Sequence[str]) -> bool:
    """Whether pods of the current template could be running ahead of its migration: the
    webhook has handled the Deployment and its hash is neither approved nor held paused. Only
    then do its pods tell anything about the gate."""
    gate = deployment_gate_hash(deployment, containers)
    annotations = annotations_of(deployment)
    if not under_gate(deployment) or annotations.get(APPROVED_HASH_ANNOTATION) == gate:
        return False
    # A held hash: pods of it were there before (a rollback during a rollout finds the older
    # version's pods still serving), none is new.
    return not (is_paused(deployment) and annotations.get(PENDING_HASH_ANNOTATION) == gate)


def gate_step(
    deployment: Mapping[str, Any], containers: Sequence[str], target_succeeded: bool
) -> GateStep | None:
    """What to do to the Deployment once the planner has decided (None: nothing).

    `target_succeeded`: the migration of the template's target has succeeded.
    """
    gate = deployment_gate_hash(deployment, containers)
    annotations = annotations_of(deployment)
    pending = annotations.get(PENDING_HASH_ANNOTATION)
    refused = annotations.get(RESUME_REFUSED_ANNOTATION)
    release = target_succeeded and pending is not None
    approve = (
        target_succeeded and pending is None and annotations.get(APPROVED_HASH_ANNOTATION) != gate
    )
    if not (release or approve or refused):
        return None
    stale = pending if release and pending != gate else None
    return GateStep(
        gate, release=release, approve=approve, resume_refused=refused, stale_pending=stale
    )


def bypass_verdict(
    deployment: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    containers: Sequence[str],
    current: Verdict,
) -> Verdict | None:
    """The verdict when pods of the template run before its migration succeeded (None: the gate
    held). The migration is not held back: the new version needs its schema now, so its run
    goes on (or its failure stays named), and the resource is Stalled so that someone finds out
    how the webhook was bypassed."""
    bypassing = bypassed_by(deployment, pods, containers)
    if not bypassing:
        return None
    name = (deployment.get("metadata") or {}).get("name")
    gate = deployment_gate_hash(deployment, containers)
    shown = ", ".join(bypassing[:3]) + (
        f" and {len(bypassing) - 3} more" if len(bypassing) > 3 else ""
    )
    return Verdict(
        Phase.STALLED,
        Reason.GATE_BYPASSED,
        f"pre_deploy: pod(s) {shown} of Deployment {name} run template {gate} before its "
        "migration succeeded: the gate webhook was bypassed (down with failurePolicy Ignore, "
        f"removed, or the Deployment resumed behind its back); {current.message}",
    )


def held_note(deployment: Mapping[str, Any], containers: Sequence[str]) -> str | None:
    """What the status adds while the gate holds the Deployment's template (None: it does not)."""
    gate = deployment_gate_hash(deployment, containers)
    if not is_paused(deployment) or annotations_of(deployment).get(PENDING_HASH_ANNOTATION) != gate:
        return None
    name = (deployment.get("metadata") or {}).get("name")
    return (
        f"Deployment {name} is held paused at template {gate} until its migration succeeds; "
        "the running version keeps serving"
    )
