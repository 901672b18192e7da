"""kopf registrations: thin handlers that hand every change to the Reconciler.

A DatabaseMigration is reconciled when it is created, changed or found at startup; a Job the
operator made is followed through its owner, so a finished Job's result reaches the owner's status
at once. Registration takes the registry and the Reconciler as arguments: no module globals, and
each test runs its own operator.
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


def register_handlers(registry: kopf.OperatorRegistry, reconciler: Reconciler) -> None:
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
    kopf.on.event(
        "batch", "v1", "jobs", labels={MANAGED_BY_LABEL: MANAGED_BY}, registry=registry, id="job"
    )(follow_job)
