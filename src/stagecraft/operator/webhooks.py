"""Admission: reject a DatabaseMigration that reconcile would stall on as InvalidSpec, and gate
the Deployments that pre_deploy resources reference.

The validating webhook runs the very checks of `validation.py` (stagecraft.yml's models and the
engine registry), so the message a user gets from `kubectl apply` is the one the Stalled
condition would carry on a cluster without the webhook. The mutating one pauses a Deployment in
the same write that gives it a template whose migrations have not run (`gate.admission_patch`);
it only reads an in-memory index of the DatabaseMigrations, so it is dry-run safe and has no side
effects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from ..config import Strategy
from .gate import admission_patch
from .models import GROUP, PLURAL, VERSION
from .validation import validate_spec
from .warmup import Warmup

VALIDATE_HANDLER_ID = "validate-database-migration"
# Also the webhook's URL path (/gate-deployment), which the Helm chart's
# MutatingWebhookConfiguration names.
GATE_HANDLER_ID = "gate-deployment"
GATE_READY_PROBE_ID = "gate-index-complete"  # its result's key in kopf's /healthz answer
GATES_INDEX = "deployment_gates"  # kopf passes the index to handlers under this keyword
HTTP_UNPROCESSABLE = 422  # what the API server itself answers for an invalid object


# Both admission handlers are coroutines, on purpose: kopf runs plain functions on its small
# thread pool, where the reconciles' own Deployment PATCHes wait for this very webhook; with
# every thread in such a PATCH the webhook never got a thread, and the API server refused the
# writes after its timeout (bench/bench_rollout.py, 200 gated Deployments). They only compute.
async def reject_invalid_spec(spec: kopf.Spec, **_: Any) -> None:
    result = validate_spec(dict(spec))
    if not result.valid:
        raise kopf.AdmissionError(result.message, code=HTTP_UNPROCESSABLE)


GateKey = tuple[str | None, str]  # namespace, Deployment name
Gate = tuple[str, tuple[str, ...]]  # the DatabaseMigration's name, the containers it names


def index_gates(
    namespace: str | None, name: str | None, spec: Mapping[str, Any], **kwargs: Any
) -> dict[GateKey, Gate]:
    """The Deployments that pre_deploy resources gate, as the webhook must find them.

    A resource being deleted gates nothing: its finalizer releases the Deployment, and nothing
    would release a Deployment paused after that."""
    if (kwargs.get("meta") or {}).get("deletionTimestamp"):
        return {}
    migrations = spec.get("migrations") or {}
    deployment = spec.get("deployment") or {}
    strategy = (
        migrations.get("strategy", Strategy.PRE_DEPLOY.value)
        if isinstance(migrations, dict)
        else None
    )
    if strategy != Strategy.PRE_DEPLOY.value or not isinstance(deployment, dict):
        return {}
    if not deployment.get("name") or not name:
        return {}
    containers = tuple(str(container) for container in deployment.get("containers") or [])
    return {(namespace, str(deployment["name"])): (str(name), containers)}


def gate_of(index: Mapping[GateKey, Any], namespace: str | None, name: str) -> Gate | None:
    """The resource that gates a Deployment: with several pre_deploy resources on one Deployment,
    the first by name decides its gate hash (docs/decisions.md)."""
    gates: list[Gate] = sorted(set(index.get((namespace, name), [])))
    return gates[0] if gates else None


def gate_deployment(
    *,
    body: kopf.Body,
    subresource: str | None,
    userinfo: kopf.UserInfo,
    patch: kopf.Patch,
    **kwargs: Any,
) -> None:
    """Pause a gated Deployment whose template needs its migration first (see gate.py)."""
    operation: str | None = kwargs.get("operation")
    old: kopf.Body | None = kwargs.get("old")
    if subresource or operation not in ("CREATE", "UPDATE"):
        return  # /scale (kubectl scale, HPA) and /status never change the template
    metadata = body.get("metadata") or {}
    name = metadata.get("name")
    gate = gate_of(kwargs[GATES_INDEX], metadata.get("namespace"), str(name)) if name else None
    if gate is None:
        return  # no pre_deploy resource references this Deployment
    _, containers = gate
    changes = admission_patch(
        operation,
        dict(body),
        dict(old) if old is not None else None,
        containers,
        str(userinfo.get("username") or ""),
    )
    patch.update(changes)


def serving_only(
    serves: Callable[[str], bool] | None,
) -> Callable[..., Awaitable[None]]:
    """The gate for the namespaces this operator serves (`serves`; None: all). A Deployment
    elsewhere passes untouched: this operator would never release it if it paused it."""

    async def gate_served_deployment(body: kopf.Body, **kwargs: Any) -> None:
        namespace = (body.get("metadata") or {}).get("namespace") or kwargs.get("namespace")
        if serves is not None and not (namespace and serves(str(namespace))):
            return
        gate_deployment(body=body, **kwargs)

    return gate_served_deployment


def register_webhooks(
    registry: kopf.OperatorRegistry,
    serves: Callable[[str], bool] | None = None,
    warmup: Warmup | None = None,
) -> None:
    """`serves`: whether this operator serves a namespace (None: every namespace); `warmup`:
    when the gate's index is complete (warmup.py; None: from the start)."""
    kopf.on.validate(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id=VALIDATE_HANDLER_ID,
        operations=["CREATE", "UPDATE"],
    )(reject_invalid_spec)

    async def index_gates_on_the_loop(**kwargs: Any) -> dict[GateKey, Gate]:
        """A coroutine: kopf runs plain functions on its thread pool, where each of a
        resource's events would wait behind the reconciles for a pure computation."""
        return index_gates(**kwargs)

    kopf.index(GROUP, VERSION, PLURAL, registry=registry, id=GATES_INDEX)(index_gates_on_the_loop)
    if warmup is not None:

        async def gate_index_is_complete(**_: Any) -> bool:
            """kopf's /healthz fails (the chart's readiness probe) until the gate can decide."""
            if not warmup.warm:
                raise kopf.PermanentError("the index of DatabaseMigrations is still loading")
            return True

        kopf.on.probe(registry=registry, id=GATE_READY_PROBE_ID)(gate_index_is_complete)
    kopf.on.mutate(
        "apps",
        "v1",
        "deployments",
        registry=registry,
        id=GATE_HANDLER_ID,
        operations=["CREATE", "UPDATE"],
        side_effects=False,
    )(serving_only(serves))
