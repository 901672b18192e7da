"""The one module that talks to the Kubernetes API: reads and writes as plain dicts.

Everything goes through the official `kubernetes` client with `_preload_content=False`, so the
rest of the operator sees objects exactly as the API server sent them (camelCase, no client
models) and never imports the client.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .cluster import ClusterError
from .manifests import RUNNER_CONTAINER
from .models import API_VERSION, GROUP, KIND, PLURAL, VERSION

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on its pods
HTTP_NOT_FOUND = 404
HTTP_CONFLICT = 409
HTTP_UNPROCESSABLE = 422  # a JSON Patch `test` operation that failed
EVENT_MESSAGE_LIMIT = 1024  # the API server refuses longer event messages
EVENT_SOURCE = "stagecraft-operator"
# kopf runs sync handlers on a thread pool; urllib3's default pool of 4 connections would make
# concurrent reconciles queue for a connection and log "pool is full".
CONNECTION_POOL_SIZE = 16

logger = logging.getLogger(__name__)


def _json(response: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(response.data)
    return document


def _or_none(call: Any, *args: Any) -> dict[str, Any] | None:
    try:
        return _json(call(*args, _preload_content=False))
    except ApiException as error:
        if error.status == HTTP_NOT_FOUND:
            return None
        raise


class KubeApi:
    """The cluster as the reconciler needs it; built once per operator process."""

    runner_container = RUNNER_CONTAINER

    def __init__(self, api_client: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api_client)
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)

    @classmethod
    def for_host(cls, host: str) -> KubeApi:
        configuration = client.Configuration(host=host)
        configuration.verify_ssl = False
        configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
        return cls(client.ApiClient(configuration))

    @classmethod
    def from_environment(cls) -> KubeApi:
        """In-cluster service account, else the local kubeconfig (as kubectl does)."""
        from kubernetes import config

        # The loaders are untyped in the client's stubs.
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
        return cls(client.ApiClient(configuration))

    def database_migration(self, namespace: str, name: str) -> dict[str, Any] | None:
        get = self._custom.get_namespaced_custom_object
        try:
            return _json(get(GROUP, VERSION, namespace, PLURAL, name, _preload_content=False))
        except ApiException as error:
            if error.status == HTTP_NOT_FOUND:
                return None
            raise

    def database_migrations(self, namespace: str) -> list[dict[str, Any]]:
        listed = self._custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _preload_content=False
        )
        items: list[dict[str, Any]] = _json(listed).get("items", [])
        return items

    def write_database_migration_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        """Merge-patch the status subresource; a None value removes that field."""
        self._custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )

    def patch_database_migration(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the resource itself (annotations of run and retry requests)."""
        self._custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _or_none(self._apps.read_namespaced_deployment, name, namespace)

    def pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        response = self._core.list_namespaced_pod(
            namespace, label_selector=label_selector, _preload_content=False
        )
        items: list[dict[str, Any]] = _json(response).get("items", [])
        return items

    def patch_deployment(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> bool:
        """Apply a JSON Patch to a Deployment; False when one of its `test` operations failed
        (the Deployment changed since it was read), it conflicted or the Deployment is gone.
        Any other refusal is a ClusterError (a failing gate webhook answers 500)."""
        try:
            # A list body is sent as application/json-patch+json.
            body: Any = operations
            self._apps.patch_namespaced_deployment(name, namespace, body, _preload_content=False)
        except ApiException as error:
            if error.status in (HTTP_NOT_FOUND, HTTP_CONFLICT, HTTP_UNPROCESSABLE):
                return False
            raise ClusterError(int(error.status or 0), str(error.reason or "")) from error
        return True

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _or_none(self._core.read_namespaced_config_map, name, namespace)

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _or_none(self._batch.read_namespaced_job, name, namespace)

    def create_job(self, namespace: str, manifest: dict[str, Any]) -> bool:
        """Create the Job; False when a Job of that name exists already (it is adopted)."""
        try:
            # The client serialises a plain dict as it is; its type hints only name V1Job.
            body: Any = manifest
            self._batch.create_namespaced_job(namespace, body, _preload_content=False)
        except ApiException as error:
            if error.status == HTTP_CONFLICT:
                return False
            raise
        return True

    def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        response = self._core.list_namespaced_pod(
            namespace, label_selector=f"{JOB_NAME_LABEL}={job_name}", _preload_content=False
        )
        items: list[dict[str, Any]] = _json(response).get("items", [])
        return items

    def record_event(
        self, involved: dict[str, Any], event_type: str, reason: str, message: str
    ) -> None:
        """Post a core/v1 Event about a DatabaseMigration; best effort, as kubectl's are."""
        metadata = involved["metadata"]
        now = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{metadata['name']}.",
                "namespace": metadata["namespace"],
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", API_VERSION),
                "kind": involved.get("kind", KIND),
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata.get("uid"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:EVENT_MESSAGE_LIMIT],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": EVENT_SOURCE},
        }
        try:
            self._core.create_namespaced_event(metadata["namespace"], event, _preload_content=False)
        except ApiException as error:  # a lost event must not stop a migration
            logger.warning("could not post event %s on %s: %s", reason, metadata["name"], error)
