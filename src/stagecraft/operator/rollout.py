"""Where the rollout of one gate hash stands, read from a Deployment as `kubectl rollout status`
and kstatus read it: complete, failed, or in flight with what it is still waiting for.

post_deploy runs its Job only once the rollout of the hash H it migrates is complete:
  - the Deployment is not paused;
  - its template still has gate hash H (a newer rollout supersedes H);
  - the controller has seen the latest spec (observedGeneration >= generation);
  - Progressing=True with reason NewReplicaSetAvailable;
  - updated = available = desired replicas, and no other replica is left (replicas = updated);
  - no pod of the Deployment is terminating (status.terminatingReplicas, and the pods' own
    deletionTimestamp where the cluster does not report that count).
Failed means Progressing=False with reason ProgressDeadlineExceeded for the latest spec: the
controller has given up on this template, and only a new one (or a person) moves it on.

Pure functions of the API server's documents; the gate hash of the template is computed by the
caller (operator/gate.py), so this module does not decide what a new version is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

PROGRESSING = "Progressing"
NEW_REPLICA_SET_AVAILABLE = "NewReplicaSetAvailable"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"


class RolloutPhase(StrEnum):
    COMPLETE = "Complete"
    FAILED = "Failed"  # ProgressDeadlineExceeded for the latest spec
    SUPERSEDED = "Superseded"  # the template has another gate hash now
    PAUSED = "Paused"
    IN_PROGRESS = "InProgress"


@dataclass(frozen=True)
class RolloutState:
    phase: RolloutPhase
    message: str  # for people: what the rollout is waiting for, or why it failed

    @property
    def complete(self) -> bool:
        return self.phase is RolloutPhase.COMPLETE

    @property
    def failed(self) -> bool:
        return self.phase is RolloutPhase.FAILED


def _progressing(status: Mapping[str, Any]) -> Mapping[str, Any]:
    for condition in status.get("conditions") or []:
        if condition.get("type") == PROGRESSING:
            return dict(condition)
    return {}


def desired_replicas(deployment: Mapping[str, Any]) -> int:
    replicas = (deployment.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)  # the API server's default


def terminating_pods(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        str(pod.get("metadata", {}).get("name"))
        for pod in pods
        if (pod.get("metadata") or {}).get("deletionTimestamp")
    ]


def rollout_failed(deployment: Mapping[str, Any]) -> bool:
    """The deployment controller gave up on the latest template: ProgressDeadlineExceeded."""
    return reported_rollout(deployment).failed


def reported_rollout(deployment: Mapping[str, Any]) -> RolloutState:
    """The rollout of the Deployment's current template as its own status reports it: no pods
    read, and no gate hash to compare (the template is the one being judged)."""
    return rollout_state(deployment, (), gate_hash="", current_hash="")


def _controller_state(deployment: Mapping[str, Any]) -> RolloutState | None:
    """What the deployment controller reports against completion, None if it reports it done:
    it has not seen the latest spec, it gave up (failed), or it is still progressing."""
    generation = int((deployment.get("metadata") or {}).get("generation") or 0)
    observed = int((deployment.get("status") or {}).get("observedGeneration") or 0)
    if observed < generation:
        return RolloutState(
            RolloutPhase.IN_PROGRESS,
            f"the deployment controller has not yet seen generation {generation} "
            f"(observed {observed})",
        )
    progressing = _progressing(deployment.get("status") or {})
    reason = progressing.get("reason")
    if reason == PROGRESS_DEADLINE_EXCEEDED and progressing.get("status") == "False":
        detail = progressing.get("message") or "the rollout made no progress in time"
        return RolloutState(RolloutPhase.FAILED, f"{PROGRESS_DEADLINE_EXCEEDED}: {detail}")
    if progressing.get("status") != "True" or reason != NEW_REPLICA_SET_AVAILABLE:
        shown = f"{progressing.get('status')}/{reason}" if progressing else "not reported"
        return RolloutState(
            RolloutPhase.IN_PROGRESS,
            f"Progressing is {shown}, not True/{NEW_REPLICA_SET_AVAILABLE}",
        )
    return None


def _replica_state(deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> str:
    """What keeps a rollout that reports NewReplicaSetAvailable from being complete ('' if
    nothing): replicas not yet updated or available, old ones left, pods terminating."""
    status = deployment.get("status") or {}
    desired = desired_replicas(deployment)
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    if updated != desired:
        return f"{updated} of {desired} replicas updated"
    if available != desired:
        return f"{available} of {desired} updated replicas available"
    if total != updated:
        return f"{total - updated} old replicas pending termination"
    terminating = int(status.get("terminatingReplicas") or 0)
    names = terminating_pods(pods)
    if terminating or names:
        count = max(terminating, len(names))
        listed = f" ({', '.join(sorted(names))})" if names else ""
        return f"{count} pods terminating{listed}"
    return ""


def rollout_state(
    deployment: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    *,
    gate_hash: str,
    current_hash: str,
) -> RolloutState:
    """Where the rollout of `gate_hash` stands; `current_hash` is the gate hash of the
    Deployment's template as read now, `pods` the pods its selector matches."""
    if current_hash != gate_hash:
        return RolloutState(
            RolloutPhase.SUPERSEDED,
            f"the template changed (gate hash {current_hash}, not {gate_hash})",
        )
    if (deployment.get("spec") or {}).get("paused"):
        return RolloutState(RolloutPhase.PAUSED, "the Deployment is paused")
    reported = _controller_state(deployment)
    if reported is not None:
        return reported
    remaining = _replica_state(deployment, pods)
    if remaining:
        return RolloutState(RolloutPhase.IN_PROGRESS, remaining)
    return RolloutState(RolloutPhase.COMPLETE, "the rollout is complete")
