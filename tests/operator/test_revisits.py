"""Which statuses need a later look without an event (the operator's resync, lanes.later)."""

from __future__ import annotations

from typing import Any

from stagecraft.operator.models import DatabaseMigrationStatus
from stagecraft.operator.reconcile import needs_a_later_look


def _looked_at(status: dict[str, Any]) -> bool:
    return needs_a_later_look(DatabaseMigrationStatus.model_validate(status))


def _condition(type_: str, reason: str) -> dict[str, str]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "lastTransitionTime": "2026-11-29T09:00:00Z",
    }


def test_scheduled_retries_and_jobs_in_flight_are_looked_at_again() -> None:
    assert _looked_at({"nextRetryAt": "2026-01-01T00:00:00Z"})
    assert _looked_at({"lastRun": {"job": "db-1", "targetHash": "t", "result": "Running"}})
    assert not _looked_at({"lastRun": {"job": "db-1", "targetHash": "t", "result": "Succeeded"}})
    assert not _looked_at({})


def test_a_resource_waiting_for_a_rollout_is_looked_at_again() -> None:
    assert _looked_at({"conditions": [_condition("Reconciling", "WaitingForRollout")]})
    assert not _looked_at({"conditions": [_condition("Ready", "Succeeded")]})


def test_a_release_the_api_server_refused_is_looked_at_again() -> None:
    assert _looked_at({"conditions": [_condition("Reconciling", "ReleasePending")]})
