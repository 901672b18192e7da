"""The DatabaseMigration CRD, generated from the pydantic models (`make crds` writes it).

pydantic's JSON Schema is turned into a Kubernetes structural schema: references inlined, nullable
unions collapsed to the type, titles dropped, and free-form mappings (engine options, affinity,
tolerations) marked `x-kubernetes-preserve-unknown-fields` so the API server keeps them as written.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from .models import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    DatabaseMigrationSpec,
    DatabaseMigrationStatus,
)

_DROPPED_KEYS = frozenset({"title", "$defs"})

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Engine", "type": "string", "jsonPath": ".spec.migrations.engine"},
    {"name": "Strategy", "type": "string", "jsonPath": ".spec.migrations.strategy"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Applied", "type": "integer", "jsonPath": ".status.lastRun.appliedCount"},
    {"name": "Pending", "type": "integer", "jsonPath": ".status.pending"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _is_free_form(schema: dict[str, Any]) -> bool:
    """An object whose fields are not modelled: `dict[str, Any]` in the models."""
    additional = schema.get("additionalProperties")
    return (
        schema.get("type") == "object"
        and "properties" not in schema
        and (additional is True or additional == {})
    )


def structural(schema: Any, definitions: dict[str, Any]) -> Any:
    """A pydantic JSON Schema node as a Kubernetes structural schema node."""
    if isinstance(schema, list):
        return [structural(item, definitions) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        referenced = definitions[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**referenced, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, definitions)
    if "anyOf" in schema:
        return structural(_collapse_nullable(schema), definitions)
    if _is_free_form(schema):
        kept = {k: v for k, v in schema.items() if k not in ("additionalProperties", "title")}
        return {**kept, "x-kubernetes-preserve-unknown-fields": True}
    return _structural_object(schema, definitions)


def _collapse_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None` becomes X: an absent field is the null of Kubernetes."""
    options = [option for option in schema["anyOf"] if option.get("type") != "null"]
    if len(options) != 1:
        raise ValueError(f"a CRD field must have one type, not a union of {options}")
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    if "default" in rest and rest["default"] is None:
        del rest["default"]
    return {**options[0], **rest}


def _structural_object(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED_KEYS or (key == "additionalProperties" and value is False):
            continue  # a structural schema prunes unknown fields instead of forbidding them
        if key == "properties":
            result[key] = {name: structural(node, definitions) for name, node in value.items()}
        elif key in ("items", "additionalProperties"):
            result[key] = structural(value, definitions)
        else:
            result[key] = value
    return result


def _model_schema(model: type[Any]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    converted: dict[str, Any] = structural(schema, schema.get("$defs", {}))
    return converted


def custom_resource_definition() -> dict[str, Any]:
    spec_schema = _model_schema(DatabaseMigrationSpec)
    status_schema = _model_schema(DatabaseMigrationStatus)
    # kopf records its handler progress in status; keep what the models do not name.
    status_schema["x-kubernetes-preserve-unknown-fields"] = True
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["stagecraft"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": f"{API_VERSION} {KIND}: one database's migrations, "
                            "run as Jobs around the application's rollouts.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated from src/stagecraft/operator/models.py by `make crds`; do not edit.\n"
    body = yaml.safe_dump(custom_resource_definition(), sort_keys=False, width=100)
    return header + body


if __name__ == "__main__":
    sys.stdout.write(render())
