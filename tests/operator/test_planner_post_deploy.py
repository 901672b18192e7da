"""post_deploy: the Job for a new version runs only once its rollout is complete."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from stagecraft.operator.conditions import Phase, Reason
from stagecraft.operator.gate import deployment_gate_hash
from stagecraft.operator.manifests import MigrationSource
from stagecraft.operator.models import RunRecord
from stagecraft.operator.planner import (
    Action,
    DeploymentObservation,
    Observed,
    decide,
    pods_matter,
)
from stagecraft.operator.validation import validate_spec

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
IMAGE = "shop-api:42"


def _spec(strategy: str = "post_deploy") -> dict[str, Any]:
    return {
        "migrations": {"engine": "raw", "path": "/app/migrations", "strategy": strategy},
        "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        "deployment": {"name": "shop-api", "containers": ["api"]},
    }


def _deployment(**status: Any) -> dict[str, Any]:
    """shop-api at IMAGE, its rollout complete unless `status` says otherwise."""
    complete: dict[str, Any] = {
        "observedGeneration": 2,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ],
    }
    complete.update(status)
    return {
        "metadata": {"name": "shop-api", "generation": 2},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "api", "image": IMAGE}]}},
        },
        "status": complete,
    }


def _progressing(status: str, reason: str) -> list[dict[str, Any]]:
    return [{"type": "Progressing", "status": status, "reason": reason, "message": "m"}]


def _observed(
    body: dict[str, Any] | None, strategy: str = "post_deploy", **overrides: Any
) -> Observed:
    observation = DeploymentObservation(body) if body is not None else None
    fields: dict[str, Any] = {
        "resource_name": "shop-db",
        "validation": validate_spec(_spec(strategy)),
        "source": MigrationSource(image=IMAGE),
        "now": NOW,
        "deployment": observation,
    }
    fields.update(overrides)
    return Observed(**fields)


def test_complete_rollout_starts_the_job() -> None:
    decision = decide(_observed(_deployment()))
    assert decision.action is Action.CREATE_JOB


def test_rollout_in_flight_waits_and_says_for_what() -> None:
    deployment = _deployment(
        updatedReplicas=1, conditions=_progressing("True", "ReplicaSetUpdated")
    )
    decision = decide(_observed(deployment))
    assert decision.action is Action.WAIT
    assert decision.verdict.phase is Phase.RECONCILING
    assert decision.verdict.reason is Reason.WAITING_FOR_ROLLOUT
    gate = deployment_gate_hash(deployment, ["api"])
    assert f"rollout of Deployment shop-api (gate hash {gate})" in decision.verdict.message
    assert "True/ReplicaSetUpdated" in decision.verdict.message


def test_unobserved_new_template_waits_although_the_old_rollout_was_complete() -> None:
    deployment = _deployment(observedGeneration=1)
    assert decide(_observed(deployment)).verdict.reason is Reason.WAITING_FOR_ROLLOUT


def test_paused_deployment_waits() -> None:
    deployment = _deployment()
    deployment["spec"]["paused"] = True
    decision = decide(_observed(deployment))
    assert decision.action is Action.WAIT
    assert "paused" in decision.verdict.message


def test_terminating_old_pod_waits() -> None:
    pod = {"metadata": {"name": "shop-api-old-x", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    observed = _observed(None, deployment=DeploymentObservation(_deployment(), (pod,)))
    decision = decide(observed)
    assert decision.action is Action.WAIT
    assert "shop-api-old-x" in decision.verdict.message


def test_failed_rollout_stalls_and_runs_nothing() -> None:
    deployment = _deployment(conditions=_progressing("False", "ProgressDeadlineExceeded"))
    decision = decide(_observed(deployment))
    assert decision.action is Action.WAIT
    assert decision.verdict.phase is Phase.STALLED
    assert decision.verdict.reason is Reason.ROLLOUT_FAILED
    assert "ProgressDeadlineExceeded" in decision.verdict.message


def test_missing_deployment_waits_when_the_files_come_from_elsewhere() -> None:
    spec = {**_spec(), "image": "migrations:7"}
    observed = _observed(None, validation=validate_spec(spec))
    decision = decide(observed)
    assert decision.verdict.reason is Reason.WAITING_FOR_ROLLOUT
    assert "Deployment shop-api" in decision.verdict.message


def test_recorded_run_for_the_target_is_kept_whatever_the_rollout_does() -> None:
    first = decide(_observed(_deployment()))
    assert first.target_hash is not None
    recorded = RunRecord(job="j", target_hash=first.target_hash, result="Succeeded")
    failing = _deployment(conditions=_progressing("False", "ProgressDeadlineExceeded"))
    decision = decide(_observed(failing, last_run=recorded))
    assert decision.action is Action.KEEP_RESULT
    assert decision.verdict.phase is Phase.READY


def test_a_superseding_template_is_a_new_target_that_waits_for_its_own_rollout() -> None:
    first = decide(_observed(_deployment()))
    assert first.target_hash is not None
    recorded = RunRecord(job="j", target_hash=first.target_hash, result="Succeeded")
    newer = copy.deepcopy(_deployment(observedGeneration=2))
    newer["metadata"]["generation"] = 3
    newer["spec"]["template"]["spec"]["containers"][0]["image"] = "shop-api:43"
    observed = _observed(newer, last_run=recorded, source=MigrationSource(image="shop-api:43"))

    decision = decide(observed)

    assert decision.target_hash != first.target_hash
    assert decision.action is Action.WAIT
    assert decision.verdict.reason is Reason.WAITING_FOR_ROLLOUT
    assert deployment_gate_hash(newer, ["api"]) in decision.verdict.message


def test_other_strategies_ignore_the_rollout() -> None:
    in_flight = _deployment(conditions=_progressing("True", "ReplicaSetUpdated"))
    decision = decide(_observed(in_flight, strategy="manual", run_request="r1"))
    assert decision.action is Action.CREATE_JOB


def test_pods_are_read_only_to_see_terminating_ones_before_a_first_run() -> None:
    spec = validate_spec(_spec()).spec
    assert spec is not None
    in_flight = _deployment(updatedReplicas=1, conditions=_progressing("True", "ReplicaSetUpdated"))
    run = RunRecord(job="shop-db-x", target_hash="t1", result="Succeeded")

    assert pods_matter(spec, _deployment(), None, "t1")  # complete but for terminating pods
    assert not pods_matter(spec, in_flight, None, "t1")  # the Deployment alone says: wait
    assert not pods_matter(spec, _deployment(), run, "t1")  # the target ran: rollout is moot
    assert pods_matter(spec, _deployment(), run, "t2")  # a new target's first run
    counted = _deployment(terminatingReplicas=0)  # the cluster counts terminating pods
    assert not pods_matter(spec, counted, None, "t1")
    manual = validate_spec(_spec("manual")).spec
    assert manual is not None
    assert not pods_matter(manual, _deployment(), None, "t1")
