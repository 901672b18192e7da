"""Which Deployment events can change what a DatabaseMigration decides.

Every write to a Deployment is an event: the rollout alone writes its status for each pod that
is created, becomes ready or goes away, and the release and the revision annotation add more.
A reconcile costs reads of the resource, the Deployment and its pods, so reconciling the users
of a Deployment on each of them cost 13 to 15 reconciles per Deployment and rollout where two
matter (bench/bench_rollout.py), and at 200 Deployments at once the two waited behind the rest.

What the planner decides on is: the containers' images (the target and the gate hash),
`spec.paused` and the gate's annotations, confirmations included (pre_deploy), the generation,
and the phase of the rollout (post_deploy; complete, failed, paused, in progress as
`rollout.rollout_state` reads it from the Deployment's own status, whose `terminatingReplicas`
counts pods going away). An event whose state equals the last passed one of that Deployment
changes nothing decided, and is dropped. What this leaves to the revisits (a resource waiting
for a rollout is reconciled again every few seconds, lanes.py): the progress message of a
rollout in flight, and pods of a bypassed gate, which are seen at the next decisive change
(the rollout's completion is one).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from enum import Enum
from typing import Any, NamedTuple

from .gate import GATE_ANNOTATIONS, confirmations_of
from .rollout import RolloutPhase, reported_rollout


class DecisiveState(NamedTuple):
    """What of a Deployment any DatabaseMigration's decision depends on."""

    images: tuple[tuple[str, str], ...]
    paused: bool
    gate: tuple[tuple[str, str | None], ...]
    generation: object
    phase: RolloutPhase


def decisive_state(deployment: Mapping[str, Any]) -> DecisiveState:
    metadata = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    images = tuple(sorted((str(c.get("name")), str(c.get("image"))) for c in containers))
    annotations = metadata.get("annotations") or {}
    # A confirmation is decisive: the other resources gating the Deployment decide again on
    # it, and the last one whose migration succeeded releases.
    confirmations = sorted(confirmations_of(deployment).items())
    gate = (*((key, annotations.get(key)) for key in GATE_ANNOTATIONS), *confirmations)
    phase = reported_rollout(deployment).phase  # the images changing is in `images` already
    return DecisiveState(images, bool(spec.get("paused")), gate, metadata.get("generation"), phase)


class Change(Enum):
    """What a passed event did to its Deployment, as far as the decisions go."""

    ROLLOUT_ENDED = "rollout ended"  # complete or failed: post_deploy runs or stalls now
    OTHER = "other"  # a new template, a pause, the gate's annotations, a rollout under way
    DELETED = "deleted"


ENDED_PHASES = (RolloutPhase.COMPLETE, RolloutPhase.FAILED)


class DecisiveChanges:
    """The last decisive state passed on for each Deployment, in this process.

    A new operator process (a restart, another replica taking over) starts empty, so the first
    event of each Deployment passes: nothing is dropped that no process has looked at."""

    def __init__(self) -> None:
        self._passed: dict[tuple[str | None, str | None], DecisiveState] = {}
        self._guard = threading.Lock()  # the handler runs on the event loop; kept safe for threads

    def change(
        self, namespace: str | None, name: str | None, event_type: str | None, body: Any
    ) -> Change | None:
        """What this event changed, None when it changed nothing decided on."""
        key = (namespace, name)
        with self._guard:
            if event_type == "DELETED":
                self._passed.pop(key, None)
                return Change.DELETED
            state = decisive_state(body)
            previous = self._passed.get(key)
            if previous == state:
                return None
            self._passed[key] = state
        # A rollout ended when its phase became Complete or Failed, or when it was already
        # reported ended for a newer template (kopf hands over only the latest of the events
        # that arrive together, and a short rollout's may all arrive together).
        ended = state.phase in ENDED_PHASES and (
            previous is None
            or (previous.phase, previous.generation, previous.images)
            != (state.phase, state.generation, state.images)
        )
        return Change.ROLLOUT_ENDED if ended else Change.OTHER

    @property
    def tracked(self) -> int:
        """How many Deployments it remembers a state of."""
        return len(self._passed)
