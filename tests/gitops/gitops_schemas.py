"""JSON schemas for the Argo CD and Flux kinds of examples/gitops, which kubernetes-validate does
not know.

The published CRDs are too large to vendor (Argo CD's Application CRD alone is 400 kB), so these
are cut down to the fields the examples use, with the required fields, types, enums and patterns
the upstream CRDs declare for them. Every object level forbids fields it does not name, as the API
server's strict field validation (kubectl's default) does: a misspelt field fails here instead of
being dropped silently. Sources:
  Application: github.com/argoproj/argo-cd,
    manifests/crds/application-crd.yaml (argoproj.io/v1alpha1)
  Kustomization: github.com/fluxcd/kustomize-controller,
    config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml (v1)
  GitRepository: github.com/fluxcd/source-controller,
    config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml (v1)
"""

from __future__ import annotations

from typing import Any

# Flux's duration fields (metav1.Duration with its kubebuilder pattern).
_FLUX_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"}
_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": _STRING}
_STRING_MAP = {"type": "object", "additionalProperties": _STRING}


def _object(
    properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
        **extra,
    }


_METADATA = _object(
    {
        "name": {"type": "string", "minLength": 1},
        "namespace": _STRING,
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": _STRINGS,
    },
    ("name",),
)


def _kind(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _object(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


APPLICATION = _kind(
    "argoproj.io/v1alpha1",
    "Application",
    _object(
        {
            "project": _STRING,
            "source": _object(
                {"repoURL": _STRING, "targetRevision": _STRING, "path": _STRING},
                ("repoURL",),
            ),
            "destination": _object({"server": _STRING, "name": _STRING, "namespace": _STRING}),
            "ignoreDifferences": {
                "type": "array",
                "items": _object(
                    {
                        "group": _STRING,
                        "kind": _STRING,
                        "name": _STRING,
                        "namespace": _STRING,
                        "jsonPointers": _STRINGS,
                        "jqPathExpressions": _STRINGS,
                        "managedFieldsManagers": _STRINGS,
                    },
                    ("kind",),
                ),
            },
            "syncPolicy": _object(
                {
                    "automated": _object(
                        {
                            "prune": {"type": "boolean"},
                            "selfHeal": {"type": "boolean"},
                            "allowEmpty": {"type": "boolean"},
                        }
                    ),
                    "syncOptions": _STRINGS,
                }
            ),
        },
        ("destination", "project"),
    ),
)

_NAMESPACED_KIND_REFERENCE = _object(
    {"apiVersion": _STRING, "kind": _STRING, "name": _STRING, "namespace": _STRING},
    ("kind", "name"),
)

KUSTOMIZATION = _kind(
    "kustomize.toolkit.fluxcd.io/v1",
    "Kustomization",
    _object(
        {
            "dependsOn": {
                "type": "array",
                "items": _object({"name": _STRING, "namespace": _STRING}, ("name",)),
            },
            "interval": _FLUX_DURATION,
            "retryInterval": _FLUX_DURATION,
            "timeout": _FLUX_DURATION,
            "sourceRef": _object(
                {
                    "apiVersion": _STRING,
                    "kind": {"enum": ["OCIRepository", "GitRepository", "Bucket"]},
                    "name": _STRING,
                    "namespace": _STRING,
                },
                ("kind", "name"),
            ),
            "path": _STRING,
            "prune": {"type": "boolean"},
            "wait": {"type": "boolean"},
            "targetNamespace": {"type": "string", "minLength": 1, "maxLength": 63},
            "healthChecks": {"type": "array", "items": _NAMESPACED_KIND_REFERENCE},
            "healthCheckExprs": {
                "type": "array",
                "items": _object(
                    {
                        "apiVersion": _STRING,
                        "kind": _STRING,
                        "current": _STRING,
                        "failed": _STRING,
                        "inProgress": _STRING,
                    },
                    ("apiVersion", "current", "kind"),
                ),
            },
        },
        ("interval", "prune", "sourceRef"),
    ),
)

GIT_REPOSITORY = _kind(
    "source.toolkit.fluxcd.io/v1",
    "GitRepository",
    _object(
        {
            "interval": _FLUX_DURATION,
            "timeout": _FLUX_DURATION,
            "url": {"type": "string", "pattern": r"^(http|https|ssh)://.*$"},
            "ref": _object(
                {
                    "branch": _STRING,
                    "tag": _STRING,
                    "semver": _STRING,
                    "name": _STRING,
                    "commit": _STRING,
                }
            ),
            "secretRef": _object({"name": _STRING}, ("name",)),
        },
        ("interval", "url"),
    ),
)

# Kustomize's own kustomization.yaml (kustomize.config.k8s.io/v1beta1), the fields used here.
KUSTOMIZE_FILE = _object(
    {
        "apiVersion": {"const": "kustomize.config.k8s.io/v1beta1"},
        "kind": {"const": "Kustomization"},
        "resources": {"type": "array", "items": _STRING, "minItems": 1},
    },
    ("resources",),
)

SCHEMAS = {
    ("argoproj.io/v1alpha1", "Application"): APPLICATION,
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): KUSTOMIZATION,
    ("source.toolkit.fluxcd.io/v1", "GitRepository"): GIT_REPOSITORY,
}
