"""The operator process: settings from the environment, the registry, and kopf's run loop.

`python -m stagecraft.operator` runs it (the image's entry point; `stagecraft operator` in the
CLI can call `run_operator` the same way). Everything is configured by environment variables so
that the Helm chart sets it in one place:

  STAGECRAFT_RUNNER_IMAGE     the Stagecraft image the migration Jobs run (required)
  STAGECRAFT_NAMESPACES       comma-separated namespaces or globs to serve; empty: all
  STAGECRAFT_NAMESPACE_SELECTOR  a label selector (`team=shop,env in (prod)`): serve only the
                              namespaces whose labels match (within STAGECRAFT_NAMESPACES)
  STAGECRAFT_PEERING          a peering name to run several replicas (one active); empty:
                              standalone
  STAGECRAFT_PEERING_PRIORITY this replica's peering priority (the highest works); default:
                              random, so that replicas never tie (kopf pauses all on a tie)
  STAGECRAFT_LIVENESS         kopf's liveness endpoint, default http://0.0.0.0:8080/healthz
  STAGECRAFT_WEBHOOK_PORT     port of the admission webhook server (HTTPS), default 9443
  STAGECRAFT_WEBHOOK_CERT / STAGECRAFT_WEBHOOK_KEY   its certificate and key files; without
                              them no webhook server runs
  STAGECRAFT_METRICS_PORT     port of the Prometheus /metrics endpoint, default 8081; 0: none
  STAGECRAFT_LOCK_TIMEOUT     seconds a Job waits for another runner's lock, default 60
  STAGECRAFT_RETRY_FIRST_DELAY / STAGECRAFT_RETRY_MAX_DELAY / STAGECRAFT_RETRY_LIMIT
                              automatic retries after transient failures (10 s, 600 s, 8)
"""

from __future__ import annotations

import asyncio
import gc
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from .handlers import register_handlers
from .kube import KubeApi
from .manifests import RunnerSettings
from .metrics import OperatorMetrics, serve_metrics
from .models import GROUP, PLURAL, VERSION
from .persistence import DatabaseMigrationDiffBase
from .planner import RetryPolicy
from .reconcile import Reconciler, ReconcilerSettings
from .scoping import (
    LabelSelector,
    NamespaceScope,
    ScopedReconciler,
    SelectorError,
    parse_selector,
)
from .warmup import Warmup
from .webhooks import gates_read_with, register_webhooks

DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"
MAX_PEERING_PRIORITY = 2**31 - 2  # kopf stores priorities as Kubernetes integers (int32)
DEFAULT_WEBHOOK_PORT = 9443
DEFAULT_METRICS_PORT = 8081


class OperatorConfigError(ValueError):
    """The operator's environment is incomplete or wrong; the message names the variable."""


@dataclass(frozen=True)
class OperatorOptions:
    runner_image: str
    namespaces: tuple[str, ...] = ()  # empty: the whole cluster
    namespace_selector: LabelSelector | None = None  # None: every namespace served
    peering_name: str | None = None  # None: standalone, a single replica
    peering_priority: int | None = None  # None: a random one per replica (see peering_priority)
    liveness_endpoint: str | None = DEFAULT_LIVENESS
    webhook_port: int = DEFAULT_WEBHOOK_PORT
    webhook_cert: str | None = None
    webhook_key: str | None = None
    metrics_port: int = DEFAULT_METRICS_PORT  # 0: no metrics endpoint
    lock_timeout_seconds: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def _number(environment: Mapping[str, str], name: str, default: float) -> float:
    text = environment.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise OperatorConfigError(f"{name} must be a number, got {text!r}") from None
    if value < 0:
        raise OperatorConfigError(f"{name} must not be negative, got {text!r}")
    return value


