"""A rollout is complete only when every condition post_deploy relies on holds."""

from __future__ import annotations

import copy
from typing import Any

from stagecraft.operator.rollout import (
    RolloutPhase,
    desired_replicas,
    rollout_failed,
    rollout_state,
)


def _complete_deployment(replicas: int = 2) -> dict[str, Any]:
    """A Deployment as the API server shows it once the rollout of its template is complete."""
    return {
        "metadata": {"name": "shop-api", "generation": 3},
        "spec": {"replicas": replicas, "template": {}},
        "status": {
            "observedGeneration": 3,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": 'ReplicaSet "shop-api-abc" has successfully progressed.',
                },
            ],
        },
    }


def _with(deployment: dict[str, Any], **status: Any) -> dict[str, Any]:
    changed = copy.deepcopy(deployment)
    changed["status"].update(status)
    return changed


def _with_progressing(status: str, reason: str, message: str = "") -> dict[str, Any]:
    deployment = _complete_deployment()
    deployment["status"]["conditions"][1] = {
        "type": "Progressing",
        "status": status,
        "reason": reason,
        "message": message,
    }
    return deployment


def _state(
    deployment: dict[str, Any],
    pods: tuple[dict[str, Any], ...] = (),
    current_hash: str = "h1",
) -> tuple[RolloutPhase, str]:
    state = rollout_state(deployment, pods, gate_hash="h1", current_hash=current_hash)
    return state.phase, state.message


def test_complete_rollout_is_complete() -> None:
    state = rollout_state(_complete_deployment(), (), gate_hash="h1", current_hash="h1")
    assert state.complete
    assert not state.failed


def test_a_newer_template_supersedes_the_hash() -> None:
    phase, message = _state(_complete_deployment(), current_hash="h2")
    assert phase is RolloutPhase.SUPERSEDED
    assert "h2" in message


def test_paused_deployment_is_not_complete() -> None:
    deployment = _complete_deployment()
    deployment["spec"]["paused"] = True
    assert _state(deployment)[0] is RolloutPhase.PAUSED


def test_unobserved_generation_is_not_complete_even_if_the_old_rollout_was() -> None:
    deployment = _with(_complete_deployment(), observedGeneration=2)
    phase, message = _state(deployment)
    assert phase is RolloutPhase.IN_PROGRESS
    assert "generation 3" in message


def test_missing_status_is_in_progress() -> None:
    deployment = _complete_deployment()
    del deployment["status"]
    assert _state(deployment)[0] is RolloutPhase.IN_PROGRESS


def test_replica_set_updated_is_still_in_progress() -> None:
    deployment = _with_progressing("True", "ReplicaSetUpdated")
    phase, message = _state(deployment)
    assert phase is RolloutPhase.IN_PROGRESS
    assert "True/ReplicaSetUpdated" in message


def test_no_progressing_condition_is_in_progress() -> None:
    deployment = _complete_deployment()
    deployment["status"]["conditions"] = deployment["status"]["conditions"][:1]
    phase, message = _state(deployment)
    assert phase is RolloutPhase.IN_PROGRESS
    assert "not reported" in message


def test_progress_deadline_exceeded_is_failed() -> None:
    deployment = _with_progressing(
        "False", "ProgressDeadlineExceeded", 'ReplicaSet "shop-api-def" has timed out progressing.'
    )
    phase, message = _state(deployment)
    assert phase is RolloutPhase.FAILED
    assert "shop-api-def" in message
    assert rollout_failed(deployment)
    assert not rollout_failed(_complete_deployment())


def test_a_deadline_exceeded_for_an_older_generation_is_not_a_failure_of_the_new_one() -> None:
    deployment = _with_progressing("False", "ProgressDeadlineExceeded")
    deployment["metadata"]["generation"] = 4  # a new template the controller has not seen yet
    assert _state(deployment)[0] is RolloutPhase.IN_PROGRESS
    assert not rollout_failed(deployment)


def test_fewer_updated_replicas_than_desired_is_in_progress() -> None:
    phase, message = _state(_with(_complete_deployment(), updatedReplicas=1))
    assert phase is RolloutPhase.IN_PROGRESS
    assert message == "1 of 2 replicas updated"


def test_updated_replicas_not_yet_available_is_in_progress() -> None:
    phase, message = _state(_with(_complete_deployment(), availableReplicas=1))
    assert phase is RolloutPhase.IN_PROGRESS
    assert message == "1 of 2 updated replicas available"


def test_old_replicas_left_is_in_progress() -> None:
    phase, message = _state(_with(_complete_deployment(), replicas=3))
    assert phase is RolloutPhase.IN_PROGRESS
    assert message == "1 old replicas pending termination"


def test_terminating_replicas_in_status_are_in_progress() -> None:
    phase, message = _state(_with(_complete_deployment(), terminatingReplicas=1))
    assert phase is RolloutPhase.IN_PROGRESS
    assert message == "1 pods terminating"


def test_a_terminating_pod_is_in_progress_where_the_status_has_no_count() -> None:
    pods = (
        {"metadata": {"name": "shop-api-abc-1"}},
        {"metadata": {"name": "shop-api-old-1", "deletionTimestamp": "2026-01-01T00:00:00Z"}},
    )
    phase, message = _state(_complete_deployment(), pods)
    assert phase is RolloutPhase.IN_PROGRESS
    assert message == "1 pods terminating (shop-api-old-1)"


def test_replicas_default_to_one_and_zero_replicas_complete_with_no_pods() -> None:
    deployment = _complete_deployment(replicas=1)
    del deployment["spec"]["replicas"]
    assert desired_replicas(deployment) == 1
    assert _state(deployment)[0] is RolloutPhase.COMPLETE

    empty = _complete_deployment(replicas=0)
    for count in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
        del empty["status"][count]  # the API server omits zero counts
    assert _state(empty)[0] is RolloutPhase.COMPLETE
