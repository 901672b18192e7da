"""The pure helpers behind the kopf registrations."""

from __future__ import annotations

from stagecraft.operator.handlers import owning_resource, sources_of


def test_sources_are_the_deployment_and_the_config_map() -> None:
    spec = {"deployment": {"name": "shop-api"}, "configMap": {"name": "shop-migrations"}}
    assert sources_of(spec) == [("Deployment", "shop-api"), ("ConfigMap", "shop-migrations")]


def test_an_explicit_image_is_no_object_to_follow() -> None:
    assert sources_of({"image": "registry.example/shop-migrations:7"}) == []


def test_owner_is_found_only_among_database_migrations() -> None:
    job = {
        "metadata": {
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly"},
                {
                    "apiVersion": "stagecraft.dev/v1alpha1",
                    "kind": "DatabaseMigration",
                    "name": "db",
                },
            ]
        }
    }
    assert owning_resource(job) == "db"
    assert owning_resource({"metadata": {}}) is None
