"""The pre_deploy rollout gate as pure decisions: the gate hash, the webhook's mutation, the
guarded release, and a bypassed gate, all from plain Deployment and pod dicts.

The gate hash covers what a migration depends on (the referenced containers' images), not the
whole template: a `rollout restart` (a template annotation), a scale or an HPA leave it alone,
and a rollback is just that older image's hash. The webhook pauses a Deployment in the same
write that gives it a hash not yet approved and records the hash as pending; the operator
releases it with a JSON Patch that first tests the pending hash, so an older migration can
never release a newer template.

Several pre_deploy resources can gate one Deployment (an application with several databases):
the Deployment's gate hash then covers the containers any of them names, and its template is
released only once every one of them has migrated it. Each but the last to succeed records that
it has (a confirmation annotation of its own, whose value is the pending hash it migrated), and
the last one releases in a patch that tests the others' confirmations.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
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
# While several resources gate a Deployment: `migrated.stagecraft.dev/<resource>: <pending hash>`,
# written by each one whose migration of the pending template succeeded before the others'.
CONFIRMATION_PREFIX = "migrated.stagecraft.dev/"
ANNOTATION_NAME_LIMIT = 63  # the part of an annotation key after its prefix


def _pointer(*parts: str) -> str:
    """A JSON Pointer (RFC 6901): `/` in a key is written `~1`, as in annotation names."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def _relevant(pod_template: Mapping[str, Any], containers: Sequence[str]) -> list[list[Any]]:
    """[name, image] of the named containers, sorted, or of the first one when none is named."""
    listed = (pod_template.get("spec") or {}).get("containers") or []
    images = {str(container.get("name")): container.get("image") for container in listed}
    if containers:
        return [[name, images.get(name)] for name in sorted(set(containers))]
    first = listed[0] if listed else {}
    return [[first.get("name"), first.get("image")]]


