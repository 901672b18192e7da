"""Spec validation gives the same verdicts as stagecraft.yml validation, naming each field."""

from __future__ import annotations

from typing import Any

from stagecraft.config import ConfigError, parse_config
from stagecraft.engines import registry
from stagecraft.operator.validation import validate_spec


def _spec(**migrations: Any) -> dict[str, Any]:
    return {
        "migrations": {"engine": "raw", "path": "/app/migrations", **migrations},
        "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        "image": "shop:1",
    }


def test_valid_spec_has_no_problems_and_a_model() -> None:
    result = validate_spec(_spec(options={"table": "schema_history"}))
    assert result.valid
    assert result.spec is not None
    assert result.spec.migrations.options == {"table": "schema_history"}


def test_unknown_engine_lists_the_registered_ids() -> None:
    result = validate_spec(_spec(engine="flyway"))
    assert not result.valid
    assert result.spec is None
    assert [problem.field for problem in result.problems] == ["spec.migrations.engine"]
    for engine_id in registry.ids():
        assert engine_id in result.message


def test_empty_path_is_refused() -> None:
    result = validate_spec(_spec(path="  "))
    assert result.message == "spec.migrations.path: must not be empty"


def test_unknown_strategy_is_refused_naming_the_allowed_ones() -> None:
    result = validate_spec(_spec(strategy="whenever"))
    assert [problem.field for problem in result.problems] == ["spec.migrations.strategy"]
    assert "pre_deploy" in result.message
    assert "manual" in result.message


def test_options_the_engine_rejects_name_the_option() -> None:
    result = validate_spec(_spec(options={"tabel": "x"}))
    assert [problem.field for problem in result.problems] == ["spec.migrations.options.tabel"]
    assert "known options: table" in result.message


def test_structural_and_registry_problems_are_reported_together() -> None:
    spec = _spec(engine="flyway")
    spec["connection"] = {"secretKeyRef": {"name": "shop-db"}}
    fields = {problem.field for problem in validate_spec(spec).problems}
    assert fields == {"spec.migrations.engine", "spec.connection.secretKeyRef.key"}


def test_verdicts_match_stagecraft_yml_validation() -> None:
    cases: list[dict[str, Any]] = [
        {},
        {"engine": "flyway"},
        {"path": ""},
        {"strategy": "sometimes"},
        {"options": {"tabel": "x"}},
        {"engine": "drizzle", "options": {"table": "t"}},
    ]
    for migrations in cases:
        merged = {"engine": "raw", "path": "migrations", **migrations}
        yaml_text = (
            "databases:\n  main:\n    connection_env: DATABASE_URL\n"
            f"    migrations: {merged!r}\n".replace("'", '"')
        )
        try:
            parse_config(yaml_text)
            config_valid = True
        except ConfigError:
            config_valid = False
        assert validate_spec(_spec(**migrations)).valid == config_valid, migrations
