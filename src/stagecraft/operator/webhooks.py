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

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from .gate import Gate, Gates, admission_patch
from .gate_index import MIGRATIONS_INDEX, GateKey, gates_of, index_gates
from .models import GROUP, PLURAL, VERSION
from .validation import validate_spec
from .warmup import Warmup

VALIDATE_HANDLER_ID = "validate-database-migration"
# Also the webhook's URL path (/gate-deployment), which the Helm chart's
# MutatingWebhookConfiguration names.
GATE_HANDLER_ID = "gate-deployment"
GATE_READY_PROBE_ID = "gate-index-complete"  # its result's key in kopf's /healthz answer
HTTP_UNPROCESSABLE = 422  # what the API server itself answers for an invalid object
HTTP_UNAVAILABLE = 503


# Both admission handlers are coroutines, on purpose: kopf runs plain functions on its small
# thread pool, where the reconciles' own Deployment PATCHes wait for this very webhook; with
# every thread in such a PATCH the webhook never got a thread, and the API server refused the
# writes after its timeout (bench/bench_rollout.py, 200 gated Deployments). They only compute.
async def reject_invalid_spec(spec: kopf.Spec, **_: Any) -> None:
    result = validate_spec(dict(spec))
    if not result.valid:
        raise kopf.AdmissionError(result.message, code=HTTP_UNPROCESSABLE)


def gate_deployment(
    *,
    body: kopf.Body,
    userinfo: kopf.UserInfo,
    patch: kopf.Patch,
    gates: Gates,
    **kwargs: Any,
) -> None:
    """Pause a gated Deployment whose template needs its migration first (see gate.py)."""
    operation: str = kwargs.get("operation") or ""
    old: kopf.Body | None = kwargs.get("old")
    changes = admission_patch(
        operation,
        dict(body),
        dict(old) if old is not None else None,
        gates,
        str(userinfo.get("username") or ""),
    )
    patch.update(changes)


# Reads the pre_deploy resources of a namespace from the API server: namespace -> their specs'
# gates, as index_gates computes them.
GateLookup = Callable[[str], Awaitable[Mapping[GateKey, list[Gate]]]]


def serving_only(
    serves: Callable[[str], bool] | None, lookup: GateLookup | None = None
) -> Callable[..., Awaitable[None]]:
    """The gate for the namespaces this operator serves (`serves`; None: all). A Deployment
    elsewhere passes untouched: this operator would never release it if it paused it.

    The in-memory index decides; when it has no gate for the Deployment, `lookup` reads the
    namespace's DatabaseMigrations from the API server before letting it pass. The index can
    miss one: kopf pauses a replica that another outranks on peering, watching and listing
    nothing, and every replica serves the webhook (the chart's objectSelector sends only
    opted-in Deployments, so this read is rare). A lookup that fails refuses the write, which
    the API server reports and a person or GitOps tool retries: the gate fails closed."""

    async def gate_served_deployment(body: kopf.Body, **kwargs: Any) -> None:
        metadata = body.get("metadata") or {}
        namespace = metadata.get("namespace") or kwargs.get("namespace")
        if serves is not None and not (namespace and serves(str(namespace))):
            return
        operation = kwargs.get("operation")
        if kwargs.get("subresource") or operation not in ("CREATE", "UPDATE"):
            return  # /scale (kubectl scale, HPA) and /status never change the template
        name = metadata.get("name")
        if not name:
            return
        gates = gates_of(kwargs[MIGRATIONS_INDEX], namespace, str(name))
        if not gates.members and lookup is not None and namespace:
            gates = gates_of(await _looked_up(lookup, str(namespace)), namespace, str(name))
        if not gates.members:
            return  # no pre_deploy resource references this Deployment
        gate_deployment(body=body, gates=gates, **kwargs)

    return gate_served_deployment


def gates_read_with(
    list_resources: Callable[[str], list[dict[str, Any]]],
) -> GateLookup:
    """A GateLookup over a blocking read of a namespace's DatabaseMigrations, run on a thread of
    its own (never kopf's pool: see the note on the admission handlers above)."""

    async def lookup(namespace: str) -> Mapping[GateKey, list[Gate]]:
        resources = await asyncio.to_thread(list_resources, namespace)
        gates: dict[GateKey, list[Gate]] = {}
        for resource in resources:
            metadata = resource.get("metadata") or {}
            name = metadata.get("name")
            spec = resource.get("spec") or {}
            for key, gate in index_gates(namespace, name, spec, meta=metadata).items():
                gates.setdefault(key, []).append(gate)
        return gates

    return lookup


async def _looked_up(lookup: GateLookup, namespace: str) -> Mapping[GateKey, list[Gate]]:
    try:
        return await lookup(namespace)
    except Exception as error:
        message = (
            f"the Stagecraft gate could not read the DatabaseMigrations of namespace {namespace} "
            f"to decide whether this Deployment waits for its migrations ({error}); try again"
        )
        raise kopf.AdmissionError(message, code=HTTP_UNAVAILABLE) from error


def register_webhooks(
    registry: kopf.OperatorRegistry,
    serves: Callable[[str], bool] | None = None,
    warmup: Warmup | None = None,
    lookup: GateLookup | None = None,
) -> None:
    """`serves`: whether this operator serves a namespace (None: every namespace); `warmup`:
    when the gate's index is complete (warmup.py; None: from the start); `lookup`: the gates of
    a namespace read from the API server, for a Deployment the index has none for."""
    kopf.on.validate(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id=VALIDATE_HANDLER_ID,
        operations=["CREATE", "UPDATE"],
    )(reject_invalid_spec)

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
    )(serving_only(serves, lookup))
