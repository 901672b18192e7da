"""stagecraft.yml entries rendered as DatabaseMigration resources that the webhook admits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stagecraft.config import parse_config
from stagecraft.operator.models import DeploymentReference, SecretKeyRef
from stagecraft.operator.render import database_migration_manifest
from stagecraft.operator.validation import validate_spec

CONFIG = """
databases:
  shop:
    connection_env: SHOP_DATABASE_URL
    migrations:
      engine: raw
      path: /app/migrations
      strategy: post_deploy
      options: {table: schema_history}
"""


def test_rendered_resource_carries_the_config_entry() -> None:
    database = parse_config(CONFIG).databases["shop"]
    manifest = database_migration_manifest(
        "shop",
        "production",
        database,
        secret=SecretKeyRef(name="shop-db", key="url"),
        deployment=DeploymentReference(name="shop-api", containers=["api"]),
    )
    assert manifest["apiVersion"] == "stagecraft.dev/v1alpha1"
    assert manifest["metadata"] == {"name": "shop", "namespace": "production"}
    spec = manifest["spec"]
    assert spec["migrations"] == {
        "engine": "raw",
        "path": "/app/migrations",
        "strategy": "post_deploy",
        "options": {"table": "schema_history"},
    }
    assert spec["connection"] == {
        "env": "SHOP_DATABASE_URL",
        "secretKeyRef": {"name": "shop-db", "key": "url"},
    }
    assert spec["deployment"] == {"name": "shop-api", "containers": ["api"]}


def test_rendered_resource_passes_the_webhook_checks() -> None:
    database = parse_config(CONFIG).databases["shop"]
    manifest = database_migration_manifest(
        "shop", "production", database, secret=SecretKeyRef(name="db", key="url"), image="app:1"
    )
    assert validate_spec(manifest["spec"]).valid


def test_a_source_of_files_is_required() -> None:
    database = parse_config(CONFIG).databases["shop"]
    with pytest.raises(ValidationError, match="where the migration files come from"):
        database_migration_manifest(
            "shop", "production", database, secret=SecretKeyRef(name="db", key="url")
        )
