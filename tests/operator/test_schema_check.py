"""The test-side CRD check finds what an API server would refuse or prune."""

from __future__ import annotations

from typing import Any

from stagecraft.operator.crd import custom_resource_definition
from tests.operator.schema_check import schema_problems


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = custom_resource_definition()["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]
    return schema


def _resource(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stagecraft.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "spec": {
            "migrations": {"engine": "raw", "path": "/m", "options": {"anything": [1]}},
            "connection": {"secretKeyRef": {"name": "db", "key": "url"}},
            "image": "app:1",
        },
        "status": status,
    }


def test_a_valid_resource_has_no_problems() -> None:
    assert schema_problems(_resource(pending=0, kopf={"progress": {}}), _schema()) == []


def test_wrong_types_and_unknown_spec_fields_are_found() -> None:
    resource = _resource(pending="3")
    resource["spec"]["colour"] = "blue"
    assert schema_problems(resource, _schema()) == [
        ".spec.colour: not in the schema (the API server would drop it)",
        ".status.pending: expected integer, got str",
    ]


def test_enum_and_required_fields_are_checked() -> None:
    run = {"job": "j", "targetHash": "h", "result": "Maybe"}
    problems = schema_problems(_resource(lastRun=run, conditions=[{"type": "Ready"}]), _schema())
    assert ".status.lastRun.result: 'Maybe' is not one of ['Running', 'Succeeded', 'Failed']" in (
        problems
    )
    assert ".status.conditions[0].status: required" in problems
