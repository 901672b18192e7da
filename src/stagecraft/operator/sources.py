"""Where a run's migration files come from: a ConfigMap, an explicit image, or the image of the
referenced Deployment's container. What is found becomes part of the target hash, so a new image
or edited ConfigMap files make a new target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cluster import Cluster
from .manifests import MigrationSource, config_map_digest
from .models import DatabaseMigrationSpec, DeploymentReference


@dataclass(frozen=True)
class SourceLookup:
    source: MigrationSource | None
    problem: str = ""


def _deployment_image(deployment: dict[str, Any], wanted: list[str]) -> str | None:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    for container in containers or []:
        if not wanted or container.get("name") == wanted[0]:
            image = container.get("image")
            return str(image) if image else None
    return None


def _config_map_source(cluster: Cluster, namespace: str, name: str) -> SourceLookup:
    config_map = cluster.config_map(namespace, name)
    if config_map is None:
        return SourceLookup(None, f"ConfigMap {namespace}/{name} not found")
    digest = config_map_digest(dict(config_map.get("data") or {}))
    return SourceLookup(MigrationSource(config_map=name, config_map_digest=digest))


def _deployment_source(
    namespace: str, reference: DeploymentReference, deployment: dict[str, Any] | None
) -> SourceLookup:
    if deployment is None:
        return SourceLookup(None, f"Deployment {namespace}/{reference.name} not found")
    image = _deployment_image(deployment, reference.containers)
    if image is None:
        wanted = reference.containers[0] if reference.containers else "any"
        return SourceLookup(
            None, f"Deployment {namespace}/{reference.name} has no container {wanted!r}"
        )
    return SourceLookup(MigrationSource(image=image))


def resolve_source(
    cluster: Cluster,
    namespace: str,
    spec: DatabaseMigrationSpec,
    deployment: dict[str, Any] | None = None,
) -> SourceLookup:
    """Where this run's files come from: the ConfigMap, the explicit image or the Deployment's.

    `deployment` is spec.deployment as the caller read it (None: not found). The caller reads it
    once, so the image migrated and the template the rollout gate looks at are the same one.
    """
    if spec.config_map is not None:
        return _config_map_source(cluster, namespace, spec.config_map.name)
    if spec.image is not None:
        return SourceLookup(MigrationSource(image=spec.image))
    if spec.deployment is not None:
        return _deployment_source(namespace, spec.deployment, deployment)
    return SourceLookup(None, "no source of migration files")  # the model rules this out
