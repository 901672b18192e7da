"""The DatabaseMigration models read what users write (camelCase) and refuse mistakes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stagecraft.config import Strategy
from stagecraft.operator.models import DatabaseMigrationSpec, DatabaseMigrationStatus


def _spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "migrations": {"engine": "raw", "path": "/app/migrations"},
        "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        "deployment": {"name": "shop-api", "containers": ["api"]},
    }
    spec.update(overrides)
    return spec


def test_minimal_spec_takes_the_stagecraft_yml_defaults() -> None:
    spec = DatabaseMigrationSpec.model_validate(_spec())
    assert spec.migrations.strategy is Strategy.PRE_DEPLOY
    assert spec.migrations.options == {}
    assert spec.connection.env == "DATABASE_URL"
    assert spec.connection.secret_key_ref.key == "url"
    assert spec.job.backoff_limit == 2


def test_job_settings_are_read_from_camel_case() -> None:
    spec = DatabaseMigrationSpec.model_validate(
        _spec(
            job={
                "serviceAccountName": "migrator",
                "ttlSecondsAfterFinished": 600,
                "imagePullSecrets": [{"name": "registry"}],
                "podLabels": {"team": "shop"},
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            }
        )
    )
    assert spec.job.service_account_name == "migrator"
    assert spec.job.ttl_seconds_after_finished == 600
    assert spec.job.image_pull_secrets[0].name == "registry"
    assert spec.job.pod_labels == {"team": "shop"}
    assert spec.job.tolerations == [{"key": "dedicated", "operator": "Exists"}]


def test_unknown_spec_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        DatabaseMigrationSpec.model_validate(_spec(colour="blue"))


def test_environment_variable_name_must_be_one() -> None:
    bad = _spec(connection={"env": "1URL", "secretKeyRef": {"name": "db", "key": "url"}})
    with pytest.raises(ValidationError, match="pattern"):
        DatabaseMigrationSpec.model_validate(bad)


def test_image_and_config_map_together_are_refused() -> None:
    with pytest.raises(ValidationError, match="either image or configMap"):
        DatabaseMigrationSpec.model_validate(_spec(image="app:1", configMap={"name": "files"}))


def test_some_source_of_files_is_required() -> None:
    spec = _spec()
    del spec["deployment"]
    with pytest.raises(ValidationError, match="where the migration files come from"):
        DatabaseMigrationSpec.model_validate(spec)


def test_explicit_image_without_deployment_is_enough() -> None:
    spec = _spec(image="registry.example/shop-migrations:7")
    del spec["deployment"]
    assert DatabaseMigrationSpec.model_validate(spec).image == "registry.example/shop-migrations:7"


def test_status_ignores_fields_it_does_not_model() -> None:
    status = DatabaseMigrationStatus.model_validate(
        {"observedGeneration": 3, "kopf": {"progress": {}}, "pending": 0}
    )
    assert status.observed_generation == 3
    assert status.pending == 0


def test_status_dumps_in_camel_case_without_nulls() -> None:
    status = DatabaseMigrationStatus(observed_generation=2, target_hash="abc")
    assert status.model_dump(by_alias=True, exclude_none=True) == {
        "observedGeneration": 2,
        "conditions": [],
        "targetHash": "abc",
    }
