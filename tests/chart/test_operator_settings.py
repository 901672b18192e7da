"""The environment the chart gives the operator is what main.py reads, and means what the
values say: each combination's variables go through the operator's own parser."""

from __future__ import annotations

import ast
import inspect
import re

import pytest

from stagecraft.operator import main

from .rendering import COMBINATIONS, Rendered, render

SECRET_MOUNT = "/etc/stagecraft/webhook"


def _variables_main_reads() -> set[str]:
    source = inspect.getsource(main.options_from_environment)
    return {
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"STAGECRAFT_[A-Z_]+", node.value)
    }


def _ports(rendered: Rendered) -> dict[str, int]:
    container = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {port["name"]: port["containerPort"] for port in container["ports"]}


def test_every_variable_the_chart_sets_is_one_the_operator_reads() -> None:
    read = _variables_main_reads()
    for combination, values in COMBINATIONS.items():
        assert set(render(values).environment()) <= read, combination


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_the_operator_accepts_the_environment_of(combination: str) -> None:
    values = COMBINATIONS[combination]
    rendered = render(values)
    options = main.options_from_environment(rendered.environment())
    container = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    ports = _ports(rendered)

    assert options.runner_image == values.get("runnerImage", container["image"])
    assert list(options.namespaces) == values.get("watchNamespaces", [])
    selected = bool(values.get("namespaceSelector") or values.get("namespaceLabelSelector"))
    assert (options.namespace_selector is not None) == selected
    assert (options.peering_name is not None) == (values.get("replicaCount", 1) > 1)
    assert options.liveness_endpoint == f"http://0.0.0.0:{ports['health']}/healthz"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    if "webhook" in ports:
        assert options.webhook_port == ports["webhook"]
        assert options.webhook_cert == f"{SECRET_MOUNT}/tls.crt"
        assert options.webhook_key == f"{SECRET_MOUNT}/tls.key"
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        assert mounts[SECRET_MOUNT] == "webhook-tls"
    else:
        assert options.webhook_cert is None  # no webhook server at all
    assert options.metrics_port == ports.get("metrics", 0)


def test_the_runner_image_defaults_to_the_operators_own() -> None:
    rendered = render()
    container = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/stagecraft/stagecraft:0.1.0"
    assert rendered.environment()["STAGECRAFT_RUNNER_IMAGE"] == container["image"]
    pinned = render(COMBINATIONS["digest-and-runner-image"])
    image = pinned.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/stagecraft/stagecraft@sha256:" + "0" * 64


def test_a_structured_namespace_selector_reaches_the_operator_as_the_same_selector() -> None:
    rendered = render(COMBINATIONS["namespace-label-selector"])
    options = main.options_from_environment(rendered.environment())
    selector = options.namespace_selector
    assert selector is not None
    assert selector.text == "team=shop,env in (prod,staging),!legacy"
    assert selector.matches({"team": "shop", "env": "prod"})
    assert not selector.matches({"team": "shop", "env": "dev"})
    assert not selector.matches({"team": "shop", "env": "prod", "legacy": "1"})
