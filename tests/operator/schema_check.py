"""Checks an object against a CRD's structural schema, as the API server would on write.

Enough of OpenAPI v3 for the schemas `stagecraft.operator.crd` generates: types, required fields,
properties, items, additionalProperties, enum, pattern, minimum and minLength. Free-form parts
(x-kubernetes-preserve-unknown-fields) are accepted as they are. A field a schema does not name
is a problem here, where the API server would silently drop it: the models and the CRD must agree.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _type_problem(value: Any, schema: dict[str, Any], path: str) -> str | None:
    expected = schema.get("type")
    if expected is None:
        return None
    if isinstance(value, bool) and expected in ("integer", "number"):
        return f"{path}: expected {expected}, got a boolean"
    if not isinstance(value, _TYPES[expected]):
        return f"{path}: expected {expected}, got {type(value).__name__}"
    return None


def _scalar_problems(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        problems.append(f"{path}: shorter than {schema['minLength']}")
    if isinstance(value, int) and "minimum" in schema and value < schema["minimum"]:
        problems.append(f"{path}: below {schema['minimum']}")
    return problems


def _object_problems(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    problems = [
        f"{path}.{name}: required" for name in schema.get("required", []) if name not in value
    ]
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    for name, item in value.items():
        if properties is not None and name in properties:
            problems += schema_problems(item, properties[name], f"{path}.{name}")
        elif isinstance(additional, dict):
            problems += schema_problems(item, additional, f"{path}.{name}")
        elif properties is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path}.{name}: not in the schema (the API server would drop it)")
    return problems


def schema_problems(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    type_problem = _type_problem(value, schema, path)
    if type_problem:
        return [type_problem]
    problems = _scalar_problems(value, schema, path)
    if isinstance(value, dict):
        problems += _object_problems(value, schema, path)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problems += schema_problems(item, schema["items"], f"{path}[{index}]")
    return problems
