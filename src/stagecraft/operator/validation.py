"""The checks a DatabaseMigration spec must pass: the admission webhook and reconcile share them.

They are the checks of stagecraft.yml (the same pydantic model for `migrations`, engine ids and
options through the engine registry), so a resource is valid exactly when the matching config
entry is. Each problem names the field it is about, in the resource's own spelling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..engines import registry
from ..engines.errors import InvalidOptions, UnknownEngine
from .manifests import KNEX_ENGINE, knex_project_root
from .models import DatabaseMigrationSpec


@dataclass(frozen=True)
class SpecProblem:
    field: str  # e.g. "spec.migrations.engine"
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class SpecValidation:
    spec: DatabaseMigrationSpec | None  # None when the structure itself is wrong
    problems: tuple[SpecProblem, ...]

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def message(self) -> str:
        """All problems in one line, for an admission response or a Stalled condition."""
        return "; ".join(str(problem) for problem in self.problems)


def _field(*parts: object) -> str:
    return ".".join(["spec", *(str(part) for part in parts)])


def _structure_problems(error: ValidationError) -> list[SpecProblem]:
    return [
        SpecProblem(_field(*issue["loc"]), issue["msg"].removeprefix("Value error, "))
        for issue in error.errors()
    ]


def _registry_problems(raw_spec: Mapping[str, Any]) -> list[SpecProblem]:
    """Engine id and options against the registry, read from the raw spec so that they are
    reported together with structural problems."""
    migrations = raw_spec.get("migrations")
    if not isinstance(migrations, Mapping):
        return []
    engine_id = migrations.get("engine")
    if not isinstance(engine_id, str) or not engine_id.strip():
        return []  # pydantic reports a missing or empty engine
    try:
        engine = registry.get(engine_id)
    except UnknownEngine as error:
        return [SpecProblem(_field("migrations", "engine"), str(error))]
    options = migrations.get("options") or {}
    if not isinstance(options, Mapping):
        return []  # pydantic reports the wrong type
    try:
        engine.parse_options(options)
    except InvalidOptions as error:
        return [
            SpecProblem(_field("migrations", "options", field), message)
            for field, message in error.problems
        ]
    return []


def _job_problems(spec: DatabaseMigrationSpec) -> list[SpecProblem]:
    """What an engine needs of its Job that the spec's shape cannot say: Knex runs in the
    application image (a ConfigMap holds no Node.js project), and the Job copies one folder."""
    if spec.migrations.engine != KNEX_ENGINE:
        return []
    problems: list[SpecProblem] = []
    if spec.config_map is not None:
        problems.append(
            SpecProblem(
                _field("configMap"),
                "the knex engine runs the project's Knex CLI in the application image: name "
                "the image (deployment or image) instead of a ConfigMap",
            )
        )
    root = knex_project_root(spec)
    if root is not None and not root.startswith("/"):
        problems.append(
            SpecProblem(
                _field("migrations", "path"),
                f"Knex would run in {root!r}, relative to the image's working directory, which "
                "a Job cannot name: give the folder inside the image as an absolute path, or "
                "set options.project_root to one",
            )
        )
    if spec.migrations.options.get("extra_directories"):
        problems.append(
            SpecProblem(
                _field("migrations", "options", "extra_directories"),
                "a migration Job copies one folder (migrations.path) out of the image: use one "
                "DatabaseMigration per folder, or one folder",
            )
        )
    return problems


def validate_spec(raw_spec: Mapping[str, Any]) -> SpecValidation:
    problems = _registry_problems(raw_spec)
    try:
        spec = DatabaseMigrationSpec.model_validate(dict(raw_spec))
    except ValidationError as error:
        return SpecValidation(None, (*_structure_problems(error), *problems))
    problems += _job_problems(spec)
    return SpecValidation(spec if not problems else None, tuple(problems))
