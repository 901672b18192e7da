"""Requests to the operator from the command line: `migrate retry` and `migrate run --cluster`.

They write an annotation on a DatabaseMigration (see `stagecraft.operator.requests`) through the
API server that kubectl would use: `--kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`, else
the pod's service account. The Kubernetes client loads only when one of these commands runs.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engines.errors import StagecraftError

if TYPE_CHECKING:
    from ..operator.kube import KubeApi

IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
HTTP_UNAUTHORIZED, HTTP_FORBIDDEN, HTTP_NOT_FOUND = 401, 403, 404


class ClusterError(StagecraftError):
    """The cluster answered, but not as asked: no such resource, no permission, bad kubeconfig."""


class ClusterUnreachable(StagecraftError):
    """The API server could not be reached; retry later."""


@dataclass(frozen=True)
class Connection:
    api: KubeApi
    server: str  # the API server's URL, for messages (it carries no credentials)
    default_namespace: str  # the context's namespace, as kubectl would use it


@dataclass(frozen=True)
class Request:
    kind: str  # "retry-request" or "run-request", the JSON document's kind
    namespace: str
    name: str
    annotation: str
    value: str


def _kubeconfig_files(kubeconfig: str | None) -> list[Path]:
    if kubeconfig:
        return [Path(kubeconfig)]
    listed = os.environ.get("KUBECONFIG", "")
    if listed:
        return [Path(part) for part in listed.split(os.pathsep) if part]
    return [Path.home() / ".kube" / "config"]


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    from kubernetes import config

    contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    chosen = next((c for c in contexts if c["name"] == context), None) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


def connect(kubeconfig: str | None, context: str | None) -> Connection:
    """The API server kubectl would talk to, with the same credentials."""
    from kubernetes import client, config

    from ..operator.kube import KubeApi

    configuration = client.Configuration()
    files = _kubeconfig_files(kubeconfig)
    try:
        if kubeconfig or context or any(file.is_file() for file in files):
            # The loaders are untyped in the client's stubs.
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
            namespace = _context_namespace(kubeconfig, context)
        else:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            namespace = IN_CLUSTER_NAMESPACE_FILE.read_text(encoding="utf-8").strip() or "default"
    except (config.ConfigException, OSError) as error:
        where = ", ".join(str(file) for file in files)
        context_note = f" (context {context!r})" if context else ""
        raise ClusterError(
            f"cannot load the Kubernetes configuration from {where}{context_note}: {error}; "
            "pass --kubeconfig and --context, or set KUBECONFIG, as for kubectl"
        ) from None
    configuration.retries = 1  # one quick retry, then report the server unreachable
    return Connection(KubeApi(client.ApiClient(configuration)), configuration.host, namespace)


def _api_call(connection: Connection, what: str, call: Any, *args: Any) -> Any:
    """Run one API call; errors become messages that name the resource and what to do."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return call(*args)
    except ApiException as error:
        if error.status == HTTP_NOT_FOUND:
            raise ClusterError(f"no {what} at {connection.server}") from None
        if error.status in (HTTP_UNAUTHORIZED, HTTP_FORBIDDEN):
            raise ClusterError(
                f"the API server at {connection.server} refused access to {what} "
                f"(HTTP {error.status} {error.reason}); check your credentials and RBAC, e.g. "
                "`kubectl auth can-i patch databasemigrations.stagecraft.dev`"
            ) from None
        raise ClusterError(
            f"the API server at {connection.server} refused {what}: HTTP {error.status} "
            f"{error.reason}"
        ) from None
    except HTTPError as error:
        raise ClusterUnreachable(
            f"cannot reach the Kubernetes API server at {connection.server} "
            f"({type(error).__name__}); check the cluster is up and retry"
        ) from None


def _resource(connection: Connection, namespace: str, name: str) -> dict[str, Any]:
    what = f"DatabaseMigration {name!r} in namespace {namespace!r}"
    body = _api_call(connection, what, connection.api.database_migration, namespace, name)
    if body is None:
        raise ClusterError(
            f"no {what} at {connection.server}; `kubectl get databasemigrations -n {namespace}` "
            "lists the resources there"
        )
    resource: dict[str, Any] = body
    return resource


def requester() -> str:
    """Who asks, as the token records it: the local user name."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the passwd file
        return "unknown"


def request_retry(connection: Connection, namespace: str, name: str) -> Request:
    """Write a fresh stagecraft.dev/retry token: the operator starts a new attempt now."""
    from ..operator.models import RETRY_ANNOTATION
    from ..operator.requests import new_token, retry_patch

    _resource(connection, namespace, name)
    token = new_token(requester())
    _patch(connection, namespace, name, retry_patch(token))
    return Request("retry-request", namespace, name, RETRY_ANNOTATION, token)


def request_run(connection: Connection, namespace: str, name: str, plan: str | None) -> Request:
    """Write a stagecraft.dev/run-request token (bound to `plan` if given) on a manual resource."""
    from ..operator.models import RUN_REQUEST_ANNOTATION
    from ..operator.requests import InvalidPlanHash, new_token, run_request_patch

    try:
        patch = run_request_patch(new_token(requester()), plan)
    except InvalidPlanHash as error:
        raise ClusterError(f"--plan: {error}") from None
    resource = _resource(connection, namespace, name)
    # The models' default strategy is pre_deploy; only manual resources wait for a request.
    strategy = ((resource.get("spec") or {}).get("migrations") or {}).get("strategy")
    if (strategy or "pre_deploy") != "manual":
        raise ClusterError(
            f"DatabaseMigration {name!r} in namespace {namespace!r} has strategy "
            f"{strategy or 'pre_deploy'}: the operator runs it by itself, and a run request "
            "counts only for the manual strategy; to start a fresh attempt now: "
            f"stagecraft migrate retry {name} -n {namespace}"
        )
    _patch(connection, namespace, name, patch)
    value = patch["metadata"]["annotations"][RUN_REQUEST_ANNOTATION]
    return Request("run-request", namespace, name, RUN_REQUEST_ANNOTATION, value)


def _patch(connection: Connection, namespace: str, name: str, patch: dict[str, Any]) -> None:
    what = f"DatabaseMigration {name!r} in namespace {namespace!r}"
    api = connection.api
    _api_call(connection, what, api.patch_database_migration, namespace, name, patch)
