"""Which pre_deploy resources gate which Deployment: the entries of kopf's in-memory index of
DatabaseMigrations, which the gate webhook decides from, and the view of it that reconciles read
to know whether other resources gate their Deployment too.

The same kopf index also holds which resources read each Deployment and ConfigMap (handlers.py),
under keys of three parts (namespace, kind, name) where the gates' have two: one index handler
call per event of a DatabaseMigration instead of one per index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..config import Strategy
from .gate import Gate, Gates

MIGRATIONS_INDEX = "migration_index"  # kopf passes the index to handlers under this keyword
GateKey = tuple[str | None, str]  # namespace, Deployment name
# How often a read of the index is tried again when kopf changed it while it was being copied.
READ_ATTEMPTS = 5


def index_gates(
    namespace: str | None, name: str | None, spec: Mapping[str, Any], **kwargs: Any
) -> dict[GateKey, Gate]:
    """The Deployments that pre_deploy resources gate, as the webhook must find them.

    A resource being deleted gates nothing: its finalizer releases the Deployment, and nothing
    would release a Deployment paused after that."""
    if (kwargs.get("meta") or {}).get("deletionTimestamp"):
        return {}
    migrations = spec.get("migrations") or {}
    deployment = spec.get("deployment") or {}
    strategy = (
        migrations.get("strategy", Strategy.PRE_DEPLOY.value)
        if isinstance(migrations, dict)
        else None
    )
    if strategy != Strategy.PRE_DEPLOY.value or not isinstance(deployment, dict):
        return {}
    if not deployment.get("name") or not name:
        return {}
    containers = tuple(str(container) for container in deployment.get("containers") or [])
    return {(namespace, str(deployment["name"])): (str(name), containers)}


def gates_of(index: Mapping[GateKey, Iterable[Gate]], namespace: str | None, name: str) -> Gates:
    """The resources that gate a Deployment (no members: none does)."""
    return Gates.of(index.get((namespace, name), []))


class GateDirectory:
    """The index as reconciles read it, from their own threads.

    kopf fills the index on its event loop, and hands it only to handlers: `attach` is called
    from a startup handler (kopf passes indexes to those too). Until then, and in an operator
    without the index, a resource knows of no other gating its Deployment.
    """

    def __init__(self) -> None:
        self._index: Mapping[GateKey, Iterable[Gate]] | None = None

    def attach(self, index: Mapping[GateKey, Iterable[Gate]]) -> None:
        self._index = index

    def others(self, namespace: str, deployment: str, resource: str) -> tuple[Gate, ...]:
        """The resources other than `resource` that gate the Deployment."""
        index = self._index
        if index is None:
            return ()
        for _ in range(READ_ATTEMPTS):
            try:  # a copy: kopf may change the entry on its loop while this thread reads it
                gates = tuple(index.get((namespace, deployment), ()))
            except RuntimeError:  # "changed size during iteration": read it again
                continue
            return tuple(gate for gate in gates if gate[0] != resource)
        raise RuntimeError(f"the gates of Deployment {namespace}/{deployment} kept changing")
