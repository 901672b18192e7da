"""Reconcile as a pure decision: what the operator observed in, the one next action out.

The steps run in order and the first that has something to say decides:
  1. the spec passes validation                 (else Stalled/InvalidSpec)
  2. the migration files' source resolves       (else Stalled/SourceNotFound, or wait when the
                                                 Deployment holding them is not created yet)
  3. the target's last attempt has finished     (a request or a due automatic retry starts the
                                                 next attempt; otherwise keep its result: a
                                                 recorded target never runs again by itself)
  4. the attempt's Job exists                   (record its result, or wait for it)
  5. the gate lets a first run start            (else wait: run request, rollout)
  6. create the attempt's Job
The rollout gate of issue 5 plugs into step 5 (`run_gate`) and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ..config import Strategy
from .conditions import Phase, Reason, Verdict
from .gate import (
    Gate,
    Gates,
    GateStep,
    bypass_verdict,
    deployment_gate_hash,
    gate_step,
    held_note,
    may_be_bypassed,
)
from .manifests import MigrationSource, job_name, target_hash
from .models import DatabaseMigrationSpec, DeploymentReference, RunRecord
from .requests import parse_run_request
from .rollout import reported_rollout, rollout_state
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
    run_request_annotation: str | None = None  # that annotation as it is, handled or not
    scheduled_retry_at: datetime | None = None  # status.nextRetryAt, set while a retry waits
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    deployment: DeploymentObservation | None = None  # spec.deployment, when it exists
    # pre_deploy: the resources that gate spec.deployment, this one included (the operator's
    # index); None: this one alone.
    gates: Gates | None = None


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
    gate: GateStep | None = None  # what to do to the gated Deployment after this decision
    refused_run_request: str | None = None  # a request for another plan: consumed, not run


def run_gate(spec: DatabaseMigrationSpec, observed: Observed, target: str) -> Verdict | None:
    """Why a first run for a new target may not start yet, or None when it may start now.

    manual waits for a run request (for this plan, if it names one); post_deploy waits for the
    rollout of the referenced Deployment's template to be complete.
    """
    strategy = spec.migrations.strategy
    if strategy is Strategy.MANUAL and _run_request(spec, observed, target) is None:
        return Verdict(
            Phase.WAITING,
            Reason.WAITING_FOR_RUN_REQUEST,
            f"manual strategy: waiting for a run request for plan {target}: "
            f"`stagecraft migrate run --cluster {observed.resource_name} --plan {target}`, or "
            "the stagecraft.dev/run-request annotation",
        )
    if strategy is Strategy.POST_DEPLOY and spec.deployment is not None:
        return _post_deploy_gate(spec.deployment, observed)
    return None


def gates_for(spec: DatabaseMigrationSpec, resource: str, others: Sequence[Gate]) -> Gates:
    """The resources that gate this one's Deployment: itself, as its spec says now, and the
    others the index holds."""
    containers = spec.deployment.containers if spec.deployment is not None else ()
    return Gates.of([*others, (resource, containers)])


def pods_matter(
    spec: DatabaseMigrationSpec,
    deployment: Mapping[str, Any],
    last_run: RunRecord | None,
    target: str | None,
    gates: Gates | None = None,
) -> bool:
    """Whether the decision reads the Deployment's pods. Listing them costs the API server a
    pass over the namespace's pods and was the largest read of a reconcile, and most decisions
    do not look at them: pre_deploy only to find pods that bypassed the gate (the template is
    neither approved nor held paused), post_deploy only for pods still terminating once the
    Deployment reports its rollout otherwise complete, before the target's first run, on a
    cluster that does not count them in `status.terminatingReplicas`."""
    if spec.deployment is None:
        return False
    if strategy_is_pre_deploy(spec):
        gating = gates if gates is not None else Gates.alone(spec.deployment.containers)
        return may_be_bypassed(deployment, gating)
    if spec.migrations.strategy is not Strategy.POST_DEPLOY:
        return False
    if last_run is not None and last_run.target_hash == target:
        return False  # the rollout only decides when a target's first run starts
    if "terminatingReplicas" in (deployment.get("status") or {}):
        return False  # the cluster counts terminating pods itself (Kubernetes 1.33 and later)
    return reported_rollout(deployment).complete


def _post_deploy_gate(reference: DeploymentReference, observed: Observed) -> Verdict | None:
    """post_deploy runs the Job for gate hash H once the rollout of H is complete; a failed
    rollout runs nothing, and a newer template is a new H to wait for (the target follows it)."""
    deployment = observed.deployment
    name = reference.name
    if deployment is None:
        message = f"post_deploy: waiting for Deployment {name} to exist and roll out"
        return Verdict(Phase.RECONCILING, Reason.WAITING_FOR_ROLLOUT, message)
    gate = deployment_gate_hash(deployment.body, reference.containers)
    state = rollout_state(deployment.body, deployment.pods, gate_hash=gate, current_hash=gate)
    if state.complete:
        return None
    if state.failed:
        return Verdict(
            Phase.STALLED,
            Reason.ROLLOUT_FAILED,
            f"post_deploy: the rollout of Deployment {name} (gate hash {gate}) failed: "
            f"{state.message}; nothing runs until a new rollout completes",
        )
    return Verdict(
        Phase.RECONCILING,
        Reason.WAITING_FOR_ROLLOUT,
        f"post_deploy: waiting for the rollout of Deployment {name} (gate hash {gate}) to "
        f"complete: {state.message}",
    )


def _run_request(spec: DatabaseMigrationSpec, observed: Observed, target: str) -> str | None:
    """A run request counts for the manual strategy only (the others run by themselves), and
    only for the plan it names, when it names one."""
    if spec.migrations.strategy is not Strategy.MANUAL or observed.run_request is None:
        return None
    plan = parse_run_request(observed.run_request).plan
    return observed.run_request if plan in (None, target) else None


def _answer_run_request_for_another_plan(
    decision: Decision, spec: DatabaseMigrationSpec, observed: Observed, target: str
) -> Decision:
    """A run request bound to a plan that is not the current one does not run: a new one is
    refused (consumed, and reported once), and the status says so while the annotation stays."""
    value = observed.run_request_annotation
    if spec.migrations.strategy is not Strategy.MANUAL or value is None:
        return decision
    plan = parse_run_request(value).plan
    if plan is None or plan == target:
        return decision
    note = (
        f"the run request {value!r} is for plan {plan}, not for the current plan {target}; "
        f"ask again with `--plan {target}`"
    )
    verdict = replace(decision.verdict, message=f"{decision.verdict.message}; {note}")
    if observed.run_request != value:
        return replace(decision, verdict=verdict)
    return replace(decision, verdict=verdict, consumed_run_request=value, refused_run_request=value)


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
        consumed_run_request=_run_request(spec, observed, target),
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
    if observed.retry_request is not None or _run_request(spec, observed, target) is not None:
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
    at once, and a retry that is due (or asked for) is started by the next reconcile (the
    revisits look again while one is scheduled)."""
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
    held = run_gate(spec, observed, target)
    if held is not None:
        return Decision(Action.WAIT, held, target, name, observed.last_run)
    return _start(observed, spec, target, 1)


