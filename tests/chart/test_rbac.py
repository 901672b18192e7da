"""The chart's RBAC grants exactly what the operator uses: every API call in kube.py, what kopf
does for the handlers the operator registers, and kopf's own bookkeeping; nothing else.

The needs are derived from the code: KUBE_API_PERMISSIONS maps each KubeApi method to the
permissions its client calls need (a test fails when kube.py gains a method or a client call
missing here), and kopf's needs come from the handlers that `build_registry` registers.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any, cast

import pytest

from stagecraft.operator import kube
from stagecraft.operator.main import build_registry, register_namespace_scope
from stagecraft.operator.reconcile import Reconciler
from stagecraft.operator.scoping import NamespaceScope, parse_selector

from .rendering import COMBINATIONS, NAMESPACE, Rendered, render

Permission = tuple[str, str, str]  # apiGroup, resource, verb
CLUSTER = "*cluster*"  # the scope of a grant through a ClusterRoleBinding

GROUP = "stagecraft.dev"
MIGRATIONS = "databasemigrations"

# What each client call of kube.py needs (the kubernetes client's method -> permission).
CLIENT_CALL_PERMISSIONS: dict[str, Permission] = {
    "get_namespaced_custom_object": (GROUP, MIGRATIONS, "get"),
    "list_namespaced_custom_object": (GROUP, MIGRATIONS, "list"),
    "patch_namespaced_custom_object": (GROUP, MIGRATIONS, "patch"),
    "patch_namespaced_custom_object_status": (GROUP, f"{MIGRATIONS}/status", "patch"),
    "read_namespaced_deployment": ("apps", "deployments", "get"),
    "patch_namespaced_deployment": ("apps", "deployments", "patch"),
    "read_namespaced_config_map": ("", "configmaps", "get"),
    "read_namespaced_job": ("batch", "jobs", "get"),
    "create_namespaced_job": ("batch", "jobs", "create"),
    "list_namespaced_pod": ("", "pods", "list"),
    "create_namespaced_event": ("", "events", "create"),
}

# Each KubeApi method and what it needs. create_job needs one more permission than its call:
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

# Resources that are not in a namespace: granted by the ClusterRole in every mode.
CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces", "clusterkopfpeerings"}


def _kube_api_methods() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(inspect.getsource(kube.KubeApi))
    (cls,) = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    return {
        node.name: node
        for node in cls.body
        if isinstance(node, ast.FunctionDef)
        and not node.name.startswith("_")
        and not any(isinstance(d, ast.Name) and d.id == "classmethod" for d in node.decorator_list)
    }


def _client_calls(method: ast.FunctionDef) -> set[str]:
    """The client methods a KubeApi method reaches: `self._<api>.<call>`, called or passed."""
    return {
        node.attr
        for node in ast.walk(method)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
        and node.value.attr.startswith("_")
    }


def test_every_kube_api_method_is_in_the_permission_table() -> None:
    methods = set(_kube_api_methods())
    missing = methods - set(KUBE_API_PERMISSIONS)
    assert not missing, (
        f"KubeApi gained {sorted(missing)}: add the permissions they need to "
        "KUBE_API_PERMISSIONS here and to charts/stagecraft/templates/rbac.yaml"
    )
    assert set(KUBE_API_PERMISSIONS) <= methods, "the table names methods KubeApi no longer has"


@pytest.mark.parametrize("method", sorted(KUBE_API_PERMISSIONS))
def test_the_table_matches_the_client_calls_of(method: str) -> None:
    calls = _client_calls(_kube_api_methods()[method])
    unknown = calls - set(CLIENT_CALL_PERMISSIONS)
    assert not unknown, f"KubeApi.{method} calls {sorted(unknown)}: add them to the tables"
    from_calls = {CLIENT_CALL_PERMISSIONS[call] for call in calls}
    extra = KUBE_API_PERMISSIONS[method] - from_calls
    assert extra <= set(EXTRA_PERMISSION_REASONS), (method, extra)
    assert from_calls <= KUBE_API_PERMISSIONS[method]


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
