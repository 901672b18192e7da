"""Only the Deployment events that can change a decision reconcile the Deployment's users."""

from __future__ import annotations

import copy
from typing import Any

from stagecraft.operator.deployment_changes import Change, DecisiveChanges
from stagecraft.operator.gate import (
    PENDING_HASH_ANNOTATION,
    RESUME_REFUSED_ANNOTATION,
    confirmation_key,
)


def _rolling_out(updated: int = 1, image: str = "registry.example/shop-api:42") -> dict[str, Any]:
    """A Deployment of 2 replicas whose rollout of `image` is in flight."""
    return {
        "metadata": {"name": "shop-api", "namespace": "shop", "generation": 3, "annotations": {}},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "api", "image": image}]}},
        },
        "status": {
            "observedGeneration": 3,
            "replicas": 3,
            "updatedReplicas": updated,
            "availableReplicas": updated,
            "conditions": [
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
            ],
        },
    }


def _complete(terminating: int = 0) -> dict[str, Any]:
    deployment = _rolling_out(updated=2)
    deployment["status"]["replicas"] = 2
    deployment["status"]["terminatingReplicas"] = terminating
    deployment["status"]["conditions"] = [
        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
    ]
    return deployment


def _passes(changes: DecisiveChanges, body: dict[str, Any], event_type: str = "MODIFIED") -> bool:
    return changes.change("shop", "shop-api", event_type, body) is not None


def test_the_first_event_of_a_deployment_passes_and_an_identical_one_does_not() -> None:
    changes = DecisiveChanges()
    assert _passes(changes, _rolling_out(), "ADDED")
    assert not _passes(changes, _rolling_out())


def test_progress_within_a_rollout_is_dropped() -> None:
    changes = DecisiveChanges()
    assert _passes(changes, _rolling_out(updated=0))
    # A pod created, then ready: the counts move, the rollout is still in progress.
    assert not _passes(changes, _rolling_out(updated=1))
    assert not _passes(changes, _rolling_out(updated=2))


def test_the_end_of_a_rollout_passes_once_no_pod_is_terminating() -> None:
    changes = DecisiveChanges()
    assert _passes(changes, _rolling_out())
    # NewReplicaSetAvailable while an old pod terminates is not complete yet (no change) ...
    assert not _passes(changes, _complete(terminating=1))
    # ... the last old pod gone is (post_deploy runs on it).
    assert _passes(changes, _complete(terminating=0))


def test_a_new_image_passes() -> None:
    changes = DecisiveChanges()
    assert _passes(changes, _complete())
    assert _passes(changes, _complete() | {"spec": _rolling_out(image="shop-api:43")["spec"]})


def test_a_pause_a_resume_and_the_gate_annotations_pass() -> None:
    changes = DecisiveChanges()
    deployment = _complete()
    assert _passes(changes, deployment)
    paused = copy.deepcopy(deployment)
    paused["spec"]["paused"] = True
    assert _passes(changes, paused)
    pending = copy.deepcopy(paused)
    pending["metadata"]["annotations"][PENDING_HASH_ANNOTATION] = "0123456789abcdef"
    assert _passes(changes, pending)
    refused = copy.deepcopy(pending)
    refused["metadata"]["annotations"][RESUME_REFUSED_ANNOTATION] = "alice"
    assert _passes(changes, refused)
    # Another resource gating the Deployment confirmed: the last one to succeed releases.
    confirmed = copy.deepcopy(refused)
    confirmed["metadata"]["annotations"][confirmation_key("audit-db")] = "0123456789abcdef"
    assert _passes(changes, confirmed)
    assert _passes(changes, deployment)  # back to where it was: a change all the same


def test_a_new_generation_passes() -> None:
    changes = DecisiveChanges()
    deployment = _complete()
    assert _passes(changes, deployment)
    scaled = copy.deepcopy(deployment)
    scaled["metadata"]["generation"] = 4
    assert _passes(changes, scaled)


def test_a_deletion_passes_and_forgets_the_deployment() -> None:
    changes = DecisiveChanges()
    assert _passes(changes, _complete())
    assert _passes(changes, _complete(), "DELETED")
    assert changes.tracked == 0
    assert _passes(changes, _complete(), "ADDED")  # created again under the same name


def test_deployments_are_told_apart_by_namespace_and_name() -> None:
    changes = DecisiveChanges()
    assert changes.change("shop", "shop-api", "ADDED", _complete())
    assert changes.change("blog", "shop-api", "ADDED", _complete())
    assert changes.change("shop", "worker", "ADDED", _complete())
    assert changes.change("blog", "shop-api", "MODIFIED", _complete()) is None


def test_a_rollout_that_completes_or_fails_is_told_apart_from_other_changes() -> None:
    changes = DecisiveChanges()
    assert changes.change("shop", "shop-api", "ADDED", _rolling_out()) is Change.OTHER
    assert changes.change("shop", "shop-api", "MODIFIED", _complete()) is Change.ROLLOUT_ENDED
    failed = _rolling_out()
    failed["status"]["conditions"] = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    ]
    assert changes.change("shop", "shop-api", "MODIFIED", failed) is Change.ROLLOUT_ENDED
    assert changes.change("shop", "shop-api", "DELETED", failed) is Change.DELETED


def test_a_new_template_whose_rollout_ended_in_one_go_has_ended() -> None:
    """kopf hands over only the latest of the events that arrive together: a short rollout's
    new image and completion can come as one event, complete before and after."""
    changes = DecisiveChanges()
    assert changes.change("shop", "shop-api", "ADDED", _complete()) is Change.ROLLOUT_ENDED
    shipped = _complete()
    shipped["spec"] = _rolling_out(image="registry.example/shop-api:43")["spec"]
    shipped["metadata"]["generation"] = 4
    shipped["status"]["observedGeneration"] = 4
    assert changes.change("shop", "shop-api", "MODIFIED", shipped) is Change.ROLLOUT_ENDED
    # Still complete, only the gate's annotations changed: nothing ended.
    annotated = copy.deepcopy(shipped)
    annotated["metadata"]["annotations"][PENDING_HASH_ANNOTATION] = "0123456789abcdef"
    assert changes.change("shop", "shop-api", "MODIFIED", annotated) is Change.OTHER
