"""What a finished migration Job says: its run document turned into the status's run record.

The runner leaves the CLI's JSON run document (docs/cli.md) in its termination message; this
module reads it, and falls back to the Job's own conditions when the pod left nothing readable
(killed, image pull failure, deadline), so a failed Job always yields a failure with a message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .conditions import Phase, Reason, Verdict
from .manifests import KNEX_CONTAINER
from .models import AppliedMigrationRecord, RunFailure, RunRecord

# The runner's error types (engines/errors.py) and the condition reason each one calls for.
_REASON_BY_ERROR = {
    "MigrationFailed": Reason.MIGRATION_FAILED,
    "RunRefused": Reason.RUN_REFUSED,
    "PlanChanged": Reason.RUN_REFUSED,
    "DatabaseUnavailable": Reason.DATABASE_UNAVAILABLE,
    "LockTimeout": Reason.DATABASE_UNAVAILABLE,
}


@dataclass(frozen=True)
class JobObservation:
    """The parts of a Job and its pod that decide a run's outcome."""

    name: str
    target_hash: str | None
    active: bool  # neither Complete nor Failed yet
    succeeded: bool
    started_at: str | None = None
    finished_at: str | None = None
    failure_message: str | None = None  # from the Job's Failed condition
    termination_message: str | None = None  # the runner's JSON run document
    # The container whose message that is, when not the runner: a step that failed before it.
    message_from: str | None = None


def _document(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) and document.get("kind") == "run" else None


def _applied(document: dict[str, Any] | None) -> list[AppliedMigrationRecord]:
    entries = (document or {}).get("applied") or []
    return [
        AppliedMigrationRecord(id=str(entry["id"]), duration_ms=entry.get("duration_ms"))
        for entry in entries
        if isinstance(entry, dict) and "id" in entry
    ]


def _failure(job: JobObservation, document: dict[str, Any] | None) -> RunFailure:
    error = (document or {}).get("error")
    if isinstance(error, dict):
        return RunFailure(
            error=error.get("type"),
            migration=error.get("migration"),
            file=error.get("file"),
            line=error.get("line"),
            sqlstate=error.get("sqlstate"),
            message=str(error.get("message") or "the migration run failed"),
        )
    if job.message_from == KNEX_CONTAINER and job.termination_message:
        # Knex's own output (the kubelet keeps the end of its log): its error and stack.
        return RunFailure(
            error="MigrationFailed",
            message=f"knex migrate:latest failed: {job.termination_message.strip()}",
        )
    message = job.failure_message or "the migration Job failed"
    if job.termination_message and document is None:
        message = f"{message}: {job.termination_message}"
    return RunFailure(message=message)


def run_record(job: JobObservation) -> RunRecord:
    if job.active:
        return RunRecord(
            job=job.name,
            target_hash=job.target_hash or "",
            result="Running",
            started_at=job.started_at,
        )
    document = _document(job.termination_message)
    applied = _applied(document)
    succeeded = job.succeeded and (document is None or document.get("status") == "succeeded")
    return RunRecord(
        job=job.name,
        target_hash=job.target_hash or "",
        result="Succeeded" if succeeded else "Failed",
        started_at=job.started_at,
        finished_at=job.finished_at,
        applied=applied,
        applied_count=(document or {}).get("applied_total", len(applied)),
        failure=None if succeeded else _failure(job, document),
    )


def verdict_for(run: RunRecord) -> Verdict:
    """The conditions a recorded run calls for."""
    if run.result == "Running":
        return Verdict(Phase.RECONCILING, Reason.JOB_RUNNING, f"migration Job {run.job} is running")
    if run.result == "Succeeded":
        count = run.applied_count or 0
        return Verdict(
            Phase.READY,
            Reason.SUCCEEDED,
            f"applied {count} migration(s); the database is up to date",
        )
    failure = run.failure or RunFailure(message="the migration Job failed")
    reason = _REASON_BY_ERROR.get(failure.error or "", Reason.JOB_FAILED)
    where = failure.file or failure.migration
    message = (
        f"{where}: {failure.message}"
        if where and where not in failure.message
        else (failure.message)
    )
    return Verdict(Phase.STALLED, reason, f"migration Job {run.job} failed: {message}")


def _true_condition(job: Mapping[str, Any], condition_type: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == condition_type and condition.get("status") == "True":
            return dict(condition)
    return None


def job_finished(job: Mapping[str, Any]) -> bool:
    """The Job is Complete or Failed: it has a result, and its pod a termination message."""
    return any(_true_condition(job, kind) is not None for kind in ("Complete", "Failed"))


def _runner_message(pods: list[dict[str, Any]], container: str) -> tuple[str | None, str | None]:
    """The message of the newest pod that has one, and the container it is from: the runner's,
    or else that of the step (init container) that failed before the runner could start."""
    newest_first = sorted(
        pods,
        key=lambda pod: (pod.get("metadata") or {}).get("creationTimestamp") or "",
        reverse=True,
    )
    for pod in newest_first:
        status = pod.get("status") or {}
        failed_step: tuple[str | None, str | None] = (None, None)
        for container_status in (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        ):
            terminated = (container_status.get("state") or {}).get("terminated") or {}
            if not terminated.get("message"):
                continue
            if container_status.get("name") == container:
                return str(terminated["message"]), None
            if terminated.get("exitCode") and failed_step[1] is None:
                failed_step = (str(terminated["message"]), str(container_status.get("name")))
        if failed_step[0] is not None:
            return failed_step
    return None, None


def observe_job(
    job: dict[str, Any], pods: list[dict[str, Any]], container: str, hash_label: str
) -> JobObservation:
    """Read a Job and its pods as the Job controller left them."""
    metadata = job.get("metadata") or {}
    status = job.get("status") or {}
    complete = _true_condition(job, "Complete")
    failed = _true_condition(job, "Failed")
    finished = complete or failed
    message, message_from = _runner_message(pods, container) if finished else (None, None)
    return JobObservation(
        name=str(metadata.get("name")),
        target_hash=(metadata.get("labels") or {}).get(hash_label),
        active=finished is None,
        succeeded=complete is not None,
        started_at=status.get("startTime"),
        finished_at=status.get("completionTime") or (finished or {}).get("lastTransitionTime"),
        failure_message=(failed or {}).get("message"),
        termination_message=message,
        message_from=message_from,
    )
