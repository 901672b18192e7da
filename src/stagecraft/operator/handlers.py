"""kopf registrations: thin handlers that hand every change to the Reconciler.

A DatabaseMigration is reconciled when it is created, changed or found at startup, and again a
while later while a retry is scheduled, a Job is in flight or it waits on its Deployment (the
reconciler asks lanes.py for that revisit). A Job the operator made is followed through its
owner once it has finished, and a Deployment or ConfigMap through the resources that read it
when something they decide on changed: those reconciles are asked of lanes.py, by urgency.
Registration takes the registry and the Reconciler as arguments: no module globals, and each
test runs its own operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from ..config import Strategy
from .deployment_changes import Change, DecisiveChanges
from .gate import Gate
from .gate_index import MIGRATIONS_INDEX, GateKey, gates_of, index_gates
from .lanes import ReconcileLanes, Urgency
from .manifests import MANAGED_BY, MANAGED_BY_LABEL, a_rollout_waits_for
from .models import API_VERSION, GROUP, KIND, PLURAL, VERSION
from .reconcile import Reconciler
from .runs import job_finished
from .warmup import Warmup


def owning_resource(job: kopf.Body | dict[str, Any]) -> str | None:
    """The DatabaseMigration that controls this Job, if any."""
    for owner in job.get("metadata", {}).get("ownerReferences", []) or []:
        if owner.get("apiVersion") == API_VERSION and owner.get("kind") == KIND:
            return str(owner.get("name"))
    return None


SourceKey = tuple[str | None, str, str]  # namespace, kind, name: the resources reading it


def sources_of(spec: kopf.Spec | dict[str, Any]) -> list[tuple[str, str]]:
    """The objects whose changes can change a resource's target: (kind, name) pairs."""
    sources: list[tuple[str, str]] = []
    deployment = spec.get("deployment") or {}
    if isinstance(deployment, dict) and deployment.get("name"):
        sources.append(("Deployment", str(deployment["name"])))
    config_map = spec.get("configMap") or {}
    if isinstance(config_map, dict) and config_map.get("name"):
        sources.append(("ConfigMap", str(config_map["name"])))
    return sources


# Seconds before kopf calls a resource's handler again after an API error.
API_ERROR_BACKOFF = 5.0


def finished_or_gone(body: Mapping[str, Any], type: str | None, **_: Any) -> bool:
    """The Job events that change what its owner records: it finished (its result), or it was
    deleted (an attempt in flight whose Job is gone is made again). Its own creation and start
    have nothing to record; a run in flight is also looked at again a while later (lanes.py)."""
    return type == "DELETED" or job_finished(body)


# Threads for the reconciles that watched objects start (lanes.py): few, because the operator
# is bound by its one interpreter's CPU when many Deployments move at once, not by waiting.
RECONCILE_THREADS = 4


