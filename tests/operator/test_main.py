"""The operator process reads its settings from the environment and refuses incomplete ones."""

from __future__ import annotations

import pytest

from stagecraft.operator.main import (
    OperatorConfigError,
    operator_settings,
    options_from_environment,
    reconciler_settings,
)


def test_only_the_runner_image_is_required() -> None:
    options = options_from_environment({"STAGECRAFT_RUNNER_IMAGE": "stagecraft:0.1.0"})
    assert options.runner_image == "stagecraft:0.1.0"
    assert options.namespaces == ()
    assert options.peering_name is None
    assert options.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert options.webhook_port == 9443
    assert options.metrics_port == 8081


def test_missing_runner_image_names_the_variable() -> None:
    with pytest.raises(OperatorConfigError, match="STAGECRAFT_RUNNER_IMAGE"):
        options_from_environment({})


def test_namespaces_are_a_comma_separated_list() -> None:
    options = options_from_environment(
        {"STAGECRAFT_RUNNER_IMAGE": "s", "STAGECRAFT_NAMESPACES": " shop, billing ,,team-*"}
    )
    assert options.namespaces == ("shop", "billing", "team-*")


def test_retry_policy_and_lock_timeout_come_from_the_environment() -> None:
    options = options_from_environment(
        {
            "STAGECRAFT_RUNNER_IMAGE": "s",
            "STAGECRAFT_RETRY_FIRST_DELAY": "5",
            "STAGECRAFT_RETRY_MAX_DELAY": "120",
            "STAGECRAFT_RETRY_LIMIT": "3",
            "STAGECRAFT_LOCK_TIMEOUT": "30",
        }
    )
    settings = reconciler_settings(options)
    assert (settings.retry.first_delay_seconds, settings.retry.max_delay_seconds) == (5.0, 120.0)
    assert settings.retry.max_attempts == 3
    assert settings.runner.lock_timeout_seconds == 30.0


def test_a_number_that_is_not_one_names_the_variable() -> None:
    with pytest.raises(OperatorConfigError, match="STAGECRAFT_RETRY_LIMIT must be a number"):
        options_from_environment({"STAGECRAFT_RUNNER_IMAGE": "s", "STAGECRAFT_RETRY_LIMIT": "x"})


def test_peering_name_turns_on_peering() -> None:
    options = options_from_environment(
        {"STAGECRAFT_RUNNER_IMAGE": "s", "STAGECRAFT_PEERING": "stagecraft"}
    )
    assert options.peering_name == "stagecraft"
    assert operator_settings(options).peering.name == "stagecraft"


def test_replicas_never_tie_on_peering_priority() -> None:
    """kopf pauses every operator that sees a live peer of its own priority: replicas that all
    kept the default would all stand still."""
    options = options_from_environment(
        {"STAGECRAFT_RUNNER_IMAGE": "s", "STAGECRAFT_PEERING": "stagecraft"}
    )

    priorities = {operator_settings(options).peering.priority for _ in range(20)}

    assert len(priorities) == 20
    assert all(priority > 0 for priority in priorities)


def test_a_peering_priority_can_be_set() -> None:
    options = options_from_environment(
        {
            "STAGECRAFT_RUNNER_IMAGE": "s",
            "STAGECRAFT_PEERING": "stagecraft",
            "STAGECRAFT_PEERING_PRIORITY": "100",
        }
    )

    assert operator_settings(options).peering.priority == 100


def test_webhook_server_uses_the_configured_port_and_certificate() -> None:
    options = options_from_environment(
        {
            "STAGECRAFT_RUNNER_IMAGE": "s",
            "STAGECRAFT_WEBHOOK_PORT": "8443",
            "STAGECRAFT_WEBHOOK_CERT": "/tls/tls.crt",
            "STAGECRAFT_WEBHOOK_KEY": "/tls/tls.key",
        }
    )
    server = operator_settings(options).admission.server
    assert server is not None
    assert getattr(server, "port", None) == 8443
    assert getattr(server, "certfile", None) == "/tls/tls.crt"
    assert getattr(server, "pkeyfile", None) == "/tls/tls.key"


def test_no_webhook_server_without_a_certificate() -> None:
    options = options_from_environment({"STAGECRAFT_RUNNER_IMAGE": "s"})
    assert operator_settings(options).admission.server is None


def test_namespace_selector_comes_from_the_environment() -> None:
    options = options_from_environment(
        {"STAGECRAFT_RUNNER_IMAGE": "s", "STAGECRAFT_NAMESPACE_SELECTOR": "team=shop"}
    )
    assert options.namespace_selector is not None
    assert options.namespace_selector.matches({"team": "shop"})
    assert options_from_environment({"STAGECRAFT_RUNNER_IMAGE": "s"}).namespace_selector is None


def test_a_selector_that_does_not_parse_names_the_variable() -> None:
    with pytest.raises(OperatorConfigError, match=r"STAGECRAFT_NAMESPACE_SELECTOR: .*'team in'"):
        options_from_environment(
            {"STAGECRAFT_RUNNER_IMAGE": "s", "STAGECRAFT_NAMESPACE_SELECTOR": "team in"}
        )
