"""The latest version of each followed Deployment that this process saw in its watch stream.

A reconcile that an event asked for reads its Deployment from here instead of from the API
server: the event that asked for it stored that Deployment first, so the reconcile sees at least
what made it run, as a controller reading from an informer's cache does. At 200 Deployments at
once, that read was one of the four to five requests every such reconcile made before it could
act (bench/bench_rollout.py). Writes stay guarded (the release tests the pending hash), so a
version a moment old cannot release what it should not. Revisits, and reconciles that kopf
starts for a resource itself, read the API server: nothing that asked for them refreshed this.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

ObjectKey = tuple[str, str]  # namespace, name


class LatestSeen:
    """Objects as their latest watch event delivered them; readers must not change them."""

    def __init__(self) -> None:
        self._objects: dict[ObjectKey, Mapping[str, Any]] = {}
        self._guard = threading.Lock()  # stored on kopf's loop, read from the lanes' threads

    def store(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        with self._guard:
            self._objects[(namespace, name)] = body

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._objects.pop((namespace, name), None)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._guard:
            body = self._objects.get((namespace, name))
        return dict(body) if body is not None else None

    def __len__(self) -> int:
        with self._guard:
            return len(self._objects)
