"""bench/async_webhook_operator.py's operator with two more changes that issue 5's benchmark
proposes, to measure them without changing src/: the users of a Deployment are reconciled only
when something they decide on changed, and a Job's events only once it has finished.

- `deployment` event handler: a Deployment's event reaches its resources only when its
  containers' images, `spec.paused`, the gate's annotations, its generation or the phase of its
  rollout (complete, failed, paused, in progress, read from the event's own status as
  `rollout.rollout_state` reads it) differ from the last event of it that did, or when it is
  deleted. The rollout's intermediate status writes (a pod created, ready, gone) no longer cost a
  reconcile each; the resource's message about the rollout's progress follows at the resync
  timer's pace instead, and a bypassed gate (pods of an unmigrated template) is seen at the next
  decisive change or timer.
- `job` event handler: `when=` the Job has a Complete or Failed condition (the `ADDED` of a Job
  the operator has just created, and its start, have nothing to record).

The handlers are the operator's own, found in the registry by id and wrapped (kopf's handler
records are frozen dataclasses, replaced in place in its registry's list).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Hashable
from typing import Any

import kopf

from bench.async_webhook_operator import build_registry as build_registry_with_async_webhooks
from stagecraft.operator import main
from stagecraft.operator.gate import GATE_ANNOTATIONS, deployment_gate_hash
from stagecraft.operator.reconcile import Reconciler
from stagecraft.operator.rollout import rollout_state


def decisive_state(body: Any) -> Hashable:
    """What of a Deployment a DatabaseMigration decides on."""
    metadata, spec = body.get("metadata") or {}, body.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    images = tuple(sorted((str(c.get("name")), str(c.get("image"))) for c in containers))
    annotations = metadata.get("annotations") or {}
    gate = tuple((key, annotations.get(key)) for key in GATE_ANNOTATIONS)
    current = deployment_gate_hash(body, [])
    phase = rollout_state(body, (), gate_hash=current, current_hash=current).phase
    return images, bool(spec.get("paused")), gate, metadata.get("generation"), phase


def on_decisive_changes(handler: Callable[..., Any]) -> Callable[..., Any]:
    seen: dict[tuple[str | None, str | None], Hashable] = {}

    def filtered(**kwargs: Any) -> Any:
        key = (kwargs.get("namespace"), kwargs.get("name"))
        state = decisive_state(kwargs["body"])
        if kwargs.get("type") != "DELETED" and seen.get(key) == state:
            return None
        seen[key] = state
        return handler(**kwargs)

    return filtered


def has_finished(body: Any, **_: Any) -> bool:
    return any(
        condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True"
        for condition in (body.get("status") or {}).get("conditions") or []
    )


def build_registry(
    reconciler: Reconciler, *, resync_seconds: float, webhooks: bool = True
) -> kopf.OperatorRegistry:
    registry = build_registry_with_async_webhooks(
        reconciler, resync_seconds=resync_seconds, webhooks=webhooks
    )
    handlers = registry._watching._handlers
    for index, handler in enumerate(handlers):
        if handler.id == "deployment":
            handlers[index] = dataclasses.replace(handler, fn=on_decisive_changes(handler.fn))
        elif handler.id == "job":
            handlers[index] = dataclasses.replace(handler, when=has_finished)
    return registry


if __name__ == "__main__":
    main.build_registry = build_registry  # what run_operator builds its registry with
    main.run_operator(main.options_from_environment(os.environ))