def register_handlers(
    registry: kopf.OperatorRegistry,
    reconciler: Reconciler,
    *,
    warm: Warmup,
    resync_seconds: float = 5.0,
) -> None:
    """`warm` is marked by every handler that runs (warmup.py)."""

    def reconcile_delivered(
        namespace: str | None, name: str | None, body: kopf.Body, **_: Any
    ) -> None:
        """The resource as the event delivered it saves reading it again."""
        warm.mark()
        if namespace and name:
            reconciler.reconcile(namespace, name, body)

    def report_queued(count: int) -> None:
        # Looked up when called: a registry is also built with a placeholder (tests/chart).
        reconciler.metrics.reconciles_queued(count)

    lanes = ReconcileLanes(
        reconciler, RECONCILE_THREADS, report_queued=report_queued, revisit_seconds=resync_seconds
    )

    @kopf.on.startup(registry=registry)
    async def connect_the_reconciler(**kwargs: Any) -> None:
        """Reconciles ask the lanes for revisits, and read the index of the resources gating
        each Deployment (kopf hands indexes to startup handlers too). Set when the operator
        starts: a registry is also built with a placeholder reconciler (tests/chart)."""
        reconciler.revisits = lanes
        reconciler.defer = lanes.defer
        reconciler.gates.attach(kwargs[MIGRATIONS_INDEX])

    async def follow_job(body: kopf.Body, namespace: str | None, **_: Any) -> None:
        warm.mark()
        owner = owning_resource(body)
        if namespace and owner:
            urgency = Urgency.ENDED if a_rollout_waits_for(body) else Urgency.RECORD
            lanes.request(urgency, namespace, owner)

    @kopf.on.cleanup(registry=registry)
    async def stop_lanes(**_: Any) -> None:
        lanes.stop()

    for on_change, handler_id in (
        (kopf.on.create, "reconcile-created"),
        (kopf.on.update, "reconcile-updated"),
        (kopf.on.resume, "reconcile-resumed"),
    ):
        on_change(
            GROUP, VERSION, PLURAL, registry=registry, id=handler_id, backoff=API_ERROR_BACKOFF
        )(reconcile_delivered)
    kopf.on.event(
        "batch",
        "v1",
        "jobs",
        labels={MANAGED_BY_LABEL: MANAGED_BY},
        registry=registry,
        id="job",
        when=finished_or_gone,
    )(follow_job)
    _follow_sources(registry, lanes, warm, reconciler)
    _index_resources(registry)
    _release_gates(registry, reconciler)


def _index_resources(registry: kopf.OperatorRegistry) -> None:
    """One kopf index of the resources (gate_index.py), under two kinds of keys:
    - (namespace, kind, name) -> the resources that take their files from that Deployment or
      ConfigMap, whose changes reconcile them (`_follow_sources`);
    - (namespace, Deployment) -> the pre_deploy resources that gate it: the gate webhook
      decides from it, and reconciles read it (through `reconciler.gates`) to know whether
      others gate their Deployment too, so that only the last of them to succeed releases it.
    """

    async def index_resource(
        namespace: str | None, name: str | None, spec: kopf.Spec, **kwargs: Any
    ) -> dict[SourceKey | GateKey, str | Gate]:
        """A coroutine: kopf runs plain functions on its thread pool, where each of a
        resource's events would wait behind the reconciles for a pure computation."""
        read: dict[SourceKey | GateKey, str | Gate] = {
            (namespace, kind, source): str(name) for kind, source in sources_of(spec)
        }
        for key, gate in index_gates(namespace, name, spec, **kwargs).items():
            read[key] = gate
        return read

    kopf.index(GROUP, VERSION, PLURAL, registry=registry, id=MIGRATIONS_INDEX)(index_resource)


def _follow_sources(
    registry: kopf.OperatorRegistry, lanes: ReconcileLanes, warm: Warmup, reconciler: Reconciler
) -> None:
    """A new image in the Deployment, or new files in the ConfigMap, is a new target: the
    resources that take their files from it are reconciled when it changes (or appears). Every
    event of a Deployment that resources read is stored first (seen.py), decisive or not: the
    reconciles it asks for read the Deployment from there."""

    def reconcile_users(kind: str, changes: DecisiveChanges | None = None) -> Any:
        async def reconcile_users_of_source(
            namespace: str | None,
            name: str | None,
            type: str | None,
            body: kopf.Body,
            **kwargs: Any,
        ) -> None:
            warm.mark()  # any Deployment or ConfigMap, used or not
            index: kopf.Index[SourceKey, str] = kwargs[MIGRATIONS_INDEX]
            users = set(index.get((namespace, kind, str(name)), []))
            if kind == "Deployment" and namespace and name:
                # Looked up when called: a registry is also built with a placeholder.
                seen = reconciler.seen_deployments
                if users and type != "DELETED":
                    seen.store(namespace, name, dict(body))
                else:
                    seen.forget(namespace, name)
            if not users or not namespace:
                return
            change = (
                Change.OTHER if changes is None else changes.change(namespace, name, type, body)
            )
            if change is None:
                return
            urgency = Urgency.ENDED if change is Change.ROLLOUT_ENDED else Urgency.CHANGED
            for resource in users:
                lanes.request(urgency, namespace, resource)

        return reconcile_users_of_source

    # Most writes to a Deployment are its rollout's progress: only decisive changes reconcile.
    kopf.on.event("apps", "v1", "deployments", registry=registry, id="deployment")(
        reconcile_users("Deployment", DecisiveChanges())
    )
    kopf.on.event("", "v1", "configmaps", registry=registry, id="configmap")(
        reconcile_users("ConfigMap")
    )


