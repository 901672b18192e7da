"""DatabaseMigration manifests from stagecraft.yml, for `stagecraft render --config`.

The `migrations` block is carried over as the config's own model, so the file and the cluster
stay one source of truth; what the file cannot know (the Secret holding the URL, where the files
come from) is passed in. The result passes the same validation as the webhook.
"""

from __future__ import annotations

from typing import Any

from ..config import DatabaseConfig
from .models import (
    API_VERSION,
    KIND,
    ConfigMapSource,
    ConnectionSpec,
    DatabaseMigrationSpec,
    DeploymentReference,
    SecretKeyRef,
)


def database_migration_manifest(
    name: str,
    namespace: str | None,
    database: DatabaseConfig,
    *,
    secret: SecretKeyRef,
    deployment: DeploymentReference | None = None,
    image: str | None = None,
    config_map: str | None = None,
) -> dict[str, Any]:
    """The resource for one `databases.<name>` entry; raises pydantic's ValidationError when the
    arguments name no source of files, or two. Without a namespace, `kubectl apply -n` decides."""
    spec = DatabaseMigrationSpec(
        migrations=database.migrations,
        connection=ConnectionSpec(env=database.connection_env, secret_key_ref=secret),
        deployment=deployment,
        image=image,
        config_map=ConfigMapSource(name=config_map) if config_map else None,
    )
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name} | ({"namespace": namespace} if namespace else {}),
        "spec": spec.model_dump(
            by_alias=True, exclude_none=True, exclude_defaults=True, mode="json"
        )
        | {"migrations": database.migrations.model_dump(mode="json")},
    }
