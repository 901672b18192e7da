"""kstatus conditions: Ready, Reconciling and Stalled, always set together, and every reason.

Flux reads these conditions as they are, and the Argo CD health check maps them: Stalled means a
person must act, Reconciling means work is in flight, Ready means the database is at the target.
Reasons are the constants below and nowhere else, so dashboards and docs can list them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from .models import Condition, ConditionStatus

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
CONDITION_TYPES = (READY, RECONCILING, STALLED)


class Reason(StrEnum):
    # Ready=True
    SUCCEEDED = "Succeeded"  # the last run for the current target applied everything
    # Reconciling=True
    JOB_RUNNING = "JobRunning"  # a migration Job for the current target is in flight
    RETRY_SCHEDULED = "RetryScheduled"  # a transient failure; the next attempt starts by itself
    WAITING_FOR_ROLLOUT = "WaitingForRollout"  # post_deploy: the new version is not fully out yet
    # pre_deploy: the migration succeeded, and releasing the Deployment failed with an API
    # error; a revisit a few seconds later tries again
    RELEASE_PENDING = "ReleasePending"
    # Stalled=True: a person has to act
    INVALID_SPEC = "InvalidSpec"  # the spec fails the checks of stagecraft.yml or the registry
    SOURCE_NOT_FOUND = "SourceNotFound"  # no such ConfigMap, or no such container
    MIGRATION_FAILED = "MigrationFailed"  # a migration's SQL failed; status names file and message
    RUN_REFUSED = "RunRefused"  # the plan has problems (dirty, edited, missing, out of order)
    DATABASE_UNAVAILABLE = "DatabaseUnavailable"  # the Job gave up reaching the database
    JOB_FAILED = "JobFailed"  # the Job failed without a readable run summary
    GATE_BYPASSED = "GateBypassed"  # pre_deploy: pods of a template run before its migration
    ROLLOUT_FAILED = "RolloutFailed"  # post_deploy: the rollout hit ProgressDeadlineExceeded
    # Neither in flight nor stalled: nothing happens until something outside changes
    WAITING_FOR_RUN_REQUEST = "WaitingForRunRequest"  # manual strategy, no request yet
    # spec.deployment, the source of the files, does not exist yet (a first install in an earlier
    # GitOps sync wave than its Deployment); pre_deploy gates its creation
    WAITING_FOR_DEPLOYMENT = "WaitingForDeployment"


class EventReason(StrEnum):
    """Reasons of the Kubernetes Events posted on a DatabaseMigration."""

    RUN_STARTED = "RunStarted"
    RUN_SUCCEEDED = "RunSucceeded"
    RUN_FAILED = "RunFailed"
    DEPLOYMENT_RELEASED = "DeploymentReleased"  # pre_deploy: the migrated template rolls out
    RESUME_REFUSED = "ResumeRefused"  # pre_deploy: a resume while pending was paused again
    # pre_deploy no longer applies (another strategy or Deployment) while a template was held:
    # it was released without its migration
    GATE_REMOVED = "GateRemoved"
    RUN_REQUEST_REFUSED = "RunRequestRefused"  # a run request bound to a plan that is not current


class Phase(StrEnum):
    """Which of the three conditions is True; the other two are False."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    WAITING = "Waiting"  # none of them: not at the target, but nothing in flight nor broken


_TRUE_CONDITION = {Phase.READY: READY, Phase.RECONCILING: RECONCILING, Phase.STALLED: STALLED}


@dataclass(frozen=True)
class Verdict:
    """What the status should say now: one phase with its reason and a message for people."""

    phase: Phase
    reason: Reason
    message: str


def _status_of(condition_type: str, phase: Phase) -> ConditionStatus:
    return "True" if _TRUE_CONDITION.get(phase) == condition_type else "False"


def updated_conditions(
    existing: Sequence[Condition], verdict: Verdict, generation: int, now: str
) -> list[Condition]:
    """The three conditions for `verdict`, stamped with `generation`.

    A condition keeps its lastTransitionTime while its status does not change, so the time says
    when it last flipped, as kstatus and `kubectl wait` expect. Conditions of other types that
    someone else wrote are kept as they are.
    """
    previous = {condition.type: condition for condition in existing}
    conditions: list[Condition] = []
    for condition_type in CONDITION_TYPES:
        status = _status_of(condition_type, verdict.phase)
        old = previous.get(condition_type)
        transition = old.last_transition_time if old and old.status == status else now
        conditions.append(
            Condition(
                type=condition_type,
                status=status,
                reason=verdict.reason,
                message=verdict.message,
                observed_generation=generation,
                last_transition_time=transition,
            )
        )
    others = [condition for condition in existing if condition.type not in CONDITION_TYPES]
    return conditions + others
