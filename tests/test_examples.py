"""The examples under examples/ are right: their manifests validate, their DatabaseMigration
mirrors their stagecraft.yml, their images carry the folder it names, and their migrations apply
with their engine on a real database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml

from stagecraft.config import Strategy, load_config
from stagecraft.operator.crd import custom_resource_definition
from stagecraft.operator.validation import validate_spec
from tests.engines.knex_projects import NODE_MODULES
from tests.operator.schema_check import schema_problems

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
APPS = sorted(path.parent.name for path in EXAMPLES.glob("*/stagecraft.yml"))
KUBERNETES_VERSION = "1.33.0"  # the oldest minor the chart supports (podFailurePolicy is GA)
IMAGE_WORKDIR = PurePosixPath("/app")  # every example's Dockerfile works in /app
GATE_LABEL = "stagecraft.dev/gate"


def _documents(app: str) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for file in sorted((EXAMPLES / app / "k8s").glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(file.read_text()) if doc]
    return documents


def _one(app: str, kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in _documents(app) if doc["kind"] == kind]
    return found


def _database(app: str) -> tuple[str, Any]:
    config = load_config(EXAMPLES / app / "stagecraft.yml").config
    ((name, database),) = config.databases.items()
    return name, database


def test_the_examples_cover_every_engine_and_every_strategy() -> None:
    engines = {_database(app)[1].migrations.engine for app in APPS}
    strategies = {_database(app)[1].migrations.strategy for app in APPS}

    assert engines == {"raw", "drizzle", "prisma", "knex"}
    assert strategies == set(Strategy)


@pytest.mark.parametrize("app", APPS)
def test_kubernetes_manifests_validate_against_the_kubernetes_schemas(app: str) -> None:
    core = [doc for doc in _documents(app) if doc["apiVersion"] != "stagecraft.dev/v1alpha1"]

    assert {doc["kind"] for doc in core} == {"Secret", "Deployment"}
    for document in core:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("app", APPS)
def test_database_migration_passes_the_crd_and_the_operators_validation(app: str) -> None:
    resource = _one(app, "DatabaseMigration")
    schema = custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    assert schema_problems({k: v for k, v in resource.items() if k != "metadata"}, schema) == []
    result = validate_spec(resource["spec"])
    assert result.valid, result.message


@pytest.mark.parametrize("app", APPS)
def test_database_migration_mirrors_the_stagecraft_yml_entry(app: str) -> None:
    name, database = _database(app)
    resource = _one(app, "DatabaseMigration")
    migrations = resource["spec"]["migrations"]

    assert resource["metadata"]["name"] == name
    assert migrations["engine"] == database.migrations.engine
    assert migrations.get("strategy", "pre_deploy") == database.migrations.strategy
    assert migrations.get("options", {}) == database.migrations.options
    # The config's folder is relative to the project; in the image, the project is /app.
    in_image = IMAGE_WORKDIR / PurePosixPath(database.migrations.path)
    assert PurePosixPath(migrations["path"]) == PurePosixPath(os.path.normpath(in_image))
    assert resource["spec"]["connection"]["env"] == database.connection_env


@pytest.mark.parametrize("app", APPS)
def test_the_referenced_deployment_secret_and_container_are_in_the_example(app: str) -> None:
    resource = _one(app, "DatabaseMigration")
    deployment = _one(app, "Deployment")
    secret = _one(app, "Secret")

    assert resource["spec"]["deployment"]["name"] == deployment["metadata"]["name"]
    containers = {c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert set(resource["spec"]["deployment"]["containers"]) <= containers
    reference = resource["spec"]["connection"]["secretKeyRef"]
    assert reference["name"] == secret["metadata"]["name"]
    assert reference["key"] in secret["stringData"]
    gated = resource["spec"]["migrations"].get("strategy", "pre_deploy") == "pre_deploy"
    assert (deployment["metadata"].get("labels", {}).get(GATE_LABEL) == "enabled") == gated


@pytest.mark.parametrize("app", APPS)
def test_the_application_image_carries_the_migrations_folder(app: str) -> None:
    dockerfile = (EXAMPLES / app / "Dockerfile").read_text()
    _, database = _database(app)
    top_folder = PurePosixPath(database.migrations.path).parts[0]

    assert f"WORKDIR {IMAGE_WORKDIR}" in dockerfile
    assert f"COPY {top_folder}/ ./{top_folder}/" in dockerfile
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "hadolint"), str(EXAMPLES / app / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def _stagecraft(*arguments: str, cwd: Path, url: str) -> dict[str, Any]:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "stagecraft"), *arguments, "--output", "json"],
        cwd=cwd,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.mark.parametrize("app", APPS)
def test_the_example_migrations_apply_with_their_engine(
    app: str, postgres_url: str, tmp_path: Path
) -> None:
    project = tmp_path / app
    shutil.copytree(EXAMPLES / app, project)
    if _database(app)[1].migrations.engine == "knex":
        (project / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)

    run = _stagecraft("migrate", "run", "--config", "stagecraft.yml", cwd=project, url=postgres_url)
    plan = _stagecraft(
        "migrate", "plan", "--config", "stagecraft.yml", cwd=project, url=postgres_url
    )

    assert run["status"] == "succeeded"
    assert len(run["applied"]) >= 3
    assert plan["pending"] == []
    assert plan["problems"] == []