def options_from_environment(environment: Mapping[str, str]) -> OperatorOptions:
    image = environment.get("STAGECRAFT_RUNNER_IMAGE", "").strip()
    if not image:
        raise OperatorConfigError(
            "STAGECRAFT_RUNNER_IMAGE is not set: name the Stagecraft image the migration Jobs run"
        )
    namespaces = tuple(
        part.strip() for part in environment.get("STAGECRAFT_NAMESPACES", "").split(",")
    )
    selector_text = environment.get("STAGECRAFT_NAMESPACE_SELECTOR", "").strip()
    try:
        selector = parse_selector(selector_text) if selector_text else None
    except SelectorError as error:
        raise OperatorConfigError(f"STAGECRAFT_NAMESPACE_SELECTOR: {error}") from None
    retry = RetryPolicy(
        first_delay_seconds=_number(environment, "STAGECRAFT_RETRY_FIRST_DELAY", 10.0),
        max_delay_seconds=_number(environment, "STAGECRAFT_RETRY_MAX_DELAY", 600.0),
        max_attempts=int(_number(environment, "STAGECRAFT_RETRY_LIMIT", 8)),
    )
    return OperatorOptions(
        runner_image=image,
        namespaces=tuple(namespace for namespace in namespaces if namespace),
        namespace_selector=selector,
        peering_name=environment.get("STAGECRAFT_PEERING", "").strip() or None,
        peering_priority=int(_number(environment, "STAGECRAFT_PEERING_PRIORITY", 0)) or None,
        liveness_endpoint=environment.get("STAGECRAFT_LIVENESS", DEFAULT_LIVENESS).strip() or None,
        webhook_port=int(_number(environment, "STAGECRAFT_WEBHOOK_PORT", DEFAULT_WEBHOOK_PORT)),
        webhook_cert=environment.get("STAGECRAFT_WEBHOOK_CERT") or None,
        webhook_key=environment.get("STAGECRAFT_WEBHOOK_KEY") or None,
        metrics_port=int(_number(environment, "STAGECRAFT_METRICS_PORT", DEFAULT_METRICS_PORT)),
        lock_timeout_seconds=_number(environment, "STAGECRAFT_LOCK_TIMEOUT", 60.0),
        retry=retry,
    )


def reconciler_settings(options: OperatorOptions) -> ReconcilerSettings:
    runner = RunnerSettings(
        image=options.runner_image, lock_timeout_seconds=options.lock_timeout_seconds
    )
    return ReconcilerSettings(runner=runner, retry=options.retry)


def build_registry(
    reconciler: Reconciler,
    *,
    resync_seconds: float,
    webhooks: bool = True,
    warmup: Warmup | None = None,
    peered: bool = True,
) -> kopf.OperatorRegistry:
    """Every handler and webhook of the operator, on a registry of its own. kopf refuses to run
    admission handlers without a webhook server, so `webhooks=False` leaves them out.

    `peered`: kopf's peering may pause this replica, whose index then misses resources while
    it still serves the webhook; so for a Deployment the index has no gate for, the gate reads
    the namespace's DatabaseMigrations from the API server first. A standalone operator is
    never paused and its index, complete once warm (warmup.py), is the truth: it skips the read.

    The gate webhook pauses Deployments only in namespaces the operator serves, since nothing
    would release one elsewhere: a ScopedReconciler's selector is checked in the webhook, and
    with STAGECRAFT_NAMESPACES kopf indexes only the DatabaseMigrations of the listed
    namespaces, so a Deployment elsewhere has no gate to find."""
    registry = kopf.OperatorRegistry()
    warm = warmup if warmup is not None else Warmup()
    register_handlers(registry, reconciler, warm=warm, resync_seconds=resync_seconds)
    if webhooks:
        scope = reconciler.scope if isinstance(reconciler, ScopedReconciler) else None

        def list_resources(namespace: str) -> list[dict[str, Any]]:
            # Looked up when called: a registry is also built with a placeholder (tests/chart).
            return reconciler.cluster.database_migrations(namespace)

        serves = scope.admits if scope is not None else None
        lookup = gates_read_with(list_resources) if peered else None
        register_webhooks(registry, serves, warm, lookup)
    return registry


