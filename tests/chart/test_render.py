"""The chart lints and renders for every documented combination, and every manifest it renders
is valid for the Kubernetes versions it supports (strict: unknown fields are errors)."""

from __future__ import annotations

from typing import Any

import helm_python
import jsonschema  # type: ignore[import-untyped]  # no stubs; kubernetes-validate brings it
import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest

from .custom_schemas import SCHEMAS
from .rendering import (
    CHART,
    COMBINATIONS,
    NAMESPACE,
    Rendered,
    chart_crds,
    render,
)

# The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest schemas
# kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.26.0", kubernetes_validate.latest_version())
LINT_ERROR = 3
LINT_WARNING = 2


def _peering_schema(kind: str) -> dict[str, Any]:
    for crd in chart_crds():
        if crd["spec"]["names"]["kind"] == kind:
            version = crd["spec"]["versions"][0]
            schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"crds/ has no CRD of kind {kind}")


def _validate(document: dict[str, Any]) -> None:
    key = (document["apiVersion"], document["kind"])
    if key in SCHEMAS:
        jsonschema.validate(document, SCHEMAS[key])
        return
    if document["apiVersion"] == "kopf.dev/v1":
        jsonschema.validate(document, _peering_schema(document["kind"]))
        assert document["metadata"]["name"]
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_lint_finds_no_warnings_or_errors(combination: str) -> None:
    report = helm_python.lint(
        CHART, COMBINATIONS[combination], strict=True, namespace=NAMESPACE, kube_version="v1.26.0"
    )
    problems = [m for m in report["messages"] if m["severity"] in (LINT_WARNING, LINT_ERROR)]
    assert problems == [], problems
    assert report["errors"] == []


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_manifest_is_valid_kubernetes(combination: str) -> None:
    rendered = render(COMBINATIONS[combination])
    assert rendered.documents
    for document in rendered.documents:
        try:
            _validate(document)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as error:
            kind, name = document["kind"], document["metadata"]["name"]
            where = "/".join(str(part) for part in error.absolute_path)
            raise AssertionError(
                f"{combination}: {kind} {name}: {error.message} at {where}"
            ) from None


def test_the_crds_helm_installs_are_valid_kubernetes() -> None:
    for document in chart_crds():
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(document, version, strict=True)


def test_namespaced_objects_go_to_the_release_namespace_or_a_served_one() -> None:
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ClusterKopfPeering",
    }
    for combination, values in COMBINATIONS.items():
        allowed = {NAMESPACE, *values.get("watchNamespaces", [])}
        for document in render(values).documents:
            namespace = document["metadata"].get("namespace")
            if document["kind"] in cluster_scoped:
                assert namespace is None, (combination, document["kind"])
            else:
                assert namespace in allowed, (combination, document["kind"], namespace)


def _kinds(rendered: Rendered) -> set[str]:
    return {document["kind"] for document in rendered.documents}


def test_optional_parts_appear_only_when_enabled() -> None:
    default = _kinds(render())
    assert {"Deployment", "ServiceAccount", "ClusterRole", "Secret", "Service"} <= default
    assert {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} <= default
    assert not default & {"Certificate", "Issuer", "ServiceMonitor", "ClusterKopfPeering"}

    cert_manager = render(COMBINATIONS["cert-manager"])
    assert {"Certificate", "Issuer"} <= _kinds(cert_manager)
    assert "Secret" not in _kinds(cert_manager)  # cert-manager writes it
    assert "Issuer" not in _kinds(render(COMBINATIONS["cert-manager-cluster-issuer"]))

    assert "ServiceMonitor" in _kinds(render(COMBINATIONS["service-monitor"]))
    without_webhooks = _kinds(render(COMBINATIONS["webhooks-off"]))
    assert not without_webhooks & {
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "Secret",
    }
    assert "NetworkPolicy" not in _kinds(render(COMBINATIONS["digest-and-runner-image"]))


def test_peering_objects_exist_exactly_when_several_replicas_run() -> None:
    assert render().of_kind("ClusterKopfPeering") == []
    assert "STAGECRAFT_PEERING" not in render().environment()

    cluster = render(COMBINATIONS["peering"])
    peering = cluster.one("ClusterKopfPeering")
    assert cluster.environment()["STAGECRAFT_PEERING"] == peering["metadata"]["name"]

    namespaced = render(COMBINATIONS["namespaced-peering"])
    assert namespaced.of_kind("ClusterKopfPeering") == []
    peerings = namespaced.of_kind("KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == sorted(
        COMBINATIONS["namespaced-peering"]["watchNamespaces"]
    )
    assert {p["metadata"]["name"] for p in peerings} == {
        namespaced.environment()["STAGECRAFT_PEERING"]
    }


def test_the_network_policy_admits_exactly_the_ports_the_operator_listens_on() -> None:
    for combination, values in COMBINATIONS.items():
        rendered = render(values)
        policies = rendered.of_kind("NetworkPolicy")
        if values.get("networkPolicy", {}).get("enabled", True) is False:
            assert policies == [], combination
            continue
        (policy,) = policies
        container = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
        admitted = {port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}
        assert admitted == {port["name"] for port in container["ports"]}, combination
        assert (
            policy["spec"]["podSelector"]["matchLabels"]
            == (rendered.one("Deployment")["spec"]["selector"]["matchLabels"])
        )
