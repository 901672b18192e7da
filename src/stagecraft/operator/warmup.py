"""When the operator may answer the gate webhook: once kopf has indexed every DatabaseMigration.

kopf serves admission requests from its start, before the index of pre_deploy resources that
the gate webhook decides from is filled, so a Deployment written in that moment passed ungated
(docs/decisions.md). kopf runs no resource handler before every index is filled: the first
handler that runs marks the operator warm, and until then a probe handler fails kopf's /healthz,
which the chart's readiness probe reads. A pod that is not ready is not among its Service's
endpoints, so the API server refuses opted-in Deployment writes (failurePolicy Fail) instead of
letting them pass ungated, and during a rolling upgrade the previous pod keeps answering.

Every namespace served holds at least its kube-root-ca.crt ConfigMap, whose event warms the
operator at once. Where nothing is served at all, the operator is warm after a grace period, so
that the pod does not stay unready for ever; the liveness probe reads the same /healthz, and the
chart gives it more time than the grace (values.yaml).
"""

from __future__ import annotations

import time
from collections.abc import Callable

GRACE_SECONDS = 30.0


class Warmup:
    def __init__(
        self, grace_seconds: float = GRACE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._until = clock() + grace_seconds
        self._marked = False

    def mark(self) -> None:
        """A resource handler ran: kopf has filled its indexes."""
        self._marked = True

    @property
    def warm(self) -> bool:
        return self._marked or self._clock() >= self._until