def base_settings() -> kopf.OperatorSettings:
    """kopf's settings that every operator of Stagecraft runs with, the tests' included."""
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # the reconciler posts its own Events, with its own reasons
    settings.persistence.diffbase_storage = DatabaseMigrationDiffBase()
    return settings


def operator_settings(options: OperatorOptions) -> kopf.OperatorSettings:
    settings = base_settings()
    # Without a certificate there is no webhook server: the API server only calls webhooks over
    # TLS, and reconcile still stalls an invalid resource with the same message.
    if options.webhook_cert and options.webhook_key:
        settings.admission.server = kopf.WebhookServer(
            port=options.webhook_port, certfile=options.webhook_cert, pkeyfile=options.webhook_key
        )
    if options.peering_name:
        settings.peering.name = options.peering_name
        settings.peering.priority = options.peering_priority or peering_priority()
    return settings


def peering_priority() -> int:
    """A priority of this replica's own: kopf pauses *every* operator that sees a live peer of
    the same priority, so replicas that all kept kopf's default (0) would all stand still. The
    highest priority works; the others take over when its peering record expires."""
    return secrets.randbelow(MAX_PEERING_PRIORITY) + 1


RESOURCES_BY_NAMESPACE = "resources_by_namespace"  # a kopf index, passed to handlers by this name


def register_namespace_scope(
    registry: kopf.OperatorRegistry, scope: NamespaceScope, reconciler: Reconciler
) -> None:
    """Feed the scope from a watch of Namespaces; a namespace that comes into scope has the
    resources already in it reconciled (they were skipped while it was out of scope or unseen)."""

    def index_by_namespace(namespace: str | None, name: str | None, **_: Any) -> Any:
        return {namespace: name}

    kopf.index(GROUP, VERSION, PLURAL, registry=registry, id=RESOURCES_BY_NAMESPACE)(
        index_by_namespace
    )

    def follow_namespace(
        name: str | None, body: kopf.Body, type: str | None, **kwargs: Any
    ) -> None:
        labels = None if type == "DELETED" else dict(body.metadata.labels)
        if name and scope.observe(name, labels):
            index: kopf.Index[str | None, str] = kwargs[RESOURCES_BY_NAMESPACE]
            for resource in set(index.get(name, [])):
                reconciler.reconcile(name, resource)

    kopf.on.event("", "v1", "namespaces", registry=registry, id="namespace-scope")(follow_namespace)


def run_operator(options: OperatorOptions) -> None:
    api = KubeApi.from_environment()
    metrics = OperatorMetrics()
    if options.metrics_port:
        serve_metrics(metrics, "0.0.0.0", options.metrics_port)  # noqa: S104 - scraped in-cluster
    settings = reconciler_settings(options)
    kopf_settings = operator_settings(options)
    scope = NamespaceScope(options.namespace_selector) if options.namespace_selector else None
    reconciler = (
        ScopedReconciler(scope, api, settings, metrics=metrics)
        if scope
        else Reconciler(api, settings, metrics=metrics)
    )
    webhooks = kopf_settings.admission.server is not None
    peered = options.peering_name is not None
    registry = build_registry(reconciler, resync_seconds=5.0, webhooks=webhooks, peered=peered)
    if scope:
        register_namespace_scope(registry, scope, reconciler)
    # kopf's own login handlers read the same in-cluster account or kubeconfig as KubeApi.
    kopf.on.login(registry=registry, id="login")(kopf.login_via_client)
    # What exists now (the modules of kopf, the kubernetes client and pydantic, about 165,000
    # objects) lives as long as the process: out of the collector's sight, a full collection
    # walks only what came after, 7-19 ms instead of 110-140 ms that stopped every handler and
    # reconcile at once (at 200 Deployments at once, bench/bench_rollout.py).
    gc.collect()
    gc.freeze()
    asyncio.run(
        kopf.operator(
            registry=registry,
            settings=kopf_settings,
            standalone=options.peering_name is None,
            peering_name=options.peering_name,
            liveness_endpoint=options.liveness_endpoint,
            clusterwide=not options.namespaces,
            namespaces=options.namespaces,
        )
    )
