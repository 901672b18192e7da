"""The webhook configurations reach kopf's webhook server where its handlers answer, for the
objects they are meant for, over TLS that the API server can verify."""

from __future__ import annotations

import base64
import ssl
import tempfile
from pathlib import Path
from typing import Any, cast

import pytest

from stagecraft.operator import webhooks
from stagecraft.operator.main import build_registry
from stagecraft.operator.reconcile import Reconciler

from .rendering import COMBINATIONS, NAMESPACE, Rendered, render

KINDS = {"validating": "ValidatingWebhookConfiguration", "mutating": "MutatingWebhookConfiguration"}


def _handlers() -> dict[str, Any]:
    """kopf's admission handlers of the operator, by id."""
    registry = build_registry(cast(Reconciler, object()), resync_seconds=5.0)
    # kopf's registries are private; its own webhook-configuration builder reads them this way.
    return {str(handler.id): handler for handler in registry._webhooks.get_all_handlers()}


def _webhooks(rendered: Rendered, kind: str) -> list[dict[str, Any]]:
    return [hook for config in rendered.of_kind(kind) for hook in config["webhooks"]]


def test_each_webhook_path_is_its_kopf_handler_id() -> None:
    # kopf serves POST /<handler id> (kopf/_kits/webhooks.py) and routes by that id.
    rendered = render()
    handlers = _handlers()
    for reason, kind in KINDS.items():
        ids = {hid for hid, handler in handlers.items() if handler.reason.value == reason}
        paths = {hook["clientConfig"]["service"]["path"] for hook in _webhooks(rendered, kind)}
        assert paths == {f"/{hid}" for hid in ids}, kind
    assert {webhooks.VALIDATE_HANDLER_ID, webhooks.GATE_HANDLER_ID} <= set(handlers)


def test_each_webhook_matches_the_resources_and_operations_of_its_handler() -> None:
    handlers = _handlers()
    for kind in KINDS.values():
        for hook in _webhooks(render(), kind):
            handler = handlers[hook["clientConfig"]["service"]["path"].removeprefix("/")]
            (rule,) = hook["rules"]
            selector = handler.selector
            assert rule["apiGroups"] == [selector.group]
            assert rule["apiVersions"] == [selector.version]
            assert rule["resources"] == [selector.plural or selector.any_name]
            assert sorted(rule["operations"]) == sorted(handler.operations)


def test_webhooks_call_the_operator_service_on_its_webhook_port() -> None:
    rendered = render()
    service = rendered.one("Service", "stagecraft-webhook")
    (port,) = service["spec"]["ports"]
    container = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port["targetPort"] == "webhook"
    assert str(ports["webhook"]) == rendered.environment()["STAGECRAFT_WEBHOOK_PORT"]
    for kind in KINDS.values():
        for hook in _webhooks(rendered, kind):
            reference = hook["clientConfig"]["service"]
            assert (reference["name"], reference["namespace"]) == ("stagecraft-webhook", NAMESPACE)
            assert reference["port"] == port["port"]
            assert hook["sideEffects"] == "None"
            assert hook["admissionReviewVersions"] == ["v1"]
            assert 1 <= hook["timeoutSeconds"] <= 30


def test_webhooks_never_see_the_operators_namespace_nor_kube_system() -> None:
    for combination, values in COMBINATIONS.items():
        rendered = render(values)
        for kind in KINDS.values():
            for hook in _webhooks(rendered, kind):
                expressions = hook["namespaceSelector"]["matchExpressions"]
                excluded = next(e for e in expressions if e["operator"] == "NotIn")
                assert excluded["key"] == "kubernetes.io/metadata.name"
                assert {NAMESPACE, "kube-system"} <= set(excluded["values"]), combination
                included = [
                    e
                    for e in expressions
                    if e["operator"] == "In" and e["key"] == "kubernetes.io/metadata.name"
                ]
                if values.get("watchNamespaces"):
                    assert included[0]["values"] == values["watchNamespaces"], combination
                else:
                    assert included == [], combination


