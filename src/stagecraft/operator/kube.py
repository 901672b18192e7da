"""The one module that talks to the Kubernetes API: reads and writes as plain dicts.

Everything goes through the official `kubernetes` client's ApiClient (its configuration, its
authentication, its connection pool), a request at a time: `param_serialize` to build it,
`call_api` to send it, the answer parsed as JSON. So the rest of the operator sees objects
exactly as the API server sent them (camelCase, no client models) and never imports the client.

Not through the client's generated methods (`create_namespaced_job` and the like): each call
runs pydantic's argument validation, and a body is converted into the client's models and back
before it is sent. With 200 rollouts at once that conversion of each Job manifest was a third of
a reconcile's CPU (bench/bench_rollout.py profile), on the one interpreter every reconcile and
kopf's event loop share.
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
HTTP_OK_FIRST, HTTP_OK_LAST = 200, 299
EVENT_MESSAGE_LIMIT = 1024  # the API server refuses longer event messages
EVENT_SOURCE = "stagecraft-operator"
# kopf runs sync handlers on a thread pool; urllib3's default pool of 4 connections would make
# concurrent reconciles queue for a connection and log "pool is full".
CONNECTION_POOL_SIZE = 16

logger = logging.getLogger(__name__)


JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
AUTH_SETTINGS = ["BearerToken"]  # as the client's generated methods name the service account's


class KubeApi:
    """The cluster as the reconciler needs it; built once per operator process."""

    runner_container = RUNNER_CONTAINER

    def __init__(self, api_client: client.ApiClient) -> None:
        self._client = api_client
        # The typed APIs, for the tests' own writes through the same client.
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

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = JSON,
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """One request; the answer as a dict. An answer other than 2xx raises the client's
        ApiException (its `status` is the HTTP status), as the generated methods do."""
        headers = {"Accept": JSON, "Content-Type": content_type}
        method, url, headers, _, _ = self._client.param_serialize(
            method, path, query_params=query, header_params=headers, auth_settings=AUTH_SETTINGS
        )
        # The body goes to the REST layer as it is, which sends it as JSON.
        response: Any = self._client.call_api(method, url, headers, body)  # RESTResponse, untyped
        response.read()
        if not HTTP_OK_FIRST <= response.status <= HTTP_OK_LAST:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        document: dict[str, Any] = json.loads(response.data)
        return document

    def _get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", path)
        except ApiException as error:
            if error.status == HTTP_NOT_FOUND:
                return None
            raise

    def database_migration(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(_resource_path(namespace, name))

    def database_migrations(self, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._request("GET", _resource_path(namespace)).get(
            "items", []
        )
        return items

    def write_database_migration_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        """Merge-patch the status subresource; a None value removes that field."""
        path = f"{_resource_path(namespace, name)}/status"
        self._request("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)

    def patch_database_migration(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the resource itself (annotations of run and retry requests)."""
        path = _resource_path(namespace, name)
        self._request("PATCH", path, body=patch, content_type=MERGE_PATCH)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")

    def pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{namespace}/pods"
        listed = self._request("GET", path, query=[("labelSelector", label_selector)])
        items: list[dict[str, Any]] = listed.get("items", [])
        return items

    def patch_deployment(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> bool:
        """Apply a JSON Patch to a Deployment; False when one of its `test` operations failed
        (the Deployment changed since it was read), it conflicted or the Deployment is gone.
        Any other refusal is a ClusterError (a failing gate webhook answers 500)."""
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        try:
            self._request("PATCH", path, body=operations, content_type=JSON_PATCH)
        except ApiException as error:
            if error.status in (HTTP_NOT_FOUND, HTTP_CONFLICT, HTTP_UNPROCESSABLE):
                return False
            raise ClusterError(int(error.status or 0), str(error.reason or "")) from error
        return True

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")

    def create_job(self, namespace: str, manifest: dict[str, Any]) -> bool:
        """Create the Job; False when a Job of that name exists already (it is adopted)."""
        try:
            self._request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body=manifest)
        except ApiException as error:
            if error.status == HTTP_CONFLICT:
                return False
            raise
        return True

    def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        return self.pods(namespace, f"{JOB_NAME_LABEL}={job_name}")

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
            self._request("POST", f"/api/v1/namespaces/{metadata['namespace']}/events", body=event)
        except ApiException as error:  # a lost event must not stop a migration
            logger.warning("could not post event %s on %s: %s", reason, metadata["name"], error)


def _resource_path(namespace: str, name: str | None = None) -> str:
    """A DatabaseMigration's path, or its namespace's collection's."""
    collection = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return collection if name is None else f"{collection}/{name}"
