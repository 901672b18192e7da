"""values.schema.json covers every value in values.yaml, and Helm refuses wrong values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import helm_python
import pytest
import yaml

from .rendering import CHART, render

# Values whose content is Kubernetes' own (resources, affinity, security contexts, ...): the
# schema types them, and Kubernetes validates what is inside.
PASS_THROUGH = {
    "namespaceLabelSelector.matchLabels",
    "resources.requests",
    "resources.limits",
    "podSecurityContext",
    "containerSecurityContext",
    "affinity",
    "podAnnotations",
    "podLabels",
    "nodeSelector",
    "serviceAccount.annotations",
    "metrics.service.annotations",
    "metrics.serviceMonitor.labels",
    "webhooks.certManager.issuerRef",
}


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def value_paths(values: Any, prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict) and value and path not in PASS_THROUGH:
            yield from value_paths(value, f"{path}.")


def _schema_paths(schema: dict[str, Any], node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, child in _resolve(schema, node).get("properties", {}).items():
        path = f"{prefix}{key}"
        yield path
        resolved = _resolve(schema, child)
        if resolved.get("type") == "object" and path not in PASS_THROUGH:
            yield from _schema_paths(schema, resolved, f"{path}.")


def default_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def test_the_schema_describes_exactly_the_values_in_values_yaml() -> None:
    schema = _schema()
    assert set(value_paths(default_values())) == set(_schema_paths(schema, schema))


def test_every_object_in_the_schema_refuses_unknown_keys() -> None:
    schema = _schema()
    for path in ["", *_schema_paths(schema, schema)]:
        node = schema
        for key in filter(None, path.split(".")):
            node = _resolve(schema, _resolve(schema, node)["properties"][key])
        node = _resolve(schema, node)
        if node.get("type") == "object" and path not in PASS_THROUGH:
            assert node.get("additionalProperties") is False, path or "the top level"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"watchNamespaces": "shop"}, "/watchNamespaces"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
        ({"webhooks": {"gate": {"failurePolicy": "Sometimes"}}}, "/webhooks/gate/failurePolicy"),
        ({"webhooks": {"timeoutSeconds": 60}}, "/webhooks/timeoutSeconds"),
        ({"webhooks": {"certManager": {"enabled": "yes"}}}, "/webhooks/certManager/enabled"),
        ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "/metrics/serviceMonitor"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"webhook": {"certManager": {"enabled": True}}}, "webhook"),  # a misspelt key
    ],
)
def test_helm_refuses_a_wrong_value(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=complaint):
        render(values)
