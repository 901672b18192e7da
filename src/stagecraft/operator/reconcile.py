"""One reconcile of one DatabaseMigration: observe, ask the planner, act, write the status.

The cluster and the clock are passed in (`Cluster` is implemented by `kube.KubeApi`), so this
module holds no Kubernetes client and reads as the steps it takes. Reconciles of the same resource
are serialised: the resource's handlers and its Job's handler all land here, and each must see
what the one before it wrote.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .cluster import Cluster
from .conditions import EventReason, updated_conditions
from .gate import (
    GateStep,
    approve_patch,
    clear_resume_refused_patch,
    forget_gate_patch,
    release_patch,
)
from .manifests import (
    RUNNER_CONTAINER,
    TARGET_HASH_LABEL,
    ResourceIdentity,
    RunnerSettings,
    job_manifest,
    job_name,
    target_hash,
)
from .metrics import OperatorMetrics, RunMetrics
from .models import (
    RETRY_ANNOTATION,
    RUN_REQUEST_ANNOTATION,
    DatabaseMigrationSpec,
    DatabaseMigrationStatus,
    RunRecord,
)
from .planner import (
    Action,
    Decision,
    DeploymentObservation,
    Observed,
    RetryPolicy,
    decide,
    parse_time,
)
from .requests import parse_run_request
from .runs import JobObservation, observe_job
from .sources import SourceLookup, resolve_source
from .validation import validate_spec


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ReconcilerSettings:
    runner: RunnerSettings
    retry: RetryPolicy = field(default_factory=RetryPolicy)


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

    def _lock_for(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def reconcile(self, namespace: str, name: str) -> Decision | None:
        """Bring one resource a step closer to its target; None when it no longer exists."""
        with self._lock_for(namespace, name):
            body = self.cluster.database_migration(namespace, name)
            if body is None or body.get("metadata", {}).get("deletionTimestamp"):
                return None
            status = DatabaseMigrationStatus.model_validate(body.get("status") or {})
            observed = self._observe(namespace, name, body, status)
            decision = decide(observed)
            self._act(body, observed, decision)
            self._write_status(body, status, decision)
            if decision.gate is not None and observed.deployment is not None:
                self._operate_gate(body, observed.deployment.body, decision.gate)
            return decision

    def _observe(
        self, namespace: str, name: str, body: dict[str, Any], status: DatabaseMigrationStatus
    ) -> Observed:
        validation = validate_spec(body.get("spec") or {})
        lookup = SourceLookup(None)
        job: JobObservation | None = None
        deployment: DeploymentObservation | None = None
        if validation.spec is not None:
            deployment = self._observe_deployment(namespace, validation.spec)
            read = deployment.body if deployment is not None else None
            lookup = resolve_source(self.cluster, namespace, validation.spec, read)
        if validation.spec is not None and lookup.source is not None:
            target = target_hash(validation.spec, lookup.source)
            last = status.last_run
            expected = last.job if last and last.target_hash == target else job_name(name, target)
            job = self._observe_job(namespace, expected)
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
        )

    def _observe_deployment(
        self, namespace: str, spec: DatabaseMigrationSpec
    ) -> DeploymentObservation | None:
        """The referenced Deployment and its pods (those its selector's matchLabels select)."""
        if spec.deployment is None:
            return None
        deployment = self.cluster.deployment(namespace, spec.deployment.name)
        if deployment is None:
            return None
        selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        label_selector = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
        pods = self.cluster.pods(namespace, label_selector) if label_selector else []
        return DeploymentObservation(deployment, tuple(pods))

    def _observe_job(self, namespace: str, name: str) -> JobObservation | None:
        job = self.cluster.job(namespace, name)
        if job is None:
            return None
        pods = self.cluster.job_pods(namespace, name)
        return observe_job(job, pods, RUNNER_CONTAINER, TARGET_HASH_LABEL)

    def _act(self, body: dict[str, Any], observed: Observed, decision: Decision) -> None:
        """The side effects of a decision; every action also rewrites the status after this."""
        refused = decision.refused_run_request
        if refused is not None:
            message = (
                f"run request {refused!r} refused: it is for plan {parse_run_request(refused).plan}"
                f", not for the current plan {decision.target_hash}; nothing was run"
            )
            self.cluster.record_event(body, "Warning", EventReason.RUN_REQUEST_REFUSED, message)
        spec = observed.validation.spec
        if spec is None or decision.run is None:
            return
        if decision.action is Action.RECORD_RESULT:
            self._report_finished_run(body, spec.migrations.engine, decision)
        elif decision.action is Action.CREATE_JOB:
            self._start_job(body, observed, decision)

    def _report_finished_run(self, body: dict[str, Any], engine: str, decision: Decision) -> None:
        run = decision.run
        if run is None:
            return
        self._announce_result(body, run, decision.verdict.message)
        durations = [entry.duration_ms or 0 for entry in run.applied]
        namespace = body["metadata"]["namespace"]
        self.metrics.run_finished(engine, namespace, run.result == "Succeeded", durations)

    def _start_job(self, body: dict[str, Any], observed: Observed, decision: Decision) -> None:
        spec, source, target = observed.validation.spec, observed.source, decision.target_hash
        if spec is None or source is None or target is None or decision.run is None:
            return  # the planner creates Jobs only for a valid spec with a resolved source
        metadata = body["metadata"]
        identity = ResourceIdentity(metadata["namespace"], metadata["name"], metadata["uid"])
        attempt = decision.run.attempt
        manifest = job_manifest(
            identity, spec, source, target, self.settings.runner, attempt=attempt
        )
        # False means the Job exists already (a restarted operator): it is adopted as it is.
        if self.cluster.create_job(identity.namespace, manifest):
            message = f"started migration Job {manifest['metadata']['name']} (attempt {attempt})"
            self.cluster.record_event(body, "Normal", EventReason.RUN_STARTED, message)
            self.metrics.run_started(spec.migrations.engine, identity.namespace)

    def _announce_result(self, body: dict[str, Any], run: RunRecord, message: str) -> None:
        if run.result == "Succeeded":
            self.cluster.record_event(body, "Normal", EventReason.RUN_SUCCEEDED, message)
        elif run.result == "Failed":
            self.cluster.record_event(body, "Warning", EventReason.RUN_FAILED, message)

    def _write_status(
        self, body: dict[str, Any], status: DatabaseMigrationStatus, decision: Decision
    ) -> None:
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
        self.metrics.pending(body["metadata"]["namespace"], body["metadata"]["name"], pending)
        if new_status == status:
            return  # an unchanged status is not written: no event, no reconcile loop
        document = new_status.model_dump(by_alias=True, mode="json")
        self.cluster.write_database_migration_status(
            body["metadata"]["namespace"], body["metadata"]["name"], document
        )

    def _operate_gate(
        self, body: dict[str, Any], deployment: dict[str, Any], step: GateStep
    ) -> None:
        """pre_deploy's writes to the Deployment, after the status: each is a guarded JSON
        Patch, and one that finds the Deployment changed is left to the reconcile its change
        starts."""
        namespace, name = body["metadata"]["namespace"], deployment["metadata"]["name"]
        if step.resume_refused is not None:
            message = (
                f"Deployment {name} was resumed by {step.resume_refused} while template "
                f"{step.gate_hash} waits for its migration; it was paused again"
            )
            self.cluster.record_event(body, "Warning", EventReason.RESUME_REFUSED, message)
            patch = clear_resume_refused_patch(step.resume_refused)
            self.cluster.patch_deployment(namespace, name, patch)
        if step.release and self.cluster.patch_deployment(
            namespace, name, release_patch(step.gate_hash, step.stale_pending)
        ):
            message = f"released Deployment {name}: template {step.gate_hash} is migrated"
            self.cluster.record_event(body, "Normal", EventReason.DEPLOYMENT_RELEASED, message)
        elif step.approve:
            patch = approve_patch(deployment, step.gate_hash)
            self.cluster.patch_deployment(namespace, name, patch)

    def release_on_deletion(self, namespace: str, name: str, spec: dict[str, Any]) -> bool:
        """The resource is being deleted: the Deployment it gates loses the gate's annotations
        and resumes if it paused it. False when the Deployment changed meanwhile (try again)."""
        with self._lock_for(namespace, name):
            validated = validate_spec(spec).spec
            if validated is None or validated.deployment is None:
                return True
            deployment = self.cluster.deployment(namespace, validated.deployment.name)
            operations = forget_gate_patch(deployment) if deployment is not None else []
            if not operations:
                return True
            return self.cluster.patch_deployment(namespace, validated.deployment.name, operations)
