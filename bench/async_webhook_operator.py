"""Stagecraft's operator exactly as `python -m stagecraft.operator` runs it, with the one change
that issue 5's benchmark proposes: its admission handlers are coroutines.

kopf runs a plain function handler on its thread pool (min(32, cores + 4) threads) and a
coroutine on its event loop. The gate's release is a PATCH of the Deployment made from a
reconcile on that pool, and the API server calls the gate webhook before it answers the PATCH;
when every thread is in such a PATCH, the webhook's answer waits for a thread that none of them
will free, until the API server gives up on the webhook (10 s) and refuses the write. As
coroutines, the webhooks (which only compute, from an in-memory index) never wait for a thread.
bench_rollout.py runs this with `--operator async-webhooks`, to measure the fix without
changing src/ while the gate is still being worked on.
"""

from __future__ import annotations

import os
from typing import Any

import kopf

from stagecraft.operator import main
from stagecraft.operator import webhooks as stagecraft_webhooks
from stagecraft.operator.handlers import register_handlers
from stagecraft.operator.models import GROUP, PLURAL, VERSION
from stagecraft.operator.reconcile import Reconciler


async def reject_invalid_spec(**kwargs: Any) -> None:
    await stagecraft_webhooks.reject_invalid_spec(**kwargs)


async def gate_deployment(**kwargs: Any) -> None:
    stagecraft_webhooks.gate_deployment(**kwargs)


def register_webhooks(registry: kopf.OperatorRegistry) -> None:
    """As stagecraft.operator.webhooks.register_webhooks, with the same handlers awaited."""
    kopf.on.validate(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id=stagecraft_webhooks.VALIDATE_HANDLER_ID,
        operations=["CREATE", "UPDATE"],
    )(reject_invalid_spec)
    kopf.index(GROUP, VERSION, PLURAL, registry=registry, id=stagecraft_webhooks.GATES_INDEX)(
        stagecraft_webhooks.index_gates
    )
    kopf.on.mutate(
        "apps",
        "v1",
        "deployments",
        registry=registry,
        id=stagecraft_webhooks.GATE_HANDLER_ID,
        operations=["CREATE", "UPDATE"],
        side_effects=False,
    )(gate_deployment)


def build_registry(
    reconciler: Reconciler, *, resync_seconds: float, webhooks: bool = True
) -> kopf.OperatorRegistry:
    """As stagecraft.operator.main.build_registry, with the webhooks above."""
    registry = kopf.OperatorRegistry()
    register_handlers(registry, reconciler, resync_seconds=resync_seconds)
    if webhooks:
        register_webhooks(registry)
    return registry


if __name__ == "__main__":
    main.build_registry = build_registry  # what run_operator builds its registry with
    main.run_operator(main.options_from_environment(os.environ))
