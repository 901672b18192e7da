"""One reconcile of one DatabaseMigration: observe, ask the planner, act, write the status.

The cluster and the clock are passed in (`Cluster` is implemented by `kube.KubeApi`), so this
module holds no Kubernetes client and reads as the steps it takes. Reconciles of the same resource
are serialised: the resource's handler and its Job's handler both land here, and the second must
see what the first wrote.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from .conditions import updated_conditions
from .manifests import (
    RUNNER_CONTAINER,
    TARGET_HASH_LABEL,
    MigrationSource,
    ResourceIdentity,
    RunnerSettings,
    config_map_digest,
    job_manifest,
    job_name,
    target_hash,
)
from .models import DatabaseMigrationSpec, DatabaseMigrationStatus, DeploymentReference
from .planner import Action, Decision, Observed, decide
from .runs import JobObservation, observe_job
from .validation import validate_spec


class Cluster(Protocol):
    def database_migration(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def write_database_migration_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None: ...

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def job(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_job(self, namespace: str, manifest: dict[str, Any]) -> bool: ...

    def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]: ...


def utc_now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SourceLookup:
    source: MigrationSource | None
    problem: str = ""


def _deployment_image(deployment: dict[str, Any], wanted: list[str]) -> str | None:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    for container in containers or []:
        if not wanted or container.get("name") == wanted[0]:
            image = container.get("image")
            return str(image) if image else None
    return None


def _config_map_source(cluster: Cluster, namespace: str, name: str) -> SourceLookup:
    config_map = cluster.config_map(namespace, name)
    if config_map is None:
        return SourceLookup(None, f"ConfigMap {namespace}/{name} not found")
    digest = config_map_digest(dict(config_map.get("data") or {}))
    return SourceLookup(MigrationSource(config_map=name, config_map_digest=digest))


def _deployment_source(
    cluster: Cluster, namespace: str, reference: DeploymentReference
) -> SourceLookup:
    deployment = cluster.deployment(namespace, reference.name)
    if deployment is None:
        return SourceLookup(None, f"Deployment {namespace}/{reference.name} not found")
    image = _deployment_image(deployment, reference.containers)
    if image is None:
        wanted = reference.containers[0] if reference.containers else "any"
        return SourceLookup(
            None, f"Deployment {namespace}/{reference.name} has no container {wanted!r}"
        )
    return SourceLookup(MigrationSource(image=image))


def resolve_source(cluster: Cluster, namespace: str, spec: DatabaseMigrationSpec) -> SourceLookup:
    """Where this run's files come from: the ConfigMap, the explicit image or the Deployment's."""
    if spec.config_map is not None:
        return _config_map_source(cluster, namespace, spec.config_map.name)
    if spec.image is not None:
        return SourceLookup(MigrationSource(image=spec.image))
    if spec.deployment is not None:
        return _deployment_source(cluster, namespace, spec.deployment)
    return SourceLookup(None, "no source of migration files")  # the model rules this out


class Reconciler:
    def __init__(
        self,
        cluster: Cluster,
        settings: RunnerSettings,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.cluster = cluster
        self.settings = settings
        self.clock = clock
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
            return decision

    def _observe(
        self, namespace: str, name: str, body: dict[str, Any], status: DatabaseMigrationStatus
    ) -> Observed:
        validation = validate_spec(body.get("spec") or {})
        lookup = SourceLookup(None)
        job: JobObservation | None = None
        if validation.spec is not None:
            lookup = resolve_source(self.cluster, namespace, validation.spec)
        if validation.spec is not None and lookup.source is not None:
            expected = job_name(name, target_hash(validation.spec, lookup.source))
            job = self._observe_job(namespace, expected)
        return Observed(
            resource_name=name,
            validation=validation,
            source=lookup.source,
            source_problem=lookup.problem,
            last_run=status.last_run,
            job=job,
        )

    def _observe_job(self, namespace: str, name: str) -> JobObservation | None:
        job = self.cluster.job(namespace, name)
        if job is None:
            return None
        pods = self.cluster.job_pods(namespace, name)
        return observe_job(job, pods, RUNNER_CONTAINER, TARGET_HASH_LABEL)

    def _act(self, body: dict[str, Any], observed: Observed, decision: Decision) -> None:
        if decision.action is not Action.CREATE_JOB:
            return  # every other action only changes the status
        spec, source, target = observed.validation.spec, observed.source, decision.target_hash
        if spec is None or source is None or target is None:
            return  # the planner creates Jobs only for a valid spec with a resolved source
        metadata = body["metadata"]
        identity = ResourceIdentity(metadata["namespace"], metadata["name"], metadata["uid"])
        manifest = job_manifest(identity, spec, source, target, self.settings)
        # False means the Job exists already (a restarted operator): it is adopted as it is.
        self.cluster.create_job(identity.namespace, manifest)

    def _write_status(
        self, body: dict[str, Any], status: DatabaseMigrationStatus, decision: Decision
    ) -> None:
        generation = int(body["metadata"].get("generation") or 0)
        run = decision.run
        if run is not None and run.result == "Running" and run.started_at is None:
            previous = status.last_run
            kept = previous.started_at if previous and previous.job == run.job else None
            run = run.model_copy(update={"started_at": kept or self.clock()})
        pending = status.pending
        if run is not None and run.result == "Succeeded":
            pending = 0  # the run applied everything that was pending for its target
        new_status = DatabaseMigrationStatus(
            observed_generation=generation,
            conditions=updated_conditions(
                status.conditions, decision.verdict, generation, self.clock()
            ),
            target_hash=decision.target_hash,
            last_run=run,
            pending=pending,
        )
        if new_status == status:
            return  # an unchanged status is not written: no event, no reconcile loop
        document = new_status.model_dump(by_alias=True, mode="json")
        self.cluster.write_database_migration_status(
            body["metadata"]["namespace"], body["metadata"]["name"], document
        )
