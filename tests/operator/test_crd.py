"""The generated CRD: in sync with the models, structural, and free of any engine list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from stagecraft.engines import registry
from stagecraft.operator.crd import custom_resource_definition, render

COMMITTED = Path(__file__).parents[2] / "crds" / "databasemigrations.stagecraft.dev.yaml"


def _version() -> dict[str, Any]:
    version: dict[str, Any] = custom_resource_definition()["spec"]["versions"][0]
    return version


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = _version()["schema"]["openAPIV3Schema"]
    return schema


def _nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for name, child in node.get("properties", {}).items():
            yield from _nodes(child, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from _nodes(node[key], f"{path}[{key}]")


def test_committed_crd_is_what_make_crds_generates_now() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        "crds/ is stale: run `make crds` and commit the result"
    )


def test_every_schema_node_has_a_type_and_no_json_schema_only_keywords() -> None:
    for path, node in _nodes(_schema()):
        assert "type" in node, path
        assert not {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title"} & node.keys(), path


def test_properties_and_additional_properties_never_meet_in_one_node() -> None:
    for path, node in _nodes(_schema()):
        assert not ("properties" in node and "additionalProperties" in node), path


def test_only_free_form_fields_keep_unknown_fields() -> None:
    preserved = {
        path for path, node in _nodes(_schema()) if node.get("x-kubernetes-preserve-unknown-fields")
    }
    assert preserved == {
        ".spec.migrations.options",
        ".spec.job.tolerations[items]",
        ".spec.job.affinity",
        ".spec.job.env[items].valueFrom",
        ".status",  # kopf keeps its own progress records in status
    }


def test_engine_ids_are_not_enumerated_in_the_schema() -> None:
    engine = _schema()["properties"]["spec"]["properties"]["migrations"]["properties"]["engine"]
    assert engine == {"type": "string"}
    assert not any(engine_id in render() for engine_id in registry.ids() if len(engine_id) > 3)


def test_strategy_is_enumerated_with_pre_deploy_by_default() -> None:
    strategy = _schema()["properties"]["spec"]["properties"]["migrations"]["properties"]["strategy"]
    assert strategy["enum"] == ["pre_deploy", "post_deploy", "manual"]
    assert strategy["default"] == "pre_deploy"


def test_resource_is_namespaced_with_status_subresource_and_short_name() -> None:
    crd = custom_resource_definition()
    assert crd["metadata"]["name"] == "databasemigrations.stagecraft.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["shortNames"] == ["dbm"]
    assert _version()["name"] == "v1alpha1"
    assert _version()["subresources"] == {"status": {}}


def test_printer_columns_show_engine_strategy_ready_applied_pending_and_age() -> None:
    names = [column["name"] for column in _version()["additionalPrinterColumns"]]
    assert names == ["Engine", "Strategy", "Ready", "Applied", "Pending", "Age"]


def test_printer_column_paths_exist_in_the_schema() -> None:
    paths = {path for path, _ in _nodes(_schema())}
    for column in _version()["additionalPrinterColumns"]:
        json_path = column["jsonPath"].split("[?")[0]
        if json_path.startswith(".metadata"):
            continue
        assert json_path in paths, column


def test_rendered_yaml_parses_back_to_the_same_definition() -> None:
    assert yaml.safe_load(render()) == custom_resource_definition()
