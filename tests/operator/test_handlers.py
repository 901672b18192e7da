"""The pure helpers behind the kopf registrations."""

from __future__ import annotations

from stagecraft.operator.handlers import (
    finished_or_gone,
    owning_resource,
    sources_of,
    stopped_gating,
)


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


def test_a_job_is_followed_once_finished_or_deleted() -> None:
    running = {"status": {"active": 1}}
    complete = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert not finished_or_gone(running, type="ADDED")
    assert not finished_or_gone(running, type="MODIFIED")
    assert not finished_or_gone(running, type=None)  # found when the operator starts
    assert finished_or_gone(running, type="DELETED")
    assert finished_or_gone(complete, type="MODIFIED")
    assert finished_or_gone(complete, type=None)


def test_a_resource_stops_gating_when_it_leaves_pre_deploy_or_its_deployment() -> None:
    def spec(strategy: str, deployment: str = "shop-api") -> dict[str, object]:
        return {"spec": {"migrations": {"strategy": strategy}, "deployment": {"name": deployment}}}

    assert stopped_gating(old=spec("pre_deploy"), new=spec("post_deploy"))
    assert stopped_gating(old=spec("pre_deploy"), new=spec("manual"))
    assert stopped_gating(old=spec("pre_deploy"), new=spec("pre_deploy", "worker"))
    assert not stopped_gating(old=spec("pre_deploy"), new=spec("pre_deploy"))
    assert not stopped_gating(old=spec("post_deploy"), new=spec("pre_deploy"))
    assert not stopped_gating(old=None, new=spec("pre_deploy"))
