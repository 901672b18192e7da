"""`stagecraft render`: DatabaseMigration manifests from stagecraft.yml that the cluster accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stagecraft.operator.crd import custom_resource_definition
from stagecraft.operator.models import DatabaseMigrationSpec
from stagecraft.operator.validation import validate_spec
from tests.cli.test_cli import stagecraft
from tests.operator.schema_check import schema_problems

CONFIG = """\
databases:
  shop:
    connection_env: SHOP_DATABASE_URL
    migrations: {engine: raw, path: /app/migrations/shop, strategy: pre_deploy}
  analytics:
    connection_env: ANALYTICS_URL
    migrations:
      engine: raw
      path: /app/migrations/analytics
      strategy: manual
      options: {table: schema_history}
"""


def _config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "stagecraft.yml"
    path.write_text(text, encoding="utf-8")
    return path


def _documents(stdout: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(stdout) if document is not None]


def _assert_accepted_by_the_cluster(manifest: dict[str, Any]) -> None:
    """What the API server (CRD schema) and the admission webhook would check."""
    schema = custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    body = {key: value for key, value in manifest.items() if key != "metadata"}
    assert schema_problems(body, schema) == []
    DatabaseMigrationSpec.model_validate(manifest["spec"])
    assert validate_spec(manifest["spec"]).valid


def test_every_database_becomes_a_resource_the_cluster_accepts(tmp_path: Path) -> None:
    result = stagecraft(
        "render", "--config", str(_config(tmp_path)), "--namespace", "production",
        "--secret", "shop-db:url", "--secret", "analytics=analytics-db:dsn",
        "--deployment", "shop-api", "--container", "api",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifests = _documents(result.stdout)
    assert [m["metadata"] for m in manifests] == [
        {"name": "shop", "namespace": "production"},
        {"name": "analytics", "namespace": "production"},
    ]
    for manifest in manifests:
        assert (manifest["apiVersion"], manifest["kind"]) == (
            "stagecraft.dev/v1alpha1",
            "DatabaseMigration",
        )
        assert manifest["spec"]["deployment"] == {"name": "shop-api", "containers": ["api"]}
        _assert_accepted_by_the_cluster(manifest)
    shop, analytics = (m["spec"] for m in manifests)
    assert shop["connection"] == {
        "env": "SHOP_DATABASE_URL",
        "secretKeyRef": {"name": "shop-db", "key": "url"},
    }
    assert analytics["connection"]["secretKeyRef"] == {"name": "analytics-db", "key": "dsn"}
    assert analytics["migrations"] == {
        "engine": "raw",
        "path": "/app/migrations/analytics",
        "strategy": "manual",
        "options": {"table": "schema_history"},
    }


def test_chosen_databases_only_and_no_namespace_unless_asked(tmp_path: Path) -> None:
    result = stagecraft(
        "render", "--config", str(_config(tmp_path)), "--database", "analytics",
        "--secret", "db:url", "--image", "registry.example/shop-migrations:7",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (manifest,) = _documents(result.stdout)
    assert manifest["metadata"] == {"name": "analytics"}
    assert manifest["spec"]["image"] == "registry.example/shop-migrations:7"
    _assert_accepted_by_the_cluster(manifest)


def test_a_config_map_can_hold_the_files(tmp_path: Path) -> None:
    result = stagecraft(
        "render", "-c", str(_config(tmp_path)), "-d", "shop", "--secret", "db:url",
        "--config-map", "shop-migrations",
    )  # fmt: skip
    (manifest,) = _documents(result.stdout)
    assert manifest["spec"]["configMap"] == {"name": "shop-migrations"}
    _assert_accepted_by_the_cluster(manifest)


def test_exactly_one_source_of_files_is_required(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    none = stagecraft("render", "-c", config, "--secret", "db:url")
    both = stagecraft(
        "render", "-c", config, "--secret", "db:url", "--image", "a", "--deployment", "b"
    )
    assert (none.returncode, both.returncode) == (2, 2)
    assert "exactly one of --deployment (its image), --image or --config-map; got 0" in none.stderr
    assert "got 2: --deployment, --image" in both.stderr
    assert none.stdout == both.stdout == ""


def test_an_unknown_database_names_the_file_and_the_configured_ones(tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = stagecraft(
        "render", "-c", str(config), "-d", "billing", "--secret", "db:url", "--image", "a"
    )
    assert result.returncode == 2
    assert f"{config}: databases: no database named 'billing'; configured: shop, analytics" in (
        result.stderr
    )


def test_every_database_needs_a_secret(tmp_path: Path) -> None:
    result = stagecraft(
        "render", "-c", str(_config(tmp_path)), "--secret", "shop=shop-db:url", "--image", "a"
    )
    assert result.returncode == 2
    assert "no Secret for databases.analytics: add --secret NAME:KEY" in result.stderr


def test_bad_flag_values_name_the_flag(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    malformed = stagecraft("render", "-c", config, "--secret", "db", "--image", "a")
    invalid = stagecraft("render", "-c", config, "--secret", "Shop_DB:url", "--image", "a")
    assert "--secret 'db' is not NAME:KEY or DATABASE=NAME:KEY" in malformed.stderr
    assert "--secret: name: String should match pattern" in invalid.stderr
    assert (malformed.returncode, invalid.returncode) == (2, 2)


def test_a_config_error_names_the_file_line_and_field(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "databases:\n  shop:\n    connection_env: URL\n    migrations: {engine: nosuch, path: m}\n",
    )
    result = stagecraft("render", "-c", str(config), "--secret", "db:url", "--image", "a")
    assert result.returncode == 2
    assert f"{config}:4: databases.shop.migrations.engine" in result.stderr


def test_an_entry_name_kubernetes_cannot_take_is_named(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "databases:\n  Shop_DB:\n    connection_env: URL\n    migrations: {engine: raw, path: m}\n",
    )
    result = stagecraft("render", "-c", str(config), "--secret", "db:url", "--image", "a")
    assert result.returncode == 2
    assert (
        f"{config}: databases.Shop_DB: 'Shop_DB' cannot name a DatabaseMigration" in result.stderr
    )
