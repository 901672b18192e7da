"""kopf registrations: thin handlers that hand every change to the Reconciler.

A DatabaseMigration is reconciled when it is created, changed or found at startup, and by a timer
while an automatic retry is scheduled; a Job the operator made is followed through its owner, so
a finished Job's result reaches the owner's status at once. Registration takes the registry and
the Reconciler as arguments: no module globals, and each test runs its own operator.
"""

from __future__ import annotations

from typing import Any

import kopf

from .manifests import MANAGED_BY, MANAGED_BY_LABEL
from .models import API_VERSION, GROUP, KIND, PLURAL, VERSION
from .reconcile import Reconciler


def owning_resource(job: kopf.Body | dict[str, Any]) -> str | None:
    """The DatabaseMigration that controls this Job, if any."""
    for owner in job.get("metadata", {}).get("ownerReferences", []) or []:
        if owner.get("apiVersion") == API_VERSION and owner.get("kind") == KIND:
            return str(owner.get("name"))
    return None


def _retry_scheduled(status: kopf.Status, **_: Any) -> bool:
    return bool(status.get("nextRetryAt"))


def register_handlers(
    registry: kopf.OperatorRegistry, reconciler: Reconciler, *, retry_check_seconds: float = 5.0
) -> None:
    def reconcile_resource(namespace: str | None, name: str | None, **_: Any) -> None:
        if namespace and name:
            reconciler.reconcile(namespace, name)

    def follow_job(body: kopf.Body, namespace: str | None, **_: Any) -> None:
        owner = owning_resource(body)
        if namespace and owner:
            reconciler.reconcile(namespace, owner)

    kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="reconcile-created")(
        reconcile_resource
    )
    kopf.on.update(GROUP, VERSION, PLURAL, registry=registry, id="reconcile-updated")(
        reconcile_resource
    )
    kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, id="reconcile-resumed")(
        reconcile_resource
    )
    # A scheduled automatic retry has no event to wake it: a timer looks while one is pending.
    kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id="scheduled-retry",
        interval=retry_check_seconds,
        when=_retry_scheduled,
    )(reconcile_resource)
    kopf.on.event(
        "batch", "v1", "jobs", labels={MANAGED_BY_LABEL: MANAGED_BY}, registry=registry, id="job"
    )(follow_job)
