"""The chart rendered by the real Helm engine (helm-python-sdk embeds Helm v4's Go code).

Every documented combination of values lives in COMBINATIONS, so that each test walks all of
them; docs/helm.md shows the same combinations as `helm install` commands.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "stagecraft"
RELEASE = "stagecraft"
NAMESPACE = "stagecraft-system"
SERVED_NAMESPACES = ["shop", "billing"]

COMBINATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "cert-manager": {"webhooks": {"certManager": {"enabled": True}}},
    "cert-manager-cluster-issuer": {
        "webhooks": {
            "certManager": {
                "enabled": True,
                "issuerRef": {"kind": "ClusterIssuer", "name": "internal-ca"},
            }
        }
    },
    "namespaced": {"watchNamespaces": SERVED_NAMESPACES},
    "peering": {"replicaCount": 2},
    "namespaced-peering": {"replicaCount": 3, "watchNamespaces": SERVED_NAMESPACES},
    "namespace-selector": {"namespaceSelector": "stagecraft.dev/enabled=true"},
    "namespaced-with-selector": {
        "watchNamespaces": SERVED_NAMESPACES,
        "namespaceSelector": "team in (shop,billing)",
    },
    "namespace-label-selector": {
        "namespaceLabelSelector": {
            "matchLabels": {"team": "shop"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    },
    "service-monitor": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}
    },
    "metrics-off": {"metrics": {"enabled": False}},
    "webhooks-off": {"webhooks": {"validate": {"enabled": False}, "gate": {"enabled": False}}},
    "gate-ignore-no-validation": {
        "webhooks": {"validate": {"enabled": False}, "gate": {"failurePolicy": "Ignore"}}
    },
    "digest-and-runner-image": {
        "image": {"digest": "sha256:" + "0" * 64, "pullPolicy": "Always"},
        "runnerImage": "registry.example.com/stagecraft:0.1.0",
        "networkPolicy": {"enabled": False},
    },
    "argocd-notes": {"notes": {"argocdHealthCheck": True}},
}


@dataclass(frozen=True)
class Rendered:
    documents: list[dict[str, Any]]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [document for document in self.documents if document["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [
            document
            for document in self.of_kind(kind)
            if name is None or document["metadata"]["name"] == name
        ]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def environment(self) -> dict[str, str]:
        container = self.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
        return {variable["name"]: variable.get("value", "") for variable in container["env"]}


@functools.cache
def _chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


def render_templates(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text, as `helm install` would render it (no cluster)."""
    return _chart().render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(values: dict[str, Any] | None = None) -> Rendered:
    templates = render_templates(values)
    documents: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(templates.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        documents += [document for document in yaml.safe_load_all(text) if document]
    return Rendered(documents=documents, notes=notes)


def combinations() -> Iterator[tuple[str, Rendered]]:
    for name, values in COMBINATIONS.items():
        yield name, render(values)


def chart_crds() -> list[dict[str, Any]]:
    """The CRDs Helm installs from the chart's crds/ folder."""
    documents: list[dict[str, Any]] = []
    for path in sorted((CHART / "crds").glob("*.yaml")):
        documents += [document for document in yaml.safe_load_all(path.read_text()) if document]
    return documents
