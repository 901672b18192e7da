"""docs/gitops.md shows the health check that the chart ships, and its YAML snippets are valid."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from stagecraft.operator.gate import GATE_ANNOTATIONS
from stagecraft.operator.models import API_VERSION, KIND
from stagecraft.operator.validation import validate_spec

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "gitops.md"
HEALTH_SCRIPT = ROOT / "charts" / "stagecraft" / "files" / "argocd-health.lua"
HEALTH_KEY = "resource.customizations.health.stagecraft.dev_DatabaseMigration"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", DOC.read_text(), re.MULTILINE | re.DOTALL)


def _yaml_documents() -> list[dict[str, Any]]:
    return [document for block in _blocks("yaml") for document in yaml.safe_load_all(block)]


def test_the_doc_shows_the_chart_health_check_verbatim() -> None:
    (config_map,) = [
        document for document in _yaml_documents() if HEALTH_KEY in document.get("data", {})
    ]
    assert config_map["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    assert config_map["data"][HEALTH_KEY] == HEALTH_SCRIPT.read_text()


def test_every_yaml_snippet_parses_to_objects() -> None:
    documents = _yaml_documents()
    assert len(documents) >= 5
    assert all(isinstance(document, dict) for document in documents)


def test_the_ignore_differences_snippet_names_paused_and_every_gate_annotation() -> None:
    (snippet,) = [
        document
        for document in _yaml_documents()
        if "ignoreDifferences" in document.get("spec", {})
    ]
    (ignored,) = snippet["spec"]["ignoreDifferences"]
    pointers = {"/metadata/annotations/" + key.replace("/", "~1") for key in GATE_ANNOTATIONS}
    assert set(ignored["jsonPointers"]) == {"/spec/paused"} | pointers
    assert snippet["spec"]["syncPolicy"]["syncOptions"] == ["RespectIgnoreDifferences=true"]


def test_the_doc_has_the_sequence_diagram_of_a_pre_deploy_sync() -> None:
    (diagram,) = _blocks("mermaid")
    assert diagram.startswith("sequenceDiagram")
    for step in ("spec.paused=true", "Stalled=True", "Ready=True", "spec.paused=false"):
        assert step in diagram


def test_the_database_migration_snippets_pass_the_operators_checks() -> None:
    migrations = [document for document in _yaml_documents() if document.get("kind") == KIND]
    assert migrations
    for migration in migrations:
        assert migration["apiVersion"] == API_VERSION
        assert validate_spec(migration["spec"]).problems == ()
