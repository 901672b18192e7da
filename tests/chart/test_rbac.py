"""The chart's RBAC grants exactly what the operator uses: every API request kube.py sends,
what kopf does for the handlers the operator registers, and kopf's own bookkeeping; nothing else.

The needs are taken from the requests themselves: each KubeApi method is called against the
tests' API-server emulator, which records the resource and verb of every request it serves, and
KUBE_API_PERMISSIONS must name exactly those (a test fails when kube.py gains a method or a
request missing here); kopf's needs come from the handlers that `build_registry` registers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import kmock
import pytest
import pytest_asyncio
from kubernetes.client.exceptions import ApiException

from stagecraft.operator.kube import KubeApi
from stagecraft.operator.main import build_registry, register_namespace_scope
from stagecraft.operator.reconcile import Reconciler
from stagecraft.operator.scoping import NamespaceScope, parse_selector
from tests.operator.emulator import ApiServerEmulator, Asked
from tests.operator.harness import _declare_custom_resource

from .rendering import COMBINATIONS, NAMESPACE, Rendered, render

Permission = tuple[str, str, str]  # apiGroup, resource, verb
CLUSTER = "*cluster*"  # the scope of a grant through a ClusterRoleBinding

GROUP = "stagecraft.dev"
MIGRATIONS = "databasemigrations"

# Each KubeApi method and what it needs. create_job needs one more permission than its request:
# the Job's owner reference sets blockOwnerDeletion (manifests.py), which the API server's
# OwnerReferencesPermissionEnforcement plugin allows only to who may update the owner's
# finalizers.
KUBE_API_PERMISSIONS: dict[str, set[Permission]] = {
    "database_migration": {(GROUP, MIGRATIONS, "get")},
    "database_migrations": {(GROUP, MIGRATIONS, "list")},
    "write_database_migration_status": {(GROUP, f"{MIGRATIONS}/status", "patch")},
    "patch_database_migration": {(GROUP, MIGRATIONS, "patch")},
    "deployment": {("apps", "deployments", "get")},
    "config_map": {("", "configmaps", "get")},
    "job": {("batch", "jobs", "get")},
    "create_job": {("batch", "jobs", "create"), (GROUP, f"{MIGRATIONS}/finalizers", "update")},
    "job_pods": {("", "pods", "list")},
    "pods": {("", "pods", "list")},
    "patch_deployment": {("apps", "deployments", "patch")},
    "record_event": {("", "events", "create")},
}
EXTRA_PERMISSION_REASONS = {(GROUP, f"{MIGRATIONS}/finalizers", "update"): "blockOwnerDeletion"}

_RESOURCE = {"metadata": {"name": "shop-db", "namespace": "shop", "uid": "u-1"}}
_JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "shop-db-run-1"}}
# A call of each KubeApi method; what it finds or not does not matter, only what it asks.
EXAMPLE_CALLS: dict[str, Callable[[KubeApi], object]] = {
    "database_migration": lambda api: api.database_migration("shop", "shop-db"),
    "database_migrations": lambda api: api.database_migrations("shop"),
    "write_database_migration_status": lambda api: api.write_database_migration_status(
        "shop", "shop-db", {}
    ),
    "patch_database_migration": lambda api: api.patch_database_migration("shop", "shop-db", {}),
    "deployment": lambda api: api.deployment("shop", "shop-api"),
    "config_map": lambda api: api.config_map("shop", "shop-migrations"),
    "job": lambda api: api.job("shop", "shop-db-run-1"),
    "create_job": lambda api: api.create_job("shop", _JOB),
    "job_pods": lambda api: api.job_pods("shop", "shop-db-run-1"),
    "pods": lambda api: api.pods("shop", "app=shop-api"),
    "patch_deployment": lambda api: api.patch_deployment("shop", "shop-api", []),
    "record_event": lambda api: api.record_event(_RESOURCE, "Normal", "Checked", "a message"),
}

# Cluster-scoped resources: granted by the ClusterRole in every mode.
CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces", "clusterkopfpeerings"}
VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


@pytest_asyncio.fixture
async def recording() -> AsyncIterator[tuple[ApiServerEmulator, KubeApi]]:
    emulator = ApiServerEmulator()
    _declare_custom_resource(emulator)
    async with emulator, kmock.Server(emulator) as server:
        yield emulator, KubeApi.for_host(str(server.url).rstrip("/"))


def _permission(asked: Asked) -> Permission:
    """The RBAC verb of a request: a GET reads one object (get) or a collection (list)."""
    if asked.method == "GET":
        verb = "get" if asked.named else "list"
    else:
        verb = VERBS.get(asked.method, asked.method.lower())  # WATCH: watch
    return (asked.group, asked.resource, verb)


def _kube_api_methods() -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(KubeApi, inspect.isfunction)
        if not name.startswith("_")
    }


def test_every_kube_api_method_is_in_the_permission_table() -> None:
    methods = _kube_api_methods()
    missing = methods - set(KUBE_API_PERMISSIONS)
    assert not missing, (
        f"KubeApi gained {sorted(missing)}: add the permissions they need to "
        "KUBE_API_PERMISSIONS and EXAMPLE_CALLS here and to "
        "charts/stagecraft/templates/rbac.yaml"
    )
    assert set(KUBE_API_PERMISSIONS) <= methods, "the table names methods KubeApi no longer has"
    assert set(EXAMPLE_CALLS) == set(KUBE_API_PERMISSIONS)


@pytest.mark.parametrize("method", sorted(KUBE_API_PERMISSIONS))
async def test_the_table_matches_the_requests_of(
    method: str, recording: tuple[ApiServerEmulator, KubeApi]
) -> None:
    emulator, api = recording

    def call() -> None:
        with contextlib.suppress(ApiException):  # a 404 asked all the same
            EXAMPLE_CALLS[method](api)

    await asyncio.to_thread(call)

    needed = {_permission(asked) for asked in emulator.asked}
    assert needed, f"KubeApi.{method} sent no request"
    extra = KUBE_API_PERMISSIONS[method] - needed
    assert extra <= set(EXTRA_PERMISSION_REASONS), (method, extra)
    assert needed <= KUBE_API_PERMISSIONS[method], (
        f"KubeApi.{method} asks for {sorted(needed - KUBE_API_PERMISSIONS[method])}: "
        "add them to KUBE_API_PERMISSIONS and to charts/stagecraft/templates/rbac.yaml"
    )


def _kopf_permissions(*, peering: str | None, namespace_selector: str) -> set[Permission]:
    """What kopf does for the operator's handlers (registered as run_operator registers them),
    and for itself."""
    # The handlers only close over the reconciler; none of them runs here.
    reconciler = cast(Reconciler, object())
    registry = build_registry(reconciler, resync_seconds=5.0)
    if namespace_selector:
        scope = NamespaceScope(parse_selector(namespace_selector))
        register_namespace_scope(registry, scope, reconciler)
    needs: set[Permission] = {("apiextensions.k8s.io", "customresourcedefinitions", "list")}
    needs.add(("apiextensions.k8s.io", "customresourcedefinitions", "watch"))
    # kopf's registries are private; kopf's own observer reads them the same way.
    watched: list[Any] = [
        *registry._watching.get_all_handlers(),
        *registry._indexing.get_all_handlers(),
    ]
    stateful: list[Any] = [
        *registry._changing.get_all_handlers(),
        *registry._spawning.get_all_handlers(),
    ]
    for handler in watched + stateful:
        selector = handler.selector
        resource = selector.plural or selector.any_name
        needs |= {(selector.group or "", resource, verb) for verb in ("list", "watch")}
    for handler in stateful:  # kopf keeps their progress in annotations and the status
        selector = handler.selector
        resource = selector.plural or selector.any_name
        needs |= {
            (selector.group, resource, "patch"),
            (selector.group, f"{resource}/status", "patch"),
        }
    if peering:
        needs |= {("kopf.dev", peering, verb) for verb in ("list", "watch", "patch")}
    return needs


def _expected(values: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    namespaces = values.get("watchNamespaces", [])
    several = values.get("replicaCount", 1) > 1
    peering = ("kopfpeerings" if namespaces else "clusterkopfpeerings") if several else None
    needs = _kopf_permissions(
        peering=peering,
        namespace_selector=render(values).environment().get("STAGECRAFT_NAMESPACE_SELECTOR", ""),
    )
    for permissions in KUBE_API_PERMISSIONS.values():
        needs |= permissions
    expected: set[tuple[str, str, str, str]] = set()
    for group, resource, verb in needs:
        scopes = [CLUSTER] if resource in CLUSTER_SCOPED or not namespaces else namespaces
        expected |= {(scope, group, resource, verb) for scope in scopes}
    return expected


def _granted(rendered: Rendered) -> set[tuple[str, str, str, str]]:
    """What the operator's ServiceAccount may do, from the rendered roles and bindings."""
    roles = {
        (role["kind"], role["metadata"].get("namespace"), role["metadata"]["name"]): role
        for role in rendered.of_kind("ClusterRole") + rendered.of_kind("Role")
    }
    account = rendered.one("ServiceAccount")["metadata"]["name"]
    granted: set[tuple[str, str, str, str]] = set()
    for binding in rendered.of_kind("ClusterRoleBinding") + rendered.of_kind("RoleBinding"):
        subjects = binding["subjects"]
        assert subjects == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
        namespace = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        scope = namespace or CLUSTER
        for rule in role["rules"]:
            assert "resourceNames" not in rule
            assert "nonResourceURLs" not in rule
            granted |= {
                (scope, group, resource, verb)
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
            }
    return granted


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_rbac_grants_exactly_what_the_operator_uses(combination: str) -> None:
    values = COMBINATIONS[combination]
    granted = _granted(render(values))
    expected = _expected(values)
    assert granted - expected == set(), "granted but never used"
    assert expected - granted == set(), "used but not granted"


def test_the_operator_never_reads_secrets_nor_uses_wildcards() -> None:
    for _, values in COMBINATIONS.items():
        for scope, group, resource, verb in _granted(render(values)):
            assert resource != "secrets", (scope, group, verb)
            assert "*" not in (group, resource, verb)
