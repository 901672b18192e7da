"""One reconcile of one DatabaseMigration: observe, ask the planner, act, write the status.

The cluster and the clock are passed in (`Cluster` is implemented by `kube.KubeApi`), so this
module holds no Kubernetes client and reads as the steps it takes. Reconciles of the same resource
are serialised: the resource's handlers and its Job's handler all land here, and each must see
what the one before it wrote.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from .cluster import Cluster, ClusterError
from .conditions import RECONCILING, EventReason, Phase, Reason, Verdict, updated_conditions
from .gate import (
    Gates,
    approve_patch,
    clear_resume_refused_patch,
    confirm_patch,
    deployment_gate_hash,
    forget_gate_patch,
    hand_over_patch,
    holds_a_template,
    release_patch,
    withdraw_patch,
)
from .gate_index import GateDirectory
from .manifests import (
    RUNNER_CONTAINER,
    TARGET_HASH_LABEL,
    ResourceIdentity,
    RunnerSettings,
    job_manifest,
    target_hash,
)
from .metrics import OperatorMetrics, RunMetrics
from .models import (
    RETRY_ANNOTATION,
    RUN_REQUEST_ANNOTATION,
    DatabaseMigrationSpec,
    DatabaseMigrationStatus,
)
from .planner import (
    Action,
    Decision,
    DeploymentObservation,
    Observed,
    RetryPolicy,
    decide,
    gates_for,
    parse_time,
    pods_matter,
    strategy_is_pre_deploy,
)
from .requests import parse_run_request
from .runs import JobObservation, job_finished, observe_job
from .seen import LatestSeen
from .sources import SourceLookup, resolve_source
from .validation import validate_spec

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ReconcilerSettings:
    runner: RunnerSettings
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class PendingEvent:
    """An Event a reconcile posts once it has written the status."""

    type: str
    reason: str
    message: str


# Waits on a Deployment that no event may end: the last old pod going away changes a pod, which
# the operator does not watch, and not always the Deployment; a release the API server refused
# changes nothing at all.
TIMED_WAITS = (Reason.WAITING_FOR_ROLLOUT, Reason.RELEASE_PENDING)


def needs_a_later_look(status: DatabaseMigrationStatus) -> bool:
    """Whether the resource must be reconciled again without an event: a retry is scheduled (no
    event comes when it is due), a Job is in flight (a Job event whose handling failed is not
    delivered again), or it waits on its Deployment (TIMED_WAITS)."""
    last_run = status.last_run
    waits_on_the_deployment = any(
        condition.type == RECONCILING and condition.reason in TIMED_WAITS
        for condition in status.conditions
    )
    return (
        bool(status.next_retry_at)
        or (last_run is not None and last_run.result == "Running")
        or waits_on_the_deployment
    )


class Revisits(Protocol):
    def later(self, namespace: str, name: str) -> object: ...

    def forget(self, namespace: str, name: str) -> object: ...


def _unhandled(annotations: dict[str, str], key: str, handled: str | None) -> str | None:
    token = annotations.get(key)
    return token if token and token != handled else None


class Reconciler:
    def __init__(
        self,
        cluster: Cluster,
        settings: ReconcilerSettings,
        clock: Callable[[], datetime] = utc_now,
        metrics: RunMetrics | None = None,
    ) -> None:
        self.cluster = cluster
        self.settings = settings
        self.clock = clock
        self.metrics: RunMetrics = metrics if metrics is not None else OperatorMetrics()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # The status each resource has as far as this process knows: the last it wrote or found
        # unchanged. A delivered body with another status may be older than that write.
        self._written: dict[tuple[str, str], DatabaseMigrationStatus] = {}
        # Which other pre_deploy resources gate a resource's Deployment: kopf's index, once
        # the operator has started (handlers.py attaches it).
        self.gates = GateDirectory()
        # The Deployments that resources read, as their latest watch event showed them
        # (handlers.py stores them).
        self.seen_deployments = LatestSeen()
        # Reconciles of a resource a while later, while its status waits on what no event
        # reports (`needs_a_later_look`); handlers.py sets them (lanes.py).
        self.revisits: Revisits | None = None
        # Runs a reconcile's record (status, Events) later, after the more urgent steps of
        # other resources; handlers.py sets it (lanes.py). None: recorded at once.
        self.defer: Callable[[Callable[[], object]], object] | None = None
        # The records (status, Events) deferred by `defer`, not written yet: one per resource.
        self._deferred: dict[tuple[str, str], Callable[[], None]] = {}

    def _lock_for(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def admits(self, namespace: str) -> bool:
        """Whether this reconciler acts on resources in `namespace` (scoping.py narrows it)."""
        return True

    def reconcile(
        self,
        namespace: str,
        name: str,
        body: Mapping[str, Any] | None = None,
        *,
        watched: bool = False,
        waited_for: bool = False,
    ) -> Decision | None:
        """Bring one resource a step closer to its target; None when it no longer exists.

        `body` is the resource as kopf delivered it to a create, update or resume handler: it is
        used instead of reading the resource again when it is known to be current (see
        `_current_body`). `watched`: an event asked for this reconcile, and the Deployment is
        read as the watch last delivered it (seen.py). `waited_for`: what ended (a rollout, a
        pre_deploy Job) has a rollout or a Job waiting on this reconcile's step; the record
        after that step may go later (`defer`). None without a look at a namespace this
        reconciler does not act in (`admits`)."""
        if not self.admits(namespace):
            return None
        lock = self._lock_for(namespace, name)
        delivered = body if body is not None and lock.acquire(blocking=False) else None
        if delivered is None:
            lock.acquire()
        try:
            return self._reconcile_locked(namespace, name, delivered, watched, waited_for)
        finally:
            lock.release()

    def _current_body(
        self, namespace: str, name: str, delivered: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """The resource as it is now. A delivered body is used only when no reconcile of it was
        running on entry and its status is the one this process last wrote (or it wrote none):
        a body older than our own last status write could say that no run was recorded, or that
        a recorded run is still going, and its target would run again. Otherwise it is read."""
        if delivered is not None:
            written = self._written.get((namespace, name))
            status = delivered.get("status") or {}
            if written is None or DatabaseMigrationStatus.model_validate(status) == written:
                return dict(delivered)
        return self.cluster.database_migration(namespace, name)

    def _reconcile_locked(
        self,
        namespace: str,
        name: str,
        delivered: Mapping[str, Any] | None,
        watched: bool,
        waited_for: bool,
    ) -> Decision | None:
        self._flush_deferred(namespace, name)  # the previous reconcile's record goes first
        body = self._current_body(namespace, name, delivered)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            self._written.pop((namespace, name), None)
            if self.revisits is not None:
                self.revisits.forget(namespace, name)
            return None
        status = DatabaseMigrationStatus.model_validate(body.get("status") or {})
        observed = self._observe(namespace, name, body, status, watched)
        events: list[PendingEvent] = []
        decision = self._act(body, observed, decide(observed), events)
        if decision.gate is not None and observed.deployment is not None:
            # Before the status: a held rollout waits for its release, not for the record (which
            # the Job keeps until the status is written: a crash in between loses nothing).
            decision = self._operate_gate(body, observed.deployment.body, decision, events)
        stepped = decision.action is Action.CREATE_JOB or (
            decision.gate is not None and decision.gate.release
        )
        if waited_for and stepped and self.defer is not None:
            # The Job exists, or the Deployment is released: that is what is waited for. The
            # record waits behind the other resources' such steps (the Job holds the run until
            # it is written), and goes before the resource's next reconcile in any case.
            self._deferred[(namespace, name)] = lambda: self._record(body, status, decision, events)
            self.defer(lambda: self._record_deferred(namespace, name))
        else:
            self._record(body, status, decision, events)
        return decision

    def _record_deferred(self, namespace: str, name: str) -> None:
        with self._lock_for(namespace, name):
            self._flush_deferred(namespace, name)

    def _flush_deferred(self, namespace: str, name: str) -> None:
        """The record a reconcile of this resource deferred, if it is not written yet. One that
        fails (the resource is gone, the API server refuses) is left: its Job holds the run, and
        the next reconcile adopts it."""
        record = self._deferred.pop((namespace, name), None)
        if record is None:
            return
        try:
            record()
        except ClusterError as error:
            logger.warning(
                "Recording %s/%s failed (%s); its next reconcile does", namespace, name, error
            )

    def _record(
        self,
        body: dict[str, Any],
        status: DatabaseMigrationStatus,
        decision: Decision,
        events: list[PendingEvent],
    ) -> None:
        """The status the decision gives, the revisit it needs, then its Events."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        written = self._write_status(body, status, decision)
        if self.revisits is not None:
            if needs_a_later_look(written):
                self.revisits.later(namespace, name)
            else:  # its wait ended: a revisit asked for before would only read again
                self.revisits.forget(namespace, name)
        # Events after the status: the status is what users, tools and the next reconcile wait
        # for, and an Event is best effort.
        for event in events:
            self.cluster.record_event(body, event.type, event.reason, event.message)

    def _observe(
        self,
        namespace: str,
        name: str,
        body: dict[str, Any],
        status: DatabaseMigrationStatus,
        watched: bool,
    ) -> Observed:
        validation = validate_spec(body.get("spec") or {})
        lookup = SourceLookup(None)
        job: JobObservation | None = None
        deployment: DeploymentObservation | None = None
        spec = validation.spec
        target: str | None = None
        gates: Gates | None = None
        if spec is not None:
            if strategy_is_pre_deploy(spec) and spec.deployment is not None:
                gates = gates_for(
                    spec, name, self.gates.others(namespace, spec.deployment.name, name)
                )
            read = self._deployment(namespace, spec, watched)
            lookup = resolve_source(self.cluster, namespace, spec, read)
            target = target_hash(spec, lookup.source) if lookup.source is not None else None
            if read is not None:
                deployment = self._observe_deployment(
                    namespace, spec, read, status, target, gates=gates
                )
        if target is not None:
            last = status.last_run
            # Only a run in flight for this target has a Job to look at: a finished run's result
            # is in the status, and a target with no run has no Job, except when an operator
            # stopped between creating it and recording it, which create_job's "already exists"
            # reports (see _adopt).
            if last is not None and last.target_hash == target and last.result == "Running":
                job = self._observe_job(namespace, last.job)
        annotations = body.get("metadata", {}).get("annotations") or {}
        return Observed(
            resource_name=name,
            validation=validation,
            source=lookup.source,
            now=self.clock(),
            source_problem=lookup.problem,
            last_run=status.last_run,
            job=job,
            retry_request=_unhandled(annotations, RETRY_ANNOTATION, status.handled_retry),
            run_request=_unhandled(annotations, RUN_REQUEST_ANNOTATION, status.handled_run_request),
            run_request_annotation=annotations.get(RUN_REQUEST_ANNOTATION) or None,
            retry_policy=self.settings.retry,
            scheduled_retry_at=parse_time(status.next_retry_at) if status.next_retry_at else None,
            deployment=deployment,
            gates=gates,
        )

    def _deployment(
        self, namespace: str, spec: DatabaseMigrationSpec, watched: bool
    ) -> dict[str, Any] | None:
        if spec.deployment is None:
            return None
        name = spec.deployment.name
        seen = self.seen_deployments.get(namespace, name) if watched else None
        return seen if seen is not None else self.cluster.deployment(namespace, name)

    def _observe_deployment(
        self,
        namespace: str,
        spec: DatabaseMigrationSpec,
        deployment: dict[str, Any],
        status: DatabaseMigrationStatus,
        target: str | None,
        *,
        gates: Gates | None,
    ) -> DeploymentObservation:
        """The Deployment, with its pods (those its selector's matchLabels select) when the
        decision reads them."""
        if not pods_matter(spec, deployment, status.last_run, target, gates=gates):
            return DeploymentObservation(deployment)
        selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        label_selector = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
        pods = self.cluster.pods(namespace, label_selector) if label_selector else []
        return DeploymentObservation(deployment, tuple(pods))

    def _observe_job(self, namespace: str, name: str) -> JobObservation | None:
        job = self.cluster.job(namespace, name)
        if job is None:
            return None
        # The pods hold only the run's result (the runner's termination message): a running Job's
        # are not listed, a list that costs the API server a pass over the namespace's pods.
        pods = self.cluster.job_pods(namespace, name) if job_finished(job) else []
        return observe_job(job, pods, RUNNER_CONTAINER, TARGET_HASH_LABEL)

    def _act(
        self,
        body: dict[str, Any],
        observed: Observed,
        decision: Decision,
        events: list[PendingEvent],
    ) -> Decision:
        """The side effects of a decision, and the decision the status is written from (another
        one when the Job to create existed already). Events are collected, to post last."""
        refused = decision.refused_run_request
        if refused is not None:
            message = (
                f"run request {refused!r} refused: it is for plan {parse_run_request(refused).plan}"
                f", not for the current plan {decision.target_hash}; nothing was run"
            )
            events.append(PendingEvent("Warning", EventReason.RUN_REQUEST_REFUSED, message))
        spec = observed.validation.spec
        if spec is None or decision.run is None:
            return decision
        if decision.action is Action.CREATE_JOB and not self._start_job(
            body, observed, decision, events
        ):
            decision = self._adopt(body["metadata"]["namespace"], observed, decision)
        if decision.action is Action.RECORD_RESULT:
            self._report_finished_run(body, spec.migrations.engine, decision, events)
        return decision

    def _adopt(self, namespace: str, observed: Observed, decision: Decision) -> Decision:
        """The attempt's Job exists already: an operator stopped after creating it and before
        recording it. Decide again with the Job as it is (running, or finished with a result),
        keeping what the first decision consumed."""
        job = self._observe_job(namespace, decision.job_name) if decision.job_name else None
        if job is None:  # deleted meanwhile: record the attempt, the next reconcile makes it
            return decision
        again = decide(replace(observed, job=job, last_run=decision.run))
        return replace(
            again,
            consumed_retry=decision.consumed_retry,
            consumed_run_request=decision.consumed_run_request,
            refused_run_request=decision.refused_run_request,
        )

    def _report_finished_run(
        self, body: dict[str, Any], engine: str, decision: Decision, events: list[PendingEvent]
    ) -> None:
        run = decision.run
        if run is None:
            return
        message = decision.verdict.message
        if run.result == "Succeeded":
            events.append(PendingEvent("Normal", EventReason.RUN_SUCCEEDED, message))
        elif run.result == "Failed":
            events.append(PendingEvent("Warning", EventReason.RUN_FAILED, message))
        durations = [entry.duration_ms or 0 for entry in run.applied]
        namespace = body["metadata"]["namespace"]
        self.metrics.run_finished(engine, namespace, run.result == "Succeeded", durations)

    def _start_job(
        self,
        body: dict[str, Any],
        observed: Observed,
        decision: Decision,
        events: list[PendingEvent],
    ) -> bool:
        """Create the attempt's Job; False when it exists already."""
        spec, source, target = observed.validation.spec, observed.source, decision.target_hash
        if spec is None or source is None or target is None or decision.run is None:
            return True  # the planner creates Jobs only for a valid spec with a resolved source
        metadata = body["metadata"]
        identity = ResourceIdentity(metadata["namespace"], metadata["name"], metadata["uid"])
        attempt = decision.run.attempt
        manifest = job_manifest(
            identity, spec, source, target, self.settings.runner, attempt=attempt
        )
        if not self.cluster.create_job(identity.namespace, manifest):
            return False
        message = f"started migration Job {manifest['metadata']['name']} (attempt {attempt})"
        events.append(PendingEvent("Normal", EventReason.RUN_STARTED, message))
        self.metrics.run_started(spec.migrations.engine, identity.namespace)
        return True

    def _write_status(
        self, body: dict[str, Any], status: DatabaseMigrationStatus, decision: Decision
    ) -> DatabaseMigrationStatus:
        """Writes the status the decision gives, if it changed; returns it."""
        generation = int(body["metadata"].get("generation") or 0)
        now = timestamp(self.clock())
        # A decision without a run (an invalid spec, a missing source) keeps the last one: it is
        # the record that stops a target from running twice.
        run = decision.run if decision.run is not None else status.last_run
        if run is not None and run.result == "Running" and run.started_at is None:
            previous = status.last_run
            kept = previous.started_at if previous and previous.job == run.job else None
            run = run.model_copy(update={"started_at": kept or now})
        # Known only after a successful run (it applied everything pending for its target);
        # a new target makes the old count meaningless.
        pending = status.pending if decision.target_hash == status.target_hash else None
        if run is not None and run.result == "Succeeded":
            pending = 0
        new_status = DatabaseMigrationStatus(
            observed_generation=generation,
            conditions=updated_conditions(status.conditions, decision.verdict, generation, now),
            target_hash=decision.target_hash,
            last_run=run,
            pending=pending,
            next_retry_at=timestamp(decision.next_retry_at) if decision.next_retry_at else None,
            handled_retry=decision.consumed_retry or status.handled_retry,
            handled_run_request=decision.consumed_run_request or status.handled_run_request,
        )
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        self.metrics.pending(namespace, name, pending)
        if new_status != status:  # an unchanged status is not written: no reconcile loop
            document = new_status.model_dump(by_alias=True, mode="json")
            self.cluster.write_database_migration_status(namespace, name, document)
        self._written[(namespace, name)] = new_status
        return new_status

    def _operate_gate(
        self,
        body: dict[str, Any],
        deployment: dict[str, Any],
        decision: Decision,
        events: list[PendingEvent],
    ) -> Decision:
        """pre_deploy's writes to the Deployment: each is a guarded JSON Patch, and one that
        finds the Deployment changed is left to the reconcile its change starts. A release the
        API server refuses otherwise is not lost: the status says ReleasePending, which needs a
        later look (`needs_a_later_look`), and the next reconcile releases again."""
        step = decision.gate
        if step is None:
            return decision
        namespace, name = body["metadata"]["namespace"], deployment["metadata"]["name"]
        try:
            if step.resume_refused is not None:
                message = (
                    f"Deployment {name} was resumed by {step.resume_refused} while template "
                    f"{step.gate_hash} waits for its migration; it was paused again"
                )
                events.append(PendingEvent("Warning", EventReason.RESUME_REFUSED, message))
                patch = clear_resume_refused_patch(step.resume_refused)
                self.cluster.patch_deployment(namespace, name, patch)
            if step.withdraw is not None:
                self.cluster.patch_deployment(namespace, name, withdraw_patch(*step.withdraw))
            if step.confirm is not None:
                # Its change reconciles the other gating resources: the last to succeed sees
                # every confirmation and releases.
                self.cluster.patch_deployment(namespace, name, confirm_patch(*step.confirm))
            if step.release and self.cluster.patch_deployment(
                namespace,
                name,
                release_patch(step.gate_hash, step.stale_pending, step.confirmations),
            ):
                message = f"released Deployment {name}: template {step.gate_hash} is migrated"
                events.append(PendingEvent("Normal", EventReason.DEPLOYMENT_RELEASED, message))
            elif step.approve:
                patch = approve_patch(deployment, step.gate_hash)
                self.cluster.patch_deployment(namespace, name, patch)
        except ClusterError as error:
            if not (step.releases_or_approves or step.confirm):
                raise
            verdict = Verdict(
                Phase.RECONCILING,
                Reason.RELEASE_PENDING,
                f"pre_deploy: template {step.gate_hash} is migrated, but the API server refused "
                f"to release Deployment {name} ({error}); trying again",
            )
            return replace(decision, verdict=verdict)
        return decision

    def release_gate(
        self,
        namespace: str,
        name: str,
        spec: dict[str, Any],
        remaining: Gates,
        *,
        involved: Mapping[str, Any] | None = None,
        why: str = "",
    ) -> bool:
        """The resource no longer gates the Deployment of `spec` (it is being deleted, or moved
        to another strategy or Deployment). With no other resource gating it (`remaining`), the
        Deployment loses the gate's annotations and resumes if a template was held, and a
        Warning Event on `involved` says so. With others, it is released only when they have
        all migrated the held template (`gate.hand_over_patch`). False when the Deployment
        changed meanwhile (try again)."""
        with self._lock_for(namespace, name):
            validated = validate_spec(spec).spec
            if validated is None or validated.deployment is None:
                return True
            reference = validated.deployment
            deployment = self.cluster.deployment(namespace, reference.name)
            if deployment is None:
                return True
            if remaining.members:
                operations = hand_over_patch(deployment, remaining, name)
                return not operations or self.cluster.patch_deployment(
                    namespace, reference.name, operations
                )
            operations = forget_gate_patch(deployment)
            if not operations:
                return True
            held = holds_a_template(deployment)
            if not self.cluster.patch_deployment(namespace, reference.name, operations):
                return False
            if held and involved is not None:
                gate = deployment_gate_hash(deployment, reference.containers)
                message = (
                    f"released Deployment {reference.name}: {why}; its template {gate} rolls out "
                    "without waiting for its migration"
                )
                self.cluster.record_event(
                    dict(involved), "Warning", EventReason.GATE_REMOVED, message
                )
            return True
