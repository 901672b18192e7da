"""docs/helm.md explains every value of the chart and shows every documented combination."""

from __future__ import annotations

import re
from typing import Any

import helm_python

from .rendering import COMBINATIONS, ROOT
from .test_values import default_values, value_paths


def test_docs_name_every_value() -> None:
    docs = (ROOT / "docs" / "helm.md").read_text()
    paths = list(value_paths(default_values()))
    leaves = [path for path in paths if not any(p.startswith(f"{path}.") for p in paths)]
    missing = [path for path in leaves if f"`{path}`" not in docs]
    assert missing == [], "docs/helm.md does not explain these values"


def test_docs_show_every_combination_the_tests_render() -> None:
    docs = (ROOT / "docs" / "helm.md").read_text()
    missing = [name for name in COMBINATIONS if f"`{name}`" not in docs]
    assert missing == [], "docs/helm.md does not show these combinations"


def _merge(into: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _documented_commands() -> dict[str, str]:
    docs = (ROOT / "docs" / "helm.md").read_text()
    rows = re.findall(r"^\| `([a-z-]+)` \| `([^`]*)` \|$", docs, flags=re.MULTILINE)
    return dict(rows)


def test_each_documented_command_sets_the_values_its_combination_renders() -> None:
    commands = _documented_commands()
    assert set(commands) == set(COMBINATIONS)
    for name, command in commands.items():
        values: dict[str, Any] = {}
        for quoted, plain in re.findall(r"--set (?:'([^']*)'|(\S+))", command):
            _merge(values, helm_python.parse_set_string(quoted or plain))
        assert values == COMBINATIONS[name], name