def test_the_gate_fails_closed_and_sees_only_opted_in_deployments() -> None:
    (gate,) = _webhooks(render(), "MutatingWebhookConfiguration")
    assert gate["failurePolicy"] == "Fail"
    assert gate["objectSelector"] == {"matchLabels": {"stagecraft.dev/gate": "enabled"}}
    assert gate["rules"][0]["operations"] == ["CREATE", "UPDATE"]

    relabelled = render(
        {"webhooks": {"gate": {"optInLabel": {"key": "example.com/migrate", "value": "yes"}}}}
    )
    (gate,) = _webhooks(relabelled, "MutatingWebhookConfiguration")
    assert gate["objectSelector"] == {"matchLabels": {"example.com/migrate": "yes"}}
    (gate,) = _webhooks(render(COMBINATIONS["gate-ignore-no-validation"]), KINDS["mutating"])
    assert gate["failurePolicy"] == "Ignore"


def test_validation_is_ignored_when_the_operator_is_down_because_reconcile_repeats_it() -> None:
    (validate,) = _webhooks(render(), "ValidatingWebhookConfiguration")
    assert validate["failurePolicy"] == "Ignore"


def test_without_webhooks_the_operator_gets_no_certificate_and_runs_no_webhook_server() -> None:
    rendered = render(COMBINATIONS["webhooks-off"])
    assert "STAGECRAFT_WEBHOOK_CERT" not in rendered.environment()
    volumes = rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    assert [volume["name"] for volume in volumes] == ["tmp"]


def _handshake(ca: bytes, certificate: bytes, key: bytes, hostname: str) -> None:
    """A TLS handshake in memory: the API server's side trusts only the caBundle."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "tls.crt").write_bytes(certificate)
        Path(folder, "tls.key").write_bytes(key)
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(Path(folder, "tls.crt"), Path(folder, "tls.key"))
    client_context = ssl.create_default_context(cadata=ca.decode())
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    client = client_context.wrap_bio(pipes[0], pipes[1], server_hostname=hostname)
    server = server_context.wrap_bio(pipes[2], pipes[3], server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side in (("client", client), ("server", server)):
            if done[name]:
                continue
            try:
                side.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
        pipes[2].write(pipes[1].read())
        pipes[0].write(pipes[3].read())
        if all(done.values()):
            return
    raise AssertionError("the TLS handshake did not finish")


def test_the_generated_certificate_is_trusted_through_the_ca_bundle() -> None:
    rendered = render()
    secret = rendered.one("Secret")
    volumes = rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "webhook-tls",
        "secret": {"secretName": secret["metadata"]["name"], "defaultMode": 0o440},
    } in volumes
    data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    for kind in KINDS.values():
        for hook in _webhooks(rendered, kind):
            assert base64.b64decode(hook["clientConfig"]["caBundle"]) == data["ca.crt"]
    # The API server calls <service>.<namespace>.svc.
    _handshake(
        data["ca.crt"], data["tls.crt"], data["tls.key"], f"stagecraft-webhook.{NAMESPACE}.svc"
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(
            data["ca.crt"], data["tls.crt"], data["tls.key"], "stagecraft-webhook.elsewhere.svc"
        )


@pytest.mark.parametrize("combination", ["cert-manager", "cert-manager-cluster-issuer"])
def test_cert_manager_issues_the_mounted_secret_and_injects_its_ca(combination: str) -> None:
    rendered = render(COMBINATIONS[combination])
    certificate = rendered.one("Certificate")
    name = certificate["metadata"]["name"]
    assert f"stagecraft-webhook.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    volumes = rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    (tls,) = [volume for volume in volumes if volume["name"] == "webhook-tls"]
    assert tls["secret"]["secretName"] == certificate["spec"]["secretName"]
    for kind in KINDS.values():
        (config,) = rendered.of_kind(kind)
        annotations = config["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{name}"
        assert all("caBundle" not in hook["clientConfig"] for hook in config["webhooks"])
    issuer = certificate["spec"]["issuerRef"]
    if combination == "cert-manager":
        assert rendered.one("Issuer")["metadata"]["name"] == issuer["name"]
    else:
        assert issuer == {"kind": "ClusterIssuer", "name": "internal-ca"}


def test_a_structured_namespace_selector_is_the_webhooks_namespace_selector_too() -> None:
    values = COMBINATIONS["namespace-label-selector"]
    selector = values["namespaceLabelSelector"]
    rendered = render(values)
    for kind in KINDS.values():
        for hook in _webhooks(rendered, kind):
            chosen = hook["namespaceSelector"]
            assert chosen["matchLabels"] == selector["matchLabels"]
            assert chosen["matchExpressions"][-2:] == selector["matchExpressions"]