def gates_a_deployment(spec: kopf.Spec, **_: Any) -> bool:
    """pre_deploy resources with a Deployment: they carry the finalizer that releases it."""
    return bool(index_gates(None, "any", spec))


# Seconds before a deletion whose release found the Deployment changed is tried again.
RELEASE_RETRY_DELAY = 1.0


def stopped_gating(old: Any, new: Any, **_: Any) -> bool:
    """An update after which the resource no longer gates a Deployment it gated: its strategy
    is no longer pre_deploy, or it names another Deployment."""
    before = index_gates(None, "any", (old or {}).get("spec") or {})
    after = index_gates(None, "any", (new or {}).get("spec") or {})
    return bool(set(before) - set(after))


def _what_changed(new: Any) -> str:
    """Why a resource no longer gates the Deployment it gated, for the Event."""
    spec = (new or {}).get("spec") or {}
    strategy = (spec.get("migrations") or {}).get("strategy", Strategy.PRE_DEPLOY.value)
    if strategy != Strategy.PRE_DEPLOY.value:
        return f"is now {strategy}, no longer pre_deploy"
    deployment = (spec.get("deployment") or {}).get("name")
    return f"now gates Deployment {deployment}" if deployment else "names no Deployment any more"


def _release_gates(registry: kopf.OperatorRegistry, reconciler: Reconciler) -> None:
    """A finalizer: a deleted pre_deploy resource releases the Deployment it paused, so no
    Deployment stays paused for a resource that no longer exists; when other pre_deploy
    resources still gate it, only once they have all migrated its template. The same goes for a
    resource that stops gating it (another strategy or Deployment): the webhook no longer holds
    that Deployment for it, and nothing else would."""

    def release(
        namespace: str | None,
        name: str | None,
        spec: Mapping[str, Any],
        index: Mapping[GateKey, Any],
        event: tuple[kopf.Body, str] | None = None,
    ) -> None:
        """Release the Deployment of `spec` (see above); `event`: the resource and why, for the
        GateRemoved Event."""
        if not namespace or not name:
            return
        deployment = str((spec.get("deployment") or {}).get("name"))
        remaining = gates_of(index, namespace, deployment).without(name)
        involved, why = event if event is not None else (None, "")
        if not reconciler.release_gate(
            namespace, name, dict(spec), remaining, involved=involved, why=why
        ):
            raise kopf.TemporaryError(
                "the Deployment changed; releasing it again", delay=RELEASE_RETRY_DELAY
            )

    def release_deployment(
        namespace: str | None, name: str | None, spec: kopf.Spec, **kwargs: Any
    ) -> None:
        release(namespace, name, spec, kwargs.get(MIGRATIONS_INDEX) or {})

    def release_ungated_deployment(
        namespace: str | None,
        name: str | None,
        old: Any,
        new: Any,
        body: kopf.Body,
        **kwargs: Any,
    ) -> None:
        why = f"DatabaseMigration {name} {_what_changed(new)}"
        spec = (old or {}).get("spec") or {}
        release(namespace, name, spec, kwargs.get(MIGRATIONS_INDEX) or {}, (body, why))

    kopf.on.delete(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id="release-deployment",
        when=gates_a_deployment,
        backoff=API_ERROR_BACKOFF,
    )(release_deployment)
    kopf.on.update(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id="release-ungated-deployment",
        when=stopped_gating,
        backoff=API_ERROR_BACKOFF,
    )(release_ungated_deployment)
