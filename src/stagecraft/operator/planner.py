"""Reconcile as a pure decision: what the operator observed in, the one next action out.

The steps run in order and the first that has something to say decides:
  1. the spec passes validation            (else Stalled/InvalidSpec)
  2. the migration files' source resolves  (else Stalled/SourceNotFound)
  3. the current target was already run    (keep its result: never re-run a recorded target)
  4. a Job for the target exists           (record its result, or wait for it)
  5. the gate lets a run start             (else wait: run request, rollout)
  6. create the Job for the target
The rollout gate of issue 5 plugs into step 5 (`run_gate`) and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..config import Strategy
from .conditions import Phase, Reason, Verdict
from .manifests import MigrationSource, job_name, target_hash
from .models import DatabaseMigrationSpec, RunRecord
from .runs import JobObservation, run_record, verdict_for
from .validation import SpecValidation


class Action(StrEnum):
    STALL = "Stall"  # write the verdict; nothing runs until the spec or the world changes
    KEEP_RESULT = "KeepResult"  # the target's run is recorded; restate its verdict
    RECORD_RESULT = "RecordResult"  # the target's Job finished: copy its result into status
    WAIT_FOR_JOB = "WaitForJob"  # the target's Job is running
    WAIT = "Wait"  # a run is due but the gate holds it (manual request, rollout)
    CREATE_JOB = "CreateJob"  # start (or adopt) the target's Job


@dataclass(frozen=True)
class Observed:
    resource_name: str
    validation: SpecValidation
    source: MigrationSource | None  # None when it could not be resolved
    source_problem: str = ""  # why it could not
    last_run: RunRecord | None = None  # from status
    job: JobObservation | None = None  # the Job named for the current target, if it exists
    run_requested: bool = False  # manual strategy: a run request is waiting to be consumed


@dataclass(frozen=True)
class Decision:
    action: Action
    verdict: Verdict
    target_hash: str | None = None
    job_name: str | None = None
    run: RunRecord | None = None  # the run record the status should hold


def run_gate(spec: DatabaseMigrationSpec, observed: Observed) -> Verdict | None:
    """Why a due run may not start yet, or None when it may start now.

    Issue 5 adds the rollout conditions here (pre_deploy waits for the paused template,
    post_deploy for a complete rollout); until then both run as soon as the target changes.
    """
    if spec.migrations.strategy is Strategy.MANUAL and not observed.run_requested:
        return Verdict(
            Phase.WAITING,
            Reason.WAITING_FOR_RUN_REQUEST,
            "manual strategy: waiting for `stagecraft migrate run --cluster` or the "
            "stagecraft.dev/run-request annotation",
        )
    return None


def _recorded(last_run: RunRecord | None, target: str) -> RunRecord | None:
    if last_run and last_run.target_hash == target and last_run.result != "Running":
        return last_run
    return None


def decide(observed: Observed) -> Decision:
    spec = observed.validation.spec
    if spec is None:
        message = observed.validation.message
        return Decision(Action.STALL, Verdict(Phase.STALLED, Reason.INVALID_SPEC, message))
    if observed.source is None:
        verdict = Verdict(Phase.STALLED, Reason.SOURCE_NOT_FOUND, observed.source_problem)
        return Decision(Action.STALL, verdict)
    target = target_hash(spec, observed.source)
    name = job_name(observed.resource_name, target)
    recorded = _recorded(observed.last_run, target)
    if recorded is not None:
        return Decision(Action.KEEP_RESULT, verdict_for(recorded), target, name, recorded)
    job = observed.job if observed.job is not None and observed.job.name == name else None
    if job is not None:
        run = run_record(job).model_copy(update={"target_hash": target})
        action = Action.WAIT_FOR_JOB if job.active else Action.RECORD_RESULT
        return Decision(action, verdict_for(run), target, name, run)
    held = run_gate(spec, observed)
    if held is not None:
        return Decision(Action.WAIT, held, target, name, observed.last_run)
    run = RunRecord(job=name, target_hash=target, result="Running")
    return Decision(Action.CREATE_JOB, verdict_for(run), target, name, run)
