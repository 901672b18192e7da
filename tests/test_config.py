"""stagecraft.yml validation: structure by pydantic, engines and options by the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagecraft.config import ConfigError, Strategy, load_config, parse_config
from stagecraft.engines import registry

VALID = """\
databases:
  main:
    connection_env: DATABASE_URL
    migrations: {engine: raw, path: ./migrations}
  analytics:
    connection_env: ANALYTICS_URL
    migrations:
      engine: raw
      path: db/analytics
      strategy: post_deploy
      options: {table: history}
"""


def issues(text: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "stagecraft.yml")
    return [(i.yaml_path, i.line, i.message) for i in raised.value.issues]


def test_a_valid_file_parses_with_pre_deploy_as_the_default_strategy() -> None:
    config = parse_config(VALID)
    assert config.databases["main"].migrations.strategy is Strategy.PRE_DEPLOY
    assert config.databases["analytics"].migrations.strategy is Strategy.POST_DEPLOY
    assert config.databases["analytics"].migrations.options == {"table": "history"}


def test_an_unknown_engine_names_file_path_line_and_the_registered_ids() -> None:
    text = VALID.replace(
        "{engine: raw, path: ./migrations}", "\n      engine: flyway\n      path: m"
    )
    (issue,) = issues(text)
    assert issue[0] == "databases.main.migrations.engine"
    assert issue[1] == 5
    assert "unknown migration engine 'flyway'" in issue[2]
    assert all(engine_id in issue[2] for engine_id in registry.ids())
    with pytest.raises(
        ConfigError, match=r"^stagecraft\.yml:5: databases\.main\.migrations\.engine"
    ):
        parse_config(text, "stagecraft.yml")


def test_empty_engine_and_path_and_unknown_strategy_are_each_reported() -> None:
    text = """\
databases:
  main:
    connection_env: DATABASE_URL
    migrations:
      engine: ""
      path: "  "
      strategy: sometimes
"""
    found = issues(text)
    assert ("databases.main.migrations.engine", 5, "must not be empty") in found
    assert ("databases.main.migrations.path", 6, "must not be empty") in found
    strategy = next(issue for issue in found if issue[0].endswith("strategy"))
    assert strategy[1] == 7
    assert "'pre_deploy', 'post_deploy' or 'manual'" in strategy[2]


def test_engine_options_are_validated_by_the_engines_own_model() -> None:
    text = VALID.replace("options: {table: history}", "options: {tabel: history}")
    (issue,) = issues(text)
    assert issue[0] == "databases.analytics.migrations.options.tabel"
    assert issue[1] == 11
    assert "unknown option; known options: table, schema" in issue[2]


def test_a_missing_key_points_at_its_parent_and_unknown_keys_are_refused() -> None:
    text = "databases:\n  main:\n    migrations: {engine: raw, path: m}\n    conection_env: X\n"
    found = issues(text)
    assert ("databases.main.connection_env", 2, "Field required") in found
    assert any(path == "databases.main.conection_env" and line == 4 for path, line, _ in found)


def test_connection_env_must_be_a_variable_name() -> None:
    (issue,) = issues(VALID.replace("ANALYTICS_URL", "analytics-url"))
    assert issue[0] == "databases.analytics.connection_env"
    assert "must name an environment variable" in issue[2]


def test_broken_yaml_reports_its_line() -> None:
    (issue,) = issues("databases:\n  main: [unclosed\n")
    assert issue[1] is not None
    assert "not valid YAML" in issue[2]


def test_no_databases_is_an_error() -> None:
    assert issues("databases: {}\n")[0][0] == "databases"


def test_migration_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config_file = tmp_path / "deploy" / "stagecraft.yml"
    config_file.parent.mkdir()
    config_file.write_text(VALID)
    loaded = load_config(config_file)
    name, database = loaded.database("analytics")
    assert name == "analytics"
    assert loaded.migrations_path(database) == (tmp_path / "deploy" / "db" / "analytics").resolve()
    with pytest.raises(ConfigError, match="several databases are configured"):
        loaded.database(None)
    with pytest.raises(ConfigError, match="no database named 'nope'"):
        loaded.database("nope")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yml: config file not found"):
        load_config(tmp_path / "missing.yml")
