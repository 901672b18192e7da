"""Schemas of the non-core kinds the chart renders, which kubernetes-validate does not know.

cert-manager's Certificate and Issuer and prometheus-operator's ServiceMonitor are cut down to
the fields the chart writes, with their required fields and types as the upstream CRDs declare
them; the kopf peering objects are checked against the chart's own crds/kopf-peering.yaml.
"""

from __future__ import annotations

from typing import Any

_METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}


def _kind(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
    }


_ISSUER_REF: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "kind": {"type": "string"},
        "group": {"type": "string"},
    },
}

# https://github.com/cert-manager/cert-manager/blob/master/deploy/crds/cert-manager.io_certificates.yaml
CERTIFICATE = _kind(
    "cert-manager.io/v1",
    "Certificate",
    {
        "type": "object",
        "required": ["issuerRef", "secretName"],
        "additionalProperties": False,
        "properties": {
            "secretName": {"type": "string"},
            "issuerRef": _ISSUER_REF,
            "commonName": {"type": "string"},
            "dnsNames": {"type": "array", "items": {"type": "string"}},
            "duration": {"type": "string"},
            "renewBefore": {"type": "string"},
            "privateKey": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                    "size": {"type": "integer"},
                    "rotationPolicy": {"enum": ["Never", "Always"]},
                },
            },
        },
    },
)

# https://github.com/cert-manager/cert-manager/blob/master/deploy/crds/cert-manager.io_issuers.yaml
ISSUER = _kind(
    "cert-manager.io/v1",
    "Issuer",
    {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {"selfSigned": {"type": "object"}},
    },
)

# https://github.com/prometheus-operator/prometheus-operator/blob/main/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
SERVICE_MONITOR = _kind(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    {
        "type": "object",
        "required": ["selector"],
        "additionalProperties": False,
        "properties": {
            "selector": {
                "type": "object",
                "properties": {
                    "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}
                },
            },
            "namespaceSelector": {
                "type": "object",
                "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
            },
            "endpoints": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string"},
                        "interval": {
                            "type": "string",
                            "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                        },
                        "scrapeTimeout": {
                            "type": "string",
                            "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                        },
                    },
                },
            },
        },
    },
)

SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("cert-manager.io/v1", "Certificate"): CERTIFICATE,
    ("cert-manager.io/v1", "Issuer"): ISSUER,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
}