def _digest(relevant: list[list[Any]]) -> str:
    encoded = json.dumps(relevant, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()[:HASH_LENGTH]


def gate_hash(pod_template: Mapping[str, Any], containers: Sequence[str]) -> str:
    """Hash of the migration-relevant part of a pod template (or of a pod, which has the same
    shape): the images of the named containers, or of the first container when none is named.

    A named container that the template lacks counts as having no image, so adding it later is
    a change too.
    """
    return _digest(_relevant(pod_template, containers))


def deployment_gate_hash(deployment: Mapping[str, Any], containers: Sequence[str]) -> str:
    return gate_hash((deployment.get("spec") or {}).get("template") or {}, containers)


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


Gate = tuple[str, tuple[str, ...]]  # a pre_deploy resource's name, the containers it names


@dataclass(frozen=True)
class Gates:
    """The pre_deploy resources that gate one Deployment, each with the containers it names."""

    members: tuple[Gate, ...]  # sorted by name, one per resource

    @classmethod
    def of(cls, gates: Iterable[tuple[str, Sequence[str]]]) -> Gates:
        """A resource listed twice counts once, as listed last."""
        by_name = {name: tuple(containers) for name, containers in gates}
        return cls(tuple(sorted(by_name.items())))

    @classmethod
    def alone(cls, containers: Sequence[str], name: str = "") -> Gates:
        return cls.of([(name, containers)])

    def hash_of(self, pod_template: Mapping[str, Any]) -> str:
        """The gate hash of a pod template (or pod): a lone resource's own hash (the one that
        Deployments gated before several resources could gate one carry), else the hash of the
        containers any of them names."""
        if len(self.members) == 1:
            return gate_hash(pod_template, self.members[0][1])
        pairs = {
            json.dumps(pair): pair
            for _, containers in self.members
            for pair in _relevant(pod_template, containers)
        }
        return _digest([pairs[key] for key in sorted(pairs)])

    def deployment_hash(self, deployment: Mapping[str, Any]) -> str:
        return self.hash_of((deployment.get("spec") or {}).get("template") or {})

    def without(self, name: str) -> Gates:
        return Gates(tuple(member for member in self.members if member[0] != name))

    def unconfirmed(self, deployment: Mapping[str, Any], pending: str, name: str) -> list[str]:
        """The resources other than `name` that have not confirmed migrating `pending`."""
        annotations = annotations_of(deployment)
        return [
            other
            for other, _ in self.members
            if other != name and annotations.get(confirmation_key(other)) != pending
        ]


def confirmation_key(resource: str) -> str:
    """The annotation in which a resource confirms its migration of the pending template. A
    name too long for an annotation is cut and given a digest of itself, to stay unique."""
    if len(resource) <= ANNOTATION_NAME_LIMIT:
        return CONFIRMATION_PREFIX + resource
    digest = hashlib.sha256(resource.encode()).hexdigest()[:10]
    kept = resource[: ANNOTATION_NAME_LIMIT - len(digest) - 1].rstrip(".-")
    return f"{CONFIRMATION_PREFIX}{kept}-{digest}"


def confirmations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return {
        key: value
        for key, value in annotations_of(obj).items()
        if key.startswith(CONFIRMATION_PREFIX)
    }


def is_paused(deployment: Mapping[str, Any]) -> bool:
    return bool((deployment.get("spec") or {}).get("paused"))


def _pause(gate: str, new: Mapping[str, Any]) -> dict[str, Any]:
    """Paused for `gate`; confirmations of an older pending hash go (they were not for it)."""
    annotations: dict[str, Any] = dict.fromkeys(confirmations_of(new))
    annotations[PENDING_HASH_ANNOTATION] = gate
    return {"spec": {"paused": True}, "metadata": {"annotations": annotations}}


def admission_patch(
    operation: str,
    new: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    gates: Gates,
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
    gate = gates.deployment_hash(new)
    annotations = annotations_of(new)
    approved = annotations.get(APPROVED_HASH_ANNOTATION)
    pending = annotations.get(PENDING_HASH_ANNOTATION)
    if operation == "CREATE" or old is None:
        return {} if gate == approved else _pause(gate, new)
    if gate != gates.deployment_hash(old):
        if gate != approved:
            return _pause(gate, new)
        if pending is not None:
            resumed: dict[str, Any] = dict.fromkeys(confirmations_of(new))
            resumed[PENDING_HASH_ANNOTATION] = None
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
    DatabaseMigration being deleted no longer gates anything (`gate_index.index_gates`)."""
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
    user whose resume the webhook undid, to be reported once. While other resources gating the
    Deployment have not migrated the pending template (`waiting_for`), the one whose migration
    succeeded confirms it instead of releasing (`confirm`), and one that no longer has a
    successful migration of it withdraws its confirmation (`withdraw`).
    """

    gate_hash: str
    release: bool = False
    approve: bool = False
    resume_refused: str | None = None
    stale_pending: str | None = None  # an older pending hash the release replaces
    confirmations: tuple[tuple[str, str], ...] = ()  # (key, value) the release removes
    confirm: tuple[str, str] | None = None  # (key, pending hash) to record
    withdraw: tuple[str, str] | None = None  # (key, value) to remove
    waiting_for: tuple[str, ...] = ()  # the other resources the release waits for

    @property
    def releases_or_approves(self) -> bool:
        return self.release or self.approve


def _tested_removal(key: str, value: str) -> list[dict[str, Any]]:
    path = _pointer("metadata", "annotations", key)
    return [{"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}]


def release_patch(
    gate: str, pending: str | None = None, confirmations: Iterable[tuple[str, str]] = ()
) -> list[dict[str, Any]]:
    """Unpause the template whose migration succeeded, only if the pending hash is still the one
    seen (a newer template that arrived meanwhile is left paused for its own migration).

    `pending` is the hash the Deployment was paused for, when it is not `gate` itself: a
    template changed while the webhook was bypassed leaves the older pending hash behind.
    `confirmations` are the gating resources' (key, value), tested and removed: one withdrawn
    meanwhile fails the patch, and the reconcile that change starts decides again.
    """
    path = _pointer("metadata", "annotations", PENDING_HASH_ANNOTATION)
    removals = [operation for pair in confirmations for operation in _tested_removal(*pair)]
    return [
        {"op": "test", "path": path, "value": pending if pending is not None else gate},
        *removals,
        {
            "op": "add",
            "path": _pointer("metadata", "annotations", APPROVED_HASH_ANNOTATION),
            "value": gate,
        },
        {"op": "remove", "path": path},
        {"op": "add", "path": "/spec/paused", "value": False},
    ]


def confirm_patch(key: str, pending: str) -> list[dict[str, Any]]:
    """Record that a resource migrated the pending template, if it is still the pending one."""
    return [
        {
            "op": "test",
            "path": _pointer("metadata", "annotations", PENDING_HASH_ANNOTATION),
            "value": pending,
        },
        {"op": "add", "path": _pointer("metadata", "annotations", key), "value": pending},
    ]


def withdraw_patch(key: str, value: str) -> list[dict[str, Any]]:
    return _tested_removal(key, value)


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
    return _tested_removal(RESUME_REFUSED_ANNOTATION, user)


def forget_gate_patch(deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    """On deletion of the last DatabaseMigration that gates it: the gate's annotations go, and
    a Deployment it paused resumes. Each removal tests the value it removes ([]: nothing of the
    gate is left)."""
    annotations = annotations_of(deployment)
    gate_annotations = {key: annotations[key] for key in GATE_ANNOTATIONS if key in annotations}
    operations: list[dict[str, Any]] = [
        operation
        for pair in [*gate_annotations.items(), *confirmations_of(deployment).items()]
        for operation in _tested_removal(*pair)
    ]
    if holds_a_template(deployment):
        operations.append({"op": "add", "path": "/spec/paused", "value": False})
    return operations


def hand_over_patch(
    deployment: Mapping[str, Any], remaining: Gates, leaving: str
) -> list[dict[str, Any]]:
    """A resource stops gating a Deployment that others still gate (it is deleted, or moved to
    another strategy or Deployment): the held template is released when every remaining one
    has confirmed migrating it (they were waiting for this one), else the leaving one's own
    confirmation goes ([]: nothing to do)."""
    annotations = annotations_of(deployment)
    pending = annotations.get(PENDING_HASH_ANNOTATION)
    own = confirmation_key(leaving)
    everyone_migrated = pending is not None and not remaining.unconfirmed(deployment, pending, "")
    if holds_a_template(deployment) and everyone_migrated:
        confirmed = confirmations_of(deployment).items()
        return release_patch(remaining.deployment_hash(deployment), pending, confirmed)
    if own in annotations:
        return withdraw_patch(own, annotations[own])
    return []


def holds_a_template(deployment: Mapping[str, Any]) -> bool:
    """The gate paused this Deployment for a template that waits for its migration."""
    return PENDING_HASH_ANNOTATION in annotations_of(deployment) and is_paused(deployment)


def under_gate(deployment: Mapping[str, Any]) -> bool:
    """Whether the webhook has ever handled this Deployment (a pending or approved hash)."""
    annotations = annotations_of(deployment)
    return PENDING_HASH_ANNOTATION in annotations or APPROVED_HASH_ANNOTATION in annotations


def pods_of_hash(pods: Sequence[Mapping[str, Any]], gate: str, gates: Gates) -> list[str]:
    """Names of the live (not terminating) pods whose images give this gate hash."""
    return sorted(
        str((pod.get("metadata") or {}).get("name"))
        for pod in pods
        if not (pod.get("metadata") or {}).get("deletionTimestamp") and gates.hash_of(pod) == gate
    )


def bypassed_by(
    deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], gates: Gates
) -> list[str]:
    """Pods of a template that runs before its migration succeeded although the Deployment is
    gated: the webhook was bypassed (down with failurePolicy Ignore, removed, or resumed by a
    path it does not see). [] when the gate held."""
    if not may_be_bypassed(deployment, gates):
        return []
    return pods_of_hash(pods, gates.deployment_hash(deployment), gates)


def may_be_bypassed(deployment: Mapping[str, Any], gates: Gates) -> bool:
    """Whether pods of the current template could be running ahead of its migration: the
    webhook has handled the Deployment and its hash is neither approved nor held paused. Only
    then do its pods tell anything about the gate."""
    gate = gates.deployment_hash(deployment)
    annotations = annotations_of(deployment)
    if not under_gate(deployment) or annotations.get(APPROVED_HASH_ANNOTATION) == gate:
        return False
    # A held hash: pods of it were there before (a rollback during a rollout finds the older
    # version's pods still serving), none is new.
    return not (is_paused(deployment) and annotations.get(PENDING_HASH_ANNOTATION) == gate)


def gate_step(
    deployment: Mapping[str, Any], gates: Gates, resource: str, target_succeeded: bool
) -> GateStep | None:
    """What `resource` does to the Deployment once the planner has decided (None: nothing).

    `target_succeeded`: the migration of the template's target has succeeded. The pending
    template is released by the last of its gating resources to succeed; each one before it
    confirms instead.
    """
    gate = gates.deployment_hash(deployment)
    annotations = annotations_of(deployment)
    pending = annotations.get(PENDING_HASH_ANNOTATION)
    refused = annotations.get(RESUME_REFUSED_ANNOTATION)
    key = confirmation_key(resource)
    own = annotations.get(key)
    waiting = gates.unconfirmed(deployment, pending, resource) if pending is not None else []
    holding = target_succeeded and pending is not None
    release = holding and not waiting
    confirm = None
    if holding and waiting and pending is not None and own != pending:
        confirm = (key, pending)
    withdraw = (key, own) if not target_succeeded and own is not None else None
    approve = (
        target_succeeded and pending is None and annotations.get(APPROVED_HASH_ANNOTATION) != gate
    )
    if not (release or approve or refused or confirm or withdraw or (holding and waiting)):
        return None
    confirmed = tuple(sorted(confirmations_of(deployment).items())) if release else ()
    return GateStep(
        gate,
        release=release,
        approve=approve,
        resume_refused=refused,
        stale_pending=pending if release and pending != gate else None,
        confirmations=confirmed,
        confirm=confirm,
        withdraw=withdraw,
        waiting_for=tuple(waiting) if holding else (),
    )


def bypass_verdict(
    deployment: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    gates: Gates,
    current: Verdict,
) -> Verdict | None:
    """The verdict when pods of the template run before its migration succeeded (None: the gate
    held). The migration is not held back: the new version needs its schema now, so its run
    goes on (or its failure stays named), and the resource is Stalled so that someone finds out
    how the webhook was bypassed."""
    bypassing = bypassed_by(deployment, pods, gates)
    if not bypassing:
        return None
    name = (deployment.get("metadata") or {}).get("name")
    gate = gates.deployment_hash(deployment)
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


def held_note(
    deployment: Mapping[str, Any], gates: Gates, waiting_for: Sequence[str] = ()
) -> str | None:
    """What the status adds while the gate holds the Deployment's template (None: it does not).
    `waiting_for`: the other gating resources whose migrations the release still waits for,
    once this one's has succeeded."""
    gate = gates.deployment_hash(deployment)
    if not is_paused(deployment) or annotations_of(deployment).get(PENDING_HASH_ANNOTATION) != gate:
        return None
    name = (deployment.get("metadata") or {}).get("name")
    if waiting_for:
        until = "the migrations of DatabaseMigration " + ", ".join(waiting_for) + " succeed"
    else:
        until = "its migration succeeds"
    return (
        f"Deployment {name} is held paused at template {gate} until {until}; "
        "the running version keeps serving"
    )
