"""examples/gitops is complete and valid: every manifest parses and validates (core kinds against
the Kubernetes schemas, the DatabaseMigration against its CRD and the operator's own checks,
Argo CD and Flux kinds against tests/gitops/gitops_schemas.py), every reference between the files
resolves, and the Argo CD and Flux settings say what docs/gitops.md says they do."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from stagecraft.operator.crd import custom_resource_definition
from stagecraft.operator.gate import GATE_ANNOTATIONS
from stagecraft.operator.models import API_VERSION, KIND
from stagecraft.operator.validation import validate_spec
from tests.gitops.gitops_schemas import KUSTOMIZE_FILE, SCHEMAS
from tests.operator.schema_check import schema_problems

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "gitops"
APP = EXAMPLES / "app"
HEALTH_SCRIPT = ROOT / "charts" / "stagecraft" / "files" / "argocd-health.lua"
KUBERNETES_VERSION = "1.33.0"  # the oldest minor the chart supports
HEALTH_KEY = "resource.customizations.health.stagecraft.dev_DatabaseMigration"
IGNORE_KEY = "resource.customizations.ignoreDifferences.apps_Deployment"
GATE_LABEL = "stagecraft.dev/gate"
CORE_KINDS = {"Namespace", "Secret", "ConfigMap", "Deployment"}

MANIFEST_FILES = sorted(
    path for path in EXAMPLES.rglob("*.yaml") if path.name != "kustomization.yaml"
)
KUSTOMIZE_FILES = sorted(EXAMPLES.rglob("kustomization.yaml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _all_documents() -> list[dict[str, Any]]:
    return [document for path in MANIFEST_FILES for document in _documents(path)]


def _one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [
        document
        for document in _all_documents()
        if document["kind"] == kind and document["metadata"]["name"] == name
    ]
    return found


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


GATE_POINTERS = {_pointer("metadata", "annotations", key) for key in GATE_ANNOTATIONS}


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(
        float(amount) * units[unit] for amount, unit in re.findall(r"([0-9.]+)(ms|s|m|h)", duration)
    )


def test_the_examples_hold_both_tools_and_the_app() -> None:
    kinds = {document["kind"] for document in _all_documents()}
    assert {"Application", "ConfigMap", "GitRepository", "Kustomization"} <= kinds
    assert {"Namespace", "Secret", "Deployment", KIND} <= kinds


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=_relative)
def test_every_manifest_validates_against_its_schema(path: Path) -> None:
    documents = _documents(path)
    assert documents, f"{_relative(path)} holds no manifest"
    for document in documents:
        kind = document["kind"]
        if kind in CORE_KINDS:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        elif kind == KIND:
            assert document["apiVersion"] == API_VERSION
            crd = custom_resource_definition()
            schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            body = {key: value for key, value in document.items() if key != "metadata"}
            assert schema_problems(body, schema) == []
            assert validate_spec(document["spec"]).problems == ()
        else:
            jsonschema.validate(document, SCHEMAS[(document["apiVersion"], kind)])


def test_the_schemas_refuse_a_misspelt_field() -> None:
    """The cut-down schemas must fail on what the API server's strict validation refuses."""
    kustomization = _one("Kustomization", "shop")
    misspelt = {**kustomization, "spec": {**kustomization["spec"], "healthcheck": []}}
    schema = SCHEMAS[("kustomize.toolkit.fluxcd.io/v1", "Kustomization")]
    with pytest.raises(jsonschema.ValidationError, match="healthcheck"):
        jsonschema.validate(misspelt, schema)


@pytest.mark.parametrize("path", KUSTOMIZE_FILES, ids=_relative)
def test_every_kustomize_file_lists_exactly_its_folder(path: Path) -> None:
    kustomization = yaml.safe_load(path.read_text())
    jsonschema.validate(kustomization, KUSTOMIZE_FILE)
    folder = path.parent
    listed = {folder / resource for resource in kustomization["resources"]}
    for resource in listed:
        assert resource.is_file() or (resource / "kustomization.yaml").is_file(), resource
    present = {
        child
        for child in folder.iterdir()
        if (child.suffix == ".yaml" and child.name != "kustomization.yaml")
        or (child / "kustomization.yaml").is_file()
    }
    assert listed == present


def test_the_app_references_resolve() -> None:
    migration = _one(KIND, "shop")
    deployment = _one("Deployment", migration["spec"]["deployment"]["name"])
    secret = _one("Secret", migration["spec"]["connection"]["secretKeyRef"]["name"])
    namespace = _one("Namespace", "shop")["metadata"]["name"]

    assert {migration["metadata"]["namespace"], deployment["metadata"]["namespace"]} == {namespace}
    assert secret["metadata"]["namespace"] == namespace
    assert migration["spec"]["connection"]["secretKeyRef"]["key"] in secret["stringData"]
    containers = [
        container["name"] for container in deployment["spec"]["template"]["spec"]["containers"]
    ]
    assert set(migration["spec"]["deployment"]["containers"]) <= set(containers)


