"""What the reconciler needs from the cluster, as a Protocol: `kube.KubeApi` implements it.

Objects travel as plain dicts shaped as the API server sends them, so the reconciler and its
tests need no Kubernetes client.
"""

from __future__ import annotations

from typing import Any, Protocol


class ClusterError(Exception):
    """The API server refused a write for a reason the caller did not expect (it is down, a
    webhook failed, a quota): the status code and reason only, never the object or its data."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status
        self.reason = reason


class Cluster(Protocol):
    def database_migration(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def database_migrations(self, namespace: str) -> list[dict[str, Any]]: ...

    def write_database_migration_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None: ...

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]: ...

    def patch_deployment(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> bool:
        """False when a `test` failed, it conflicted or the Deployment is gone; raises
        ClusterError on any other refusal."""
        ...

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def job(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_job(self, namespace: str, manifest: dict[str, Any]) -> bool: ...

    def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]: ...

    def record_event(
        self, involved: dict[str, Any], event_type: str, reason: str, message: str
    ) -> None: ...
