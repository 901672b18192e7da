"""A finished Job's termination message becomes the status's run record and verdict."""

from __future__ import annotations

import json
from typing import Any

from stagecraft.operator.conditions import Phase, Reason
from stagecraft.operator.runs import JobObservation, job_finished, run_record, verdict_for


def _document(**fields: Any) -> str:
    document = {"version": 1, "kind": "run", "status": "succeeded", "applied": [], "error": None}
    document.update(fields)
    return json.dumps(document)


def _finished(succeeded: bool, message: str | None, **fields: Any) -> JobObservation:
    return JobObservation(
        name="shop-db-0123456789",
        target_hash="abc",
        active=False,
        succeeded=succeeded,
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:00:03Z",
        termination_message=message,
        **fields,
    )


def test_successful_run_records_applied_migrations_with_durations() -> None:
    message = _document(
        applied=[{"id": "0001_init.sql", "duration_ms": 12}, {"id": "0002_b.sql", "duration_ms": 3}]
    )
    run = run_record(_finished(True, message))
    assert run.result == "Succeeded"
    assert [(entry.id, entry.duration_ms) for entry in run.applied] == [
        ("0001_init.sql", 12),
        ("0002_b.sql", 3),
    ]
    assert run.applied_count == 2
    assert run.failure is None
    assert (run.started_at, run.finished_at) == ("2026-01-01T00:00:00Z", "2026-01-01T00:00:03Z")


def test_success_makes_the_resource_ready() -> None:
    verdict = verdict_for(run_record(_finished(True, _document(applied=[{"id": "a.sql"}]))))
    assert (verdict.phase, verdict.reason) == (Phase.READY, Reason.SUCCEEDED)
    assert "applied 1 migration(s)" in verdict.message


def test_failed_migration_names_file_and_database_message() -> None:
    error = {
        "type": "MigrationFailed",
        "message": "migration 0002_b.sql failed at /m/0002_b.sql:1:8: syntax error at or near "
        '"TABL" (SQLSTATE 42601)',
        "migration": "0002_b.sql",
        "file": "/m/0002_b.sql",
        "line": 1,
        "sqlstate": "42601",
    }
    message = _document(status="failed", error=error, applied=[{"id": "0001_a.sql"}])
    run = run_record(_finished(False, message))
    assert run.result == "Failed"
    assert run.failure is not None
    assert (run.failure.migration, run.failure.file) == ("0002_b.sql", "/m/0002_b.sql")
    assert run.failure.sqlstate == "42601"
    assert [entry.id for entry in run.applied] == ["0001_a.sql"]
    verdict = verdict_for(run)
    assert (verdict.phase, verdict.reason) == (Phase.STALLED, Reason.MIGRATION_FAILED)
    assert "0002_b.sql" in verdict.message
    assert "syntax error" in verdict.message


def test_error_types_map_to_their_reasons() -> None:
    for error_type, reason in [
        ("RunRefused", Reason.RUN_REFUSED),
        ("DatabaseUnavailable", Reason.DATABASE_UNAVAILABLE),
        ("LockTimeout", Reason.DATABASE_UNAVAILABLE),
        ("MigrationSourceError", Reason.JOB_FAILED),
    ]:
        message = _document(status="failed", error={"type": error_type, "message": "m"})
        assert verdict_for(run_record(_finished(False, message))).reason == reason


def test_failed_job_without_a_document_reports_the_job_condition() -> None:
    job = _finished(False, None, failure_message="Job has reached the specified backoff limit")
    run = run_record(job)
    assert run.failure is not None
    assert run.failure.message == "Job has reached the specified backoff limit"
    assert verdict_for(run).reason == Reason.JOB_FAILED


def test_unreadable_termination_message_is_kept_as_text() -> None:
    run = run_record(_finished(False, "Traceback: ImportError", failure_message="failed"))
    assert run.failure is not None
    assert run.failure.message == "failed: Traceback: ImportError"


def test_truncated_document_reports_the_total_count() -> None:
    message = _document(applied=[{"id": "0099_z.sql", "duration_ms": 1}], applied_total=99)
    assert run_record(_finished(True, message)).applied_count == 99


def test_running_job_is_reconciling() -> None:
    job = JobObservation(name="j", target_hash="abc", active=True, succeeded=False)
    run = run_record(job)
    assert run.result == "Running"
    assert verdict_for(run).phase == Phase.RECONCILING


def test_a_job_has_finished_once_complete_or_failed_is_true() -> None:
    def job(*conditions: tuple[str, str]) -> dict[str, Any]:
        listed = [{"type": kind, "status": status} for kind, status in conditions]
        return {"status": {"conditions": listed}}

    assert job_finished(job(("Complete", "True")))
    assert job_finished(job(("FailureTarget", "True"), ("Failed", "True")))
    assert not job_finished(job(("Failed", "False")))
    assert not job_finished(job(("SuccessCriteriaMet", "True")))
    assert not job_finished({"status": {"active": 1}})
    assert not job_finished({})
