"""manual: a run request may be bound to the plan shown in the status; another plan's is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stagecraft.operator.conditions import Phase, Reason
from stagecraft.operator.manifests import MigrationSource, target_hash
from stagecraft.operator.models import RunRecord
from stagecraft.operator.planner import Action, Observed, decide
from stagecraft.operator.validation import validate_spec

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SOURCE = MigrationSource(image="shop-api:42")
STALE_PLAN = "0123456789abcdef"


def _spec() -> dict[str, Any]:
    return {
        "migrations": {"engine": "raw", "path": "/app/migrations", "strategy": "manual"},
        "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        "deployment": {"name": "shop-api"},
    }


def _plan() -> str:
    spec = validate_spec(_spec()).spec
    assert spec is not None
    return target_hash(spec, SOURCE)


def _observed(request: str | None = None, handled: bool = False, **overrides: Any) -> Observed:
    fields: dict[str, Any] = {
        "resource_name": "shop-db",
        "validation": validate_spec(_spec()),
        "source": SOURCE,
        "now": NOW,
        "run_request": None if handled else request,
        "run_request_annotation": request,
    }
    fields.update(overrides)
    return Observed(**fields)


def test_waiting_status_names_the_plan_a_request_must_name() -> None:
    decision = decide(_observed())
    assert decision.verdict.reason is Reason.WAITING_FOR_RUN_REQUEST
    assert f"--plan {_plan()}" in decision.verdict.message
    assert decision.target_hash == _plan()


def test_request_bound_to_the_current_plan_runs_and_is_consumed() -> None:
    request = f"t1;plan={_plan()}"
    decision = decide(_observed(request))
    assert decision.action is Action.CREATE_JOB
    assert decision.consumed_run_request == request
    assert decision.refused_run_request is None


def test_request_for_a_stale_plan_is_refused_and_consumed_not_run() -> None:
    request = f"t1;plan={STALE_PLAN}"
    decision = decide(_observed(request))
    assert decision.action is Action.WAIT
    assert decision.verdict.phase is Phase.WAITING
    assert decision.refused_run_request == request
    assert decision.consumed_run_request == request
    assert f"is for plan {STALE_PLAN}, not for the current plan {_plan()}" in (
        decision.verdict.message
    )


def test_a_refused_request_is_refused_once_and_still_explained() -> None:
    decision = decide(_observed(f"t1;plan={STALE_PLAN}", handled=True))
    assert decision.action is Action.WAIT
    assert decision.refused_run_request is None
    assert decision.consumed_run_request is None
    assert STALE_PLAN in decision.verdict.message


def test_stale_request_after_a_recorded_run_keeps_the_result_and_runs_nothing() -> None:
    recorded = RunRecord(job="j", target_hash=_plan(), result="Succeeded")
    decision = decide(_observed(f"t2;plan={STALE_PLAN}", last_run=recorded))
    assert decision.action is Action.KEEP_RESULT
    assert decision.verdict.phase is Phase.READY
    assert decision.refused_run_request == f"t2;plan={STALE_PLAN}"


def test_bound_request_for_the_current_plan_runs_again_after_a_recorded_run() -> None:
    recorded = RunRecord(job="j", target_hash=_plan(), result="Succeeded")
    decision = decide(_observed(f"t2;plan={_plan()}", last_run=recorded))
    assert decision.action is Action.CREATE_JOB
    assert decision.run is not None
    assert decision.run.attempt == 2


def test_unbound_request_still_runs() -> None:
    decision = decide(_observed("t1"))
    assert decision.action is Action.CREATE_JOB
    assert decision.refused_run_request is None


def test_plan_binding_means_nothing_to_other_strategies() -> None:
    spec = {**_spec(), "migrations": {"engine": "raw", "path": "/app/migrations"}}
    decision = decide(_observed(f"t1;plan={STALE_PLAN}", validation=validate_spec(spec)))
    assert decision.refused_run_request is None
    assert STALE_PLAN not in decision.verdict.message
