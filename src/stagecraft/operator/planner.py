"""Reconcile as a pure decision: what the operator observed in, the one next action out.

The steps run in order and the first that has something to say decides:
  1. the spec passes validation                 (else Stalled/InvalidSpec)
  2. the migration files' source resolves       (else Stalled/SourceNotFound)
  3. the target's last attempt has finished     (a request or a due automatic retry starts the
                                                 next attempt; otherwise keep its result: a
                                                 recorded target never runs again by itself)
  4. the attempt's Job exists                   (record its result, or wait for it)
  5. the gate lets a first run start            (else wait: run request, rollout)
  6. create the attempt's Job
The rollout gate of issue 5 plugs into step 5 (`run_gate`) and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ..config import Strategy
from .conditions import Phase, Reason, Verdict
from .manifests import MigrationSource, job_name, target_hash
from .models import DatabaseMigrationSpec, RunRecord
from .runs import JobObservation, run_record, verdict_for
from .validation import SpecValidation

# Failures that a later attempt can get past without anyone changing anything. A run without a
# readable document (evicted, deadline, node lost) is retried too, within the same limit.
TRANSIENT_ERRORS = frozenset({"DatabaseUnavailable", "LockTimeout", None})


class Action(StrEnum):
    STALL = "Stall"  # write the verdict; nothing runs until the spec or the world changes
    KEEP_RESULT = "KeepResult"  # the target's run is recorded; restate its verdict
    RECORD_RESULT = "RecordResult"  # the attempt's Job finished: copy its result into status
    WAIT_FOR_JOB = "WaitForJob"  # the attempt's Job is running
    WAIT = "Wait"  # nothing may start yet (gate, or an automatic retry not yet due)
    CREATE_JOB = "CreateJob"  # start (or adopt) the attempt's Job


@dataclass(frozen=True)
class RetryPolicy:
    """Automatic attempts after a transient failure: exponential backoff, capped and limited."""

    first_delay_seconds: float = 10.0
    max_delay_seconds: float = 600.0
    max_attempts: int = 8

    def delay_after(self, attempt: int) -> timedelta:
        seconds = self.first_delay_seconds * 2 ** max(attempt - 1, 0)
        return timedelta(seconds=min(seconds, self.max_delay_seconds))


@dataclass(frozen=True)
class DeploymentObservation:
    """The referenced Deployment and the pods its selector matches, as the API server sent them
    (read in the same reconcile as the files' source, so both describe the same template)."""

    body: dict[str, Any]
    pods: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Observed:
    resource_name: str
    validation: SpecValidation
    source: MigrationSource | None  # None when it could not be resolved
    now: datetime
    source_problem: str = ""  # why the source could not be resolved
    last_run: RunRecord | None = None  # from status
    job: JobObservation | None = None  # the Job of the target's current attempt, if it exists
    retry_request: str | None = None  # an unhandled stagecraft.dev/retry token
    run_request: str | None = None  # an unhandled stagecraft.dev/run-request token
    scheduled_retry_at: datetime | None = None  # status.nextRetryAt, set while a retry waits
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    deployment: DeploymentObservation | None = None  # spec.deployment, when it exists


@dataclass(frozen=True)
class Decision:
    action: Action
    verdict: Verdict
    target_hash: str | None = None
    job_name: str | None = None
    run: RunRecord | None = None  # the run record the status should hold
    next_retry_at: datetime | None = None
    consumed_retry: str | None = None  # request tokens this decision acts on
    consumed_run_request: str | None = None


def run_gate(spec: DatabaseMigrationSpec, observed: Observed) -> Verdict | None:
    """Why a first run for a new target may not start yet, or None when it may start now.

    Issue 5 adds the rollout conditions here (pre_deploy waits for the paused template,
    post_deploy for a complete rollout); until then both run as soon as the target changes.
    """
    if spec.migrations.strategy is Strategy.MANUAL and _run_request(spec, observed) is None:
        return Verdict(
            Phase.WAITING,
            Reason.WAITING_FOR_RUN_REQUEST,
            "manual strategy: waiting for `stagecraft migrate run --cluster` or the "
            "stagecraft.dev/run-request annotation",
        )
    return None


def _run_request(spec: DatabaseMigrationSpec, observed: Observed) -> str | None:
    """A run request counts for the manual strategy only; the others run by themselves."""
    return observed.run_request if spec.migrations.strategy is Strategy.MANUAL else None


def _start(observed: Observed, spec: DatabaseMigrationSpec, target: str, attempt: int) -> Decision:
    name = job_name(observed.resource_name, target, attempt)
    run = RunRecord(job=name, target_hash=target, attempt=attempt, result="Running")
    return Decision(
        Action.CREATE_JOB,
        verdict_for(run),
        target,
        name,
        run,
        consumed_retry=observed.retry_request,
        consumed_run_request=_run_request(spec, observed),
    )


def _retries_by_itself(run: RunRecord, policy: RetryPolicy) -> bool:
    failure = run.failure
    return (
        run.result == "Failed"
        and failure is not None
        and failure.error in TRANSIENT_ERRORS
        and run.attempt < policy.max_attempts
    )


def _automatic_retry_at(run: RunRecord, observed: Observed) -> datetime | None:
    """When a finished attempt is retried without anyone asking, or None if it is not."""
    if not _retries_by_itself(run, observed.retry_policy):
        return None
    if observed.scheduled_retry_at is not None:
        return observed.scheduled_retry_at
    finished = parse_time(run.finished_at) if run.finished_at else observed.now
    return finished + observed.retry_policy.delay_after(run.attempt)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _after_finished_attempt(
    observed: Observed, spec: DatabaseMigrationSpec, target: str, recorded: RunRecord
) -> Decision:
    if observed.retry_request is not None or _run_request(spec, observed) is not None:
        return _start(observed, spec, target, recorded.attempt + 1)
    retry_at = _automatic_retry_at(recorded, observed)
    if retry_at is None:
        return Decision(Action.KEEP_RESULT, verdict_for(recorded), target, recorded.job, recorded)
    if observed.now >= retry_at:
        return _start(observed, spec, target, recorded.attempt + 1)
    failure = recorded.failure.message if recorded.failure else "a transient failure"
    verdict = Verdict(
        Phase.RECONCILING,
        Reason.RETRY_SCHEDULED,
        f"attempt {recorded.attempt} of {observed.retry_policy.max_attempts} failed: {failure}; "
        f"the next attempt starts at {retry_at.strftime('%Y-%m-%dT%H:%M:%SZ')}",
    )
    return Decision(Action.WAIT, verdict, target, recorded.job, recorded, next_retry_at=retry_at)


def _record(
    observed: Observed, spec: DatabaseMigrationSpec, target: str, run: RunRecord
) -> Decision:
    """Record a finished attempt, already saying what comes after it: a scheduled retry shows
    at once, and a retry that is due (or asked for) is started by the retry timer right away."""
    if _retries_by_itself(run, observed.retry_policy):
        # The backoff counts from now, when the failure is seen: Job times have whole seconds.
        delay = observed.retry_policy.delay_after(run.attempt)
        observed = replace(observed, scheduled_retry_at=observed.now + delay)
    after = _after_finished_attempt(observed, spec, target, run)
    if after.action is Action.WAIT:
        return replace(after, action=Action.RECORD_RESULT, job_name=run.job)
    next_attempt_at = observed.now if after.action is Action.CREATE_JOB else None
    return Decision(
        Action.RECORD_RESULT, verdict_for(run), target, run.job, run, next_retry_at=next_attempt_at
    )


def _for_target(observed: Observed, spec: DatabaseMigrationSpec, target: str) -> Decision:
    """Steps 3 to 6, once the target is known."""
    last = (
        observed.last_run if observed.last_run and observed.last_run.target_hash == target else None
    )
    if last is not None and last.result != "Running":
        return _after_finished_attempt(observed, spec, target, last)
    attempt = last.attempt if last is not None else 1
    name = job_name(observed.resource_name, target, attempt)
    job = observed.job if observed.job is not None and observed.job.name == name else None
    if job is not None:
        run = run_record(job).model_copy(update={"target_hash": target, "attempt": attempt})
        if job.active:
            return Decision(Action.WAIT_FOR_JOB, verdict_for(run), target, name, run)
        return _record(observed, spec, target, run)
    if last is not None:  # an attempt was started but its Job is gone or not made yet
        return _start(observed, spec, target, attempt)
    held = run_gate(spec, observed)
    if held is not None:
        return Decision(Action.WAIT, held, target, name, observed.last_run)
    return _start(observed, spec, target, 1)


def decide(observed: Observed) -> Decision:
    spec = observed.validation.spec
    if spec is None:
        message = observed.validation.message
        return Decision(Action.STALL, Verdict(Phase.STALLED, Reason.INVALID_SPEC, message))
    if observed.source is None:
        verdict = Verdict(Phase.STALLED, Reason.SOURCE_NOT_FOUND, observed.source_problem)
        return Decision(Action.STALL, verdict)
    return _for_target(observed, spec, target_hash(spec, observed.source))