def test_the_gated_deployment_opts_in_and_leaves_paused_out_of_git() -> None:
    migration = _one(KIND, "shop")
    deployment = _one("Deployment", migration["spec"]["deployment"]["name"])
    assert migration["spec"]["migrations"]["strategy"] == "pre_deploy"
    assert deployment["metadata"]["labels"][GATE_LABEL] == "enabled"
    assert "paused" not in deployment["spec"]
    assert not set(deployment["metadata"].get("annotations", {})) & set(GATE_ANNOTATIONS)


def test_the_argocd_cm_patch_carries_the_chart_health_check_verbatim() -> None:
    config_map = _one("ConfigMap", "argocd-cm")
    assert config_map["data"][HEALTH_KEY] == HEALTH_SCRIPT.read_text()


def test_the_argocd_cm_patch_ignores_every_gate_annotation() -> None:
    ignored = yaml.safe_load(_one("ConfigMap", "argocd-cm")["data"][IGNORE_KEY])
    assert set(ignored) == {"jsonPointers"}
    assert set(ignored["jsonPointers"]) == GATE_POINTERS


def test_the_application_ignores_paused_and_the_gate_annotations_during_sync() -> None:
    application = _one("Application", "shop")
    deployment = _one("Deployment", _one(KIND, "shop")["spec"]["deployment"]["name"])
    (ignored,) = application["spec"]["ignoreDifferences"]

    assert (ignored["group"], ignored["kind"]) == ("apps", "Deployment")
    assert ignored["name"] == deployment["metadata"]["name"]
    assert ignored["namespace"] == deployment["metadata"]["namespace"]
    assert set(ignored["jsonPointers"]) == {"/spec/paused"} | GATE_POINTERS
    assert "RespectIgnoreDifferences=true" in application["spec"]["syncPolicy"]["syncOptions"]


def test_the_application_syncs_the_app_folder() -> None:
    application = _one("Application", "shop")
    assert (ROOT / application["spec"]["source"]["path"]) == APP
    assert (
        application["spec"]["destination"]["namespace"]
        == _one("Namespace", "shop")["metadata"]["name"]
    )


def test_the_flux_kustomizations_resolve_their_source_paths_and_dependencies() -> None:
    repositories = {
        document["metadata"]["name"]
        for document in _all_documents()
        if document["kind"] == "GitRepository"
    }
    kustomizations = [
        document for document in _all_documents() if document["kind"] == "Kustomization"
    ]
    names = {kustomization["metadata"]["name"] for kustomization in kustomizations}
    for kustomization in kustomizations:
        spec = kustomization["spec"]
        assert spec["sourceRef"]["kind"] == "GitRepository"
        assert spec["sourceRef"]["name"] in repositories
        assert (ROOT / spec["path"] / "kustomization.yaml").is_file()
        assert {dependency["name"] for dependency in spec.get("dependsOn", [])} <= names


def test_flux_creates_the_database_migration_before_the_deployment() -> None:
    """The gate can only pause a Deployment whose DatabaseMigration already exists."""
    database = _one("Kustomization", "shop-database")
    app = _one("Kustomization", "shop")
    assert {"name": "shop-database"} in app["spec"]["dependsOn"]
    assert (ROOT / database["spec"]["path"] / "databasemigration.yaml").is_file()
    assert (ROOT / app["spec"]["path"] / "deployment.yaml").is_file()
    # Waiting there would deadlock the first install: the DatabaseMigration is Stalled until the
    # Deployment it reads its migrations from exists, and that comes from `shop`.
    assert database["spec"]["wait"] is False
    assert "healthChecks" not in database["spec"]


def test_flux_waits_for_the_migration_and_the_rollout_long_enough() -> None:
    app = _one("Kustomization", "shop")
    migration = _one(KIND, "shop")
    deployment = _one("Deployment", migration["spec"]["deployment"]["name"])
    checked = {
        (check["kind"], check["name"], check["namespace"]) for check in app["spec"]["healthChecks"]
    }

    assert checked == {
        ("Deployment", deployment["metadata"]["name"], deployment["metadata"]["namespace"]),
        (KIND, migration["metadata"]["name"], migration["metadata"]["namespace"]),
    }
    assert "wait" not in app["spec"], "wait: true would ignore healthChecks"
    assert _seconds(app["spec"]["timeout"]) > migration["spec"]["job"]["activeDeadlineSeconds"]
