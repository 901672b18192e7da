"""The planner: observed state in, one next action out, in the order of its named steps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from stagecraft.operator.conditions import Phase, Reason
from stagecraft.operator.manifests import MigrationSource, job_name, target_hash
from stagecraft.operator.models import RunFailure, RunRecord
from stagecraft.operator.planner import Action, DeploymentObservation, Observed, RetryPolicy, decide
from stagecraft.operator.runs import JobObservation
from stagecraft.operator.validation import validate_spec

SOURCE = MigrationSource(image="shop-api:41")
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(first_delay_seconds=10, max_delay_seconds=60, max_attempts=3)


def _raw_spec(**migrations: Any) -> dict[str, Any]:
    return {
        "migrations": {"engine": "raw", "path": "/app/migrations", **migrations},
        "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        "deployment": {"name": "shop-api"},
    }


def _target(**migrations: Any) -> str:
    spec = validate_spec(_raw_spec(**migrations)).spec
    assert spec is not None
    return target_hash(spec, SOURCE)


def _observed(**overrides: Any) -> Observed:
    fields: dict[str, Any] = {
        "resource_name": "shop-db",
        "validation": validate_spec(_raw_spec()),
        "source": SOURCE,
        "now": NOW,
        "retry_policy": POLICY,
    }
    fields.update(overrides)
    return Observed(**fields)


def _job(active: bool, succeeded: bool = False, message: str | None = None) -> JobObservation:
    return JobObservation(
        name=job_name("shop-db", _target()),
        target_hash=_target(),
        active=active,
        succeeded=succeeded,
        termination_message=message,
    )


def test_invalid_spec_stalls_with_the_validation_message() -> None:
    decision = decide(_observed(validation=validate_spec(_raw_spec(engine="flyway"))))
    assert decision.action is Action.STALL
    assert (decision.verdict.phase, decision.verdict.reason) == (Phase.STALLED, Reason.INVALID_SPEC)
    assert "unknown migration engine 'flyway'" in decision.verdict.message


def test_a_missing_config_map_stalls_with_the_reason() -> None:
    spec = _raw_spec()
    spec["configMap"] = {"name": "shop-migrations"}
    problem = "ConfigMap shop/shop-migrations not found"
    observed = _observed(validation=validate_spec(spec), source=None, source_problem=problem)
    decision = decide(observed)
    assert decision.action is Action.STALL
    assert decision.verdict.reason is Reason.SOURCE_NOT_FOUND
    assert decision.verdict.message == problem


def test_a_deployment_without_the_named_container_stalls() -> None:
    problem = "Deployment shop/shop-api has no container 'api'"
    deployment = DeploymentObservation({"metadata": {"name": "shop-api"}, "spec": {}})
    decision = decide(_observed(source=None, source_problem=problem, deployment=deployment))
    assert decision.action is Action.STALL
    assert decision.verdict.reason is Reason.SOURCE_NOT_FOUND


def test_a_missing_deployment_is_waited_for_and_its_creation_will_be_gated() -> None:
    decision = decide(_observed(source=None, source_problem="Deployment shop/shop-api not found"))
    assert decision.action is Action.WAIT
    assert decision.verdict.phase is Phase.WAITING
    assert decision.verdict.reason is Reason.WAITING_FOR_DEPLOYMENT
    assert "Deployment shop-api" in decision.verdict.message
    assert "pauses it in the write that creates it" in decision.verdict.message
    assert decision.gate is None


def test_a_post_deploy_resource_waits_for_its_deployment_to_roll_out_first() -> None:
    spec = validate_spec(_raw_spec(strategy="post_deploy"))
    decision = decide(_observed(validation=spec, source=None, source_problem="not found"))
    assert decision.verdict.reason is Reason.WAITING_FOR_DEPLOYMENT
    assert "once its first rollout is complete" in decision.verdict.message


def test_new_target_creates_its_job() -> None:
    decision = decide(_observed())
    assert decision.action is Action.CREATE_JOB
    assert decision.target_hash == _target()
    assert decision.job_name == job_name("shop-db", _target())
    assert decision.verdict.phase is Phase.RECONCILING
    assert decision.run is not None
    assert decision.run.result == "Running"


def test_running_job_is_waited_for() -> None:
    decision = decide(_observed(job=_job(active=True)))
    assert decision.action is Action.WAIT_FOR_JOB
    assert decision.verdict.reason is Reason.JOB_RUNNING


def test_finished_job_has_its_result_recorded() -> None:
    message = json.dumps(
        {"kind": "run", "status": "succeeded", "applied": [{"id": "0001.sql", "duration_ms": 4}]}
    )
    decision = decide(_observed(job=_job(active=False, succeeded=True, message=message)))
    assert decision.action is Action.RECORD_RESULT
    assert decision.verdict.phase is Phase.READY
    assert decision.run is not None
    assert decision.run.target_hash == _target()
    assert [entry.id for entry in decision.run.applied] == ["0001.sql"]


def test_recorded_target_is_never_run_again_even_when_its_job_is_gone() -> None:
    recorded = RunRecord(job="old", target_hash=_target(), result="Succeeded", applied_count=2)
    decision = decide(_observed(last_run=recorded, job=None))
    assert decision.action is Action.KEEP_RESULT
    assert decision.verdict.phase is Phase.READY


def test_recorded_failure_stays_stalled_without_a_new_job() -> None:
    recorded = RunRecord(job="old", target_hash=_target(), result="Failed")
    decision = decide(_observed(last_run=recorded))
    assert decision.action is Action.KEEP_RESULT
    assert decision.verdict.phase is Phase.STALLED


def test_a_result_for_an_older_target_does_not_stop_a_new_run() -> None:
    recorded = RunRecord(job="old", target_hash="0000000000000000", result="Succeeded")
    assert decide(_observed(last_run=recorded)).action is Action.CREATE_JOB


def test_a_job_of_another_target_is_not_taken_for_this_one() -> None:
    stale = JobObservation(name="shop-db-0000000000", target_hash="x", active=True, succeeded=False)
    assert decide(_observed(job=stale)).action is Action.CREATE_JOB


def test_manual_strategy_waits_for_a_run_request() -> None:
    decision = decide(_observed(validation=validate_spec(_raw_spec(strategy="manual"))))
    assert decision.action is Action.WAIT
    assert decision.verdict.reason is Reason.WAITING_FOR_RUN_REQUEST
    assert decision.verdict.phase is Phase.WAITING


def test_manual_strategy_runs_when_requested_and_consumes_the_request() -> None:
    observed = _observed(validation=validate_spec(_raw_spec(strategy="manual")), run_request="r1")
    decision = decide(observed)
    assert decision.action is Action.CREATE_JOB
    assert decision.consumed_run_request == "r1"


def test_manual_strategy_runs_again_on_a_new_request_after_a_recorded_run() -> None:
    recorded = RunRecord(job="j", target_hash=_target(), result="Succeeded", attempt=1)
    manual = validate_spec(_raw_spec(strategy="manual"))
    decision = decide(_observed(validation=manual, last_run=recorded, run_request="r2"))
    assert decision.action is Action.CREATE_JOB
    assert decision.run is not None
    assert decision.run.attempt == 2
    assert decision.job_name == job_name("shop-db", _target(), 2)


def test_run_request_means_nothing_to_other_strategies() -> None:
    recorded = RunRecord(job="j", target_hash=_target(), result="Succeeded")
    decision = decide(_observed(last_run=recorded, run_request="r1"))
    assert decision.action is Action.KEEP_RESULT
    assert decision.consumed_run_request is None


def _failed(error: str | None, attempt: int = 1, finished: datetime = NOW) -> RunRecord:
    return RunRecord(
        job=job_name("shop-db", _target(), attempt),
        target_hash=_target(),
        attempt=attempt,
        result="Failed",
        finished_at=finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        failure=RunFailure(error=error, message="boom"),
    )


def test_retry_request_starts_a_fresh_attempt_after_a_failed_migration() -> None:
    decision = decide(_observed(last_run=_failed("MigrationFailed"), retry_request="t1"))
    assert decision.action is Action.CREATE_JOB
    assert decision.run is not None
    assert decision.run.attempt == 2
    assert decision.consumed_retry == "t1"


def test_failed_migration_is_not_retried_automatically() -> None:
    later = _observed(last_run=_failed("MigrationFailed"), now=NOW + timedelta(days=1))
    assert decide(later).action is Action.KEEP_RESULT


def test_transient_failure_waits_for_its_backoff_as_reconciling() -> None:
    decision = decide(_observed(last_run=_failed("DatabaseUnavailable"), now=NOW))
    assert decision.action is Action.WAIT
    assert decision.verdict.phase is Phase.RECONCILING
    assert decision.verdict.reason is Reason.RETRY_SCHEDULED
    assert decision.next_retry_at == NOW + timedelta(seconds=10)


def test_transient_failure_is_retried_once_its_backoff_passed() -> None:
    observed = _observed(last_run=_failed("DatabaseUnavailable"), now=NOW + timedelta(seconds=10))
    decision = decide(observed)
    assert decision.action is Action.CREATE_JOB
    assert decision.run is not None
    assert decision.run.attempt == 2


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(first_delay_seconds=10, max_delay_seconds=60, max_attempts=10)
    delays = [policy.delay_after(attempt).total_seconds() for attempt in range(1, 6)]
    assert delays == [10, 20, 40, 60, 60]


def test_transient_failures_stop_being_retried_at_the_limit() -> None:
    last = _failed("DatabaseUnavailable", attempt=POLICY.max_attempts)
    decision = decide(_observed(last_run=last, now=NOW + timedelta(days=1)))
    assert decision.action is Action.KEEP_RESULT
    assert decision.verdict.phase is Phase.STALLED
    assert decision.verdict.reason is Reason.DATABASE_UNAVAILABLE


def test_later_attempt_follows_its_own_job() -> None:
    running = RunRecord(
        job=job_name("shop-db", _target(), 2), target_hash=_target(), attempt=2, result="Running"
    )
    job = JobObservation(
        name=job_name("shop-db", _target(), 2), target_hash=_target(), active=True, succeeded=False
    )
    decision = decide(_observed(last_run=running, job=job))
    assert decision.action is Action.WAIT_FOR_JOB
    assert decision.run is not None
    assert decision.run.attempt == 2


def test_recording_a_transient_failure_schedules_its_retry_at_once() -> None:
    message = json.dumps(
        {
            "kind": "run",
            "status": "failed",
            "error": {"type": "DatabaseUnavailable", "message": "x"},
        }
    )
    job = JobObservation(
        name=job_name("shop-db", _target()),
        target_hash=_target(),
        active=False,
        succeeded=False,
        finished_at="2026-01-01T12:00:00Z",
        termination_message=message,
    )
    decision = decide(_observed(job=job))
    assert decision.action is Action.RECORD_RESULT
    assert decision.verdict.reason is Reason.RETRY_SCHEDULED
    assert decision.next_retry_at == NOW + timedelta(seconds=10)
    assert decision.run is not None
    assert decision.run.result == "Failed"


def test_recording_a_failed_migration_schedules_nothing() -> None:
    message = json.dumps(
        {"kind": "run", "status": "failed", "error": {"type": "MigrationFailed", "message": "x"}}
    )
    decision = decide(_observed(job=_job(active=False, message=message)))
    assert decision.action is Action.RECORD_RESULT
    assert decision.verdict.reason is Reason.MIGRATION_FAILED
    assert decision.next_retry_at is None


def test_retry_time_recorded_in_status_is_the_one_kept() -> None:
    scheduled = NOW + timedelta(seconds=3)
    waiting = decide(
        _observed(last_run=_failed("DatabaseUnavailable"), scheduled_retry_at=scheduled)
    )
    assert waiting.action is Action.WAIT
    assert waiting.next_retry_at == scheduled
    due = _observed(
        last_run=_failed("DatabaseUnavailable"), scheduled_retry_at=scheduled, now=scheduled
    )
    assert decide(due).action is Action.CREATE_JOB
