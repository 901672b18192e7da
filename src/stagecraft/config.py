"""`stagecraft.yml`: pydantic models, and validation whose errors name file, YAML path and line.

Structure is checked by pydantic; engine ids and engine options are checked against the engine
registry (no other list of engines exists), so a third-party engine is valid as soon as it is
installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .engines import registry
from .engines.errors import InvalidOptions, StagecraftError, UnknownEngine

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Strategy(StrEnum):
    PRE_DEPLOY = "pre_deploy"
    POST_DEPLOY = "post_deploy"
    MANUAL = "manual"


class MigrationsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: str
    path: str
    strategy: Strategy = Strategy.PRE_DEPLOY
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("engine", "path")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class DatabaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connection_env: str
    migrations: MigrationsConfig

    @field_validator("connection_env")
    @classmethod
    def _environment_variable_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(
                "must name an environment variable (letters, digits and _, not starting with a "
                f"digit), got {value!r}"
            )
        return value


class StagecraftConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    databases: dict[str, DatabaseConfig] = Field(min_length=1)


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    yaml_path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.yaml_path}: {self.message}"
            if self.yaml_path
            else f"{where}: {self.message}"
        )


class ConfigError(StagecraftError):
    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


@dataclass(frozen=True)
class LoadedConfig:
    file: Path
    config: StagecraftConfig

    def database(self, name: str | None) -> tuple[str, DatabaseConfig]:
        names = list(self.config.databases)
        if name is None:
            if len(names) == 1:
                return names[0], self.config.databases[names[0]]
            raise ConfigError(
                [
                    ConfigIssue(
                        str(self.file),
                        "databases",
                        None,
                        f"several databases are configured ({', '.join(names)}); "
                        "choose one with --database",
                    )
                ]
            )
        if name not in self.config.databases:
            raise ConfigError(
                [
                    ConfigIssue(
                        str(self.file),
                        "databases",
                        None,
                        f"no database named {name!r}; configured: {', '.join(names)}",
                    )
                ]
            )
        return name, self.config.databases[name]

    def migrations_path(self, database: DatabaseConfig) -> Path:
        """`migrations.path`, relative to the config file's folder unless absolute."""
        return (self.file.parent / database.migrations.path).resolve()


def _line_of(root: yaml.Node | None, path: tuple[str | int, ...]) -> int | None:
    """1-based line of the deepest YAML node along `path` (the parent when a key is missing)."""
    node, line = root, (root.start_mark.line + 1 if root else None)
    for part in path:
        if not isinstance(node, yaml.MappingNode):
            break
        for key, value in node.value:
            if key.value == str(part):
                node, line = value, key.start_mark.line + 1
                break
        else:
            break
    return line


def _registry_issues(data: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Engine ids and options checked against the registry, on the raw data so that these
    problems are reported together with any structural ones."""
    issues: list[tuple[tuple[str | int, ...], str]] = []
    databases = data.get("databases")
    for name, database in databases.items() if isinstance(databases, Mapping) else ():
        migrations = database.get("migrations") if isinstance(database, Mapping) else None
        engine_id = migrations.get("engine") if isinstance(migrations, Mapping) else None
        if not isinstance(engine_id, str) or not engine_id.strip():
            continue
        assert isinstance(migrations, Mapping)
        where: tuple[str | int, ...] = ("databases", name, "migrations")
        try:
            engine = registry.get(engine_id)
        except UnknownEngine as error:
            issues.append(((*where, "engine"), str(error)))
            continue
        options = migrations.get("options") or {}
        if not isinstance(options, Mapping):
            continue  # pydantic reports the wrong type
        try:
            engine.parse_options(options)
        except InvalidOptions as error:
            for field, message in error.problems:
                issues.append(((*where, "options", *field.split(".")), message))
    return issues


def _message(text: str) -> str:
    return text.removeprefix("Value error, ")


def parse_config(text: str, file: str = "stagecraft.yml") -> StagecraftConfig:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise ConfigError([ConfigIssue(file, "", line, f"not valid YAML: {error}")]) from None
    if not isinstance(data, Mapping):
        raise ConfigError([ConfigIssue(file, "", 1, "expected a mapping with a `databases:` key")])
    issues = [
        ConfigIssue(file, ".".join(map(str, path)), _line_of(root, path), message)
        for path, message in _registry_issues(data)
    ]
    try:
        config = StagecraftConfig.model_validate(data)
    except ValidationError as error:
        issues = [
            ConfigIssue(
                file,
                ".".join(str(part) for part in issue["loc"]),
                _line_of(root, tuple(issue["loc"])),
                _message(issue["msg"]),
            )
            for issue in error.errors()
        ] + issues
    if issues:
        raise ConfigError(sorted(issues, key=lambda issue: issue.line or 0))
    return config


def load_config(path: Path) -> LoadedConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(str(path), "", None, "config file not found")]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([ConfigIssue(str(path), "", None, f"cannot read: {error}")]) from None
    return LoadedConfig(file=path, config=parse_config(text, str(path)))