def _waiting_for_deployment(spec: DatabaseMigrationSpec, observed: Observed) -> Verdict | None:
    """The files come from spec.deployment and it does not exist yet: a wait, not a failure.

    GitOps tools create it later (an earlier sync wave holds the DatabaseMigration, so that a
    first install is gated too), and its creation reconciles this resource again. A missing
    ConfigMap, or a Deployment without the named container, stays Stalled (SourceNotFound).
    """
    reference = spec.deployment
    if reference is None or spec.image is not None or spec.config_map is not None:
        return None
    if observed.deployment is not None:
        return None  # it exists: the problem is its containers
    name = reference.name
    if strategy_is_pre_deploy(spec):
        then = (
            "the gate webhook pauses it in the write that creates it, its migration runs, "
            "and the operator releases it once the migration succeeded"
        )
    elif spec.migrations.strategy is Strategy.POST_DEPLOY:
        then = "the migration runs once its first rollout is complete"
    else:
        then = "its image's migrations then wait for a run request"
    return Verdict(
        Phase.WAITING,
        Reason.WAITING_FOR_DEPLOYMENT,
        f"waiting for Deployment {name} to be created (its image holds the migrations): {then}",
    )


def _decide(observed: Observed) -> Decision:
    spec = observed.validation.spec
    if spec is None:
        message = observed.validation.message
        return Decision(Action.STALL, Verdict(Phase.STALLED, Reason.INVALID_SPEC, message))
    if observed.source is None:
        waiting = _waiting_for_deployment(spec, observed)
        if waiting is not None:
            return Decision(Action.WAIT, waiting)
        verdict = Verdict(Phase.STALLED, Reason.SOURCE_NOT_FOUND, observed.source_problem)
        return Decision(Action.STALL, verdict)
    target = target_hash(spec, observed.source)
    decision = _for_target(observed, spec, target)
    return _answer_run_request_for_another_plan(decision, spec, observed, target)


def strategy_is_pre_deploy(spec: DatabaseMigrationSpec) -> bool:
    return spec.migrations.strategy is Strategy.PRE_DEPLOY and spec.deployment is not None


def _gating(spec: DatabaseMigrationSpec, observed: Observed) -> Gates:
    return (
        observed.gates
        if observed.gates is not None
        else gates_for(spec, observed.resource_name, others=())
    )


def _gate_step(observed: Observed, decision: Decision) -> GateStep | None:
    """pre_deploy, after the decision: release the paused template once its target's run has
    succeeded (or record the hash of a Deployment that was never paused), and report a resume
    the webhook undid."""
    spec = observed.validation.spec
    if spec is None or not strategy_is_pre_deploy(spec) or observed.deployment is None:
        return None
    run = decision.run
    succeeded = (
        decision.target_hash is not None
        and run is not None
        and run.result == "Succeeded"
        and run.target_hash == decision.target_hash
    )
    gates = _gating(spec, observed)
    return gate_step(observed.deployment.body, gates, observed.resource_name, succeeded)


def _with_gate_verdict(observed: Observed, decision: Decision) -> Decision:
    """pre_deploy: the conditions say when the gate holds the template, and when it was
    bypassed (GateBypassed: pods of a template whose migration has not succeeded)."""
    spec = observed.validation.spec
    if spec is None or not strategy_is_pre_deploy(spec) or observed.deployment is None:
        return decision
    body = observed.deployment.body
    gates = _gating(spec, observed)
    step = decision.gate
    if step is not None and step.releases_or_approves:
        return decision  # the template's migration succeeded: released by this reconcile
    bypassed = bypass_verdict(body, observed.deployment.pods, gates, decision.verdict)
    if bypassed is not None:
        return replace(decision, verdict=bypassed)
    note = held_note(body, gates, step.waiting_for if step is not None else ())
    if note is None:
        return decision
    verdict = replace(decision.verdict, message=f"{decision.verdict.message}; {note}")
    return replace(decision, verdict=verdict)


def decide(observed: Observed) -> Decision:
    """The next action (steps 1 to 6), and for pre_deploy what it means for the Deployment."""
    decision = _decide(observed)
    decision = replace(decision, gate=_gate_step(observed, decision))
    return _with_gate_verdict(observed, decision)
