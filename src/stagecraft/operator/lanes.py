"""The reconciles that watched objects ask for: queued by urgency, one per resource, on threads
of their own.

When many Deployments roll out at once the operator is bound by its CPU (one interpreter), and a
reconcile waits far longer than it runs: with 200 at once (bench/bench_rollout.py) a finished
Job's reconcile, which releases a held rollout, waited about 1.5 s in kopf's first-in, first-out
thread pool behind the reconciles of other Deployments' changes, and ran for 30 to 70 ms. So:

- Work is ordered by urgency: what ended and is waited for (a finished pre_deploy Job: the
  release of a held rollout; a rollout that completed: post_deploy's Job), then the end of any
  other Job (its result to record, which the Job keeps meanwhile), then any other change (a new
  template, a pause: work that starts something), and in the order asked within an urgency.
- A resource is queued at most once: a reconcile reads the resource, its Deployment and its Job
  when it starts, so one that has not started yet covers every later request for the same
  resource (it moves up if a later one is more urgent). A burst of events makes one reconcile.
- Asking does not wait for the reconcile. kopf hands a Deployment's events to its handler one
  after the other, so a handler that waited would hold that Deployment's next event (its
  rollout completing) behind its previous one's place in the queue.

kopf's on.event handlers are not retried, so a reconcile that fails is logged here as kopf would
log it, and looked at again later. Resources that wait on what no event reports are looked at
again after a while too (`later`): that is the operator's resync, in place of a kopf timer
(docs/decisions.md, "Revisits instead of kopf's timer").
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

logger = logging.getLogger(__name__)

ResourceKey = tuple[str, str]  # namespace, name


class Urgency(IntEnum):
    ENDED = 0  # a pre_deploy Job or a rollout ended: release, or start post_deploy's Job
    RECORD = 1  # another Job ended: its result to record
    CHANGED = 2  # anything else that changed: a new template to migrate, a pause
    REVISIT = 3  # nothing changed that the operator sees: a look after a while (`later`)


@dataclass(order=True)
class _Request:
    urgency: int
    sequence: int
    resource: ResourceKey | None = field(compare=False)  # None: a `deferred` step, or stop
    superseded: bool = field(default=False, compare=False)
    deferred: Callable[[], object] | None = field(default=None, compare=False)


class Reconciles(Protocol):
    def reconcile(
        self, namespace: str, name: str, *, watched: bool, waited_for: bool
    ) -> object: ...


class ReconcileLanes:
    """Threads that reconcile the resources asked for, the most urgent first."""

    def __init__(
        self,
        reconciler: Reconciles,
        threads: int,
        name: str = "reconcile",
        report_queued: Callable[[int], object] = lambda _: None,
        revisit_seconds: float = 5.0,
    ) -> None:
        self._reconciler = reconciler
        self._report_queued = report_queued  # told the count whenever it changes
        self._queue: queue.PriorityQueue[_Request] = queue.PriorityQueue()
        self._sequence = itertools.count()
        self._queued: dict[ResourceKey, _Request] = {}
        self._guard = threading.Lock()
        self._revisit_seconds = revisit_seconds
        self._revisits: list[tuple[float, int, ResourceKey]] = []  # a heap: due, sequence, key
        self._revisit_due: dict[ResourceKey, float] = {}  # the one due time that counts
        self._revisits_changed = threading.Condition(self._guard)
        self._stopping = False
        # Daemon threads: an operator that stops without its cleanup handlers must still exit.
        # Started by the first request, so that a registry built and never run starts none.
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
            for index in range(threads)
        ]
        self._scheduler = threading.Thread(
            target=self._schedule_revisits, name=f"{name}-later", daemon=True
        )

    def request(self, urgency: Urgency, namespace: str, name: str) -> None:
        """Reconcile this resource soon; returns at once."""
        key = (namespace, name)
        with self._guard:
            self._start_threads()
            queued = self._queued.get(key)
            if queued is not None:
                if queued.urgency <= urgency:
                    return  # it will read everything this request is about
                queued.superseded = True  # moves up: queued again below, more urgent
            request = _Request(int(urgency), next(self._sequence), key)
            self._queued[key] = request
            self._report_queued(len(self._queued))
        self._queue.put(request)

    def later(self, namespace: str, name: str) -> None:
        """Reconcile this resource again `revisit_seconds` from now (the last time asked counts:
        a reconcile that asks again pushes it back). What no event reports (a retry coming due,
        a rollout's progress, a Job event that was missed, a release the API server refused) is
        seen that way."""
        key = (namespace, name)
        due = time.monotonic() + self._revisit_seconds
        with self._guard:
            self._start_threads()
            self._revisit_due[key] = due
            heapq.heappush(self._revisits, (due, next(self._sequence), key))
            self._revisits_changed.notify()

    def defer(self, step: Callable[[], object]) -> None:
        """Run `step` on a lane thread after the more urgent work queued: what a reconcile
        writes after the step that was waited for (its status and Events, after a release or a
        Job's creation), so that at 200 at once every waited-for step goes first."""
        with self._guard:
            self._start_threads()
        self._queue.put(_Request(Urgency.RECORD, next(self._sequence), None, deferred=step))

    def forget(self, namespace: str, name: str) -> None:
        """No revisit of this resource (one asked for before is dropped)."""
        with self._guard:
            self._revisit_due.pop((namespace, name), None)

    def stop(self) -> None:
        """The threads end once the requests queued so far are done; revisits not yet due are
        dropped."""
        with self._guard:
            started = [thread for thread in self._threads if thread.ident is not None]
            self._stopping = True
            self._revisits_changed.notify()
        for _ in started:
            self._queue.put(_Request(len(Urgency), next(self._sequence), None))

    @property
    def queued(self) -> int:
        with self._guard:
            return len(self._queued)

    def _start_threads(self) -> None:
        for thread in [*self._threads, self._scheduler]:
            if thread.ident is None:
                thread.start()

    def _work(self) -> None:
        while True:
            request = self._queue.get()
            if request.deferred is not None:
                self._run_deferred(request.deferred)
                continue
            if request.resource is None:
                return
            with self._guard:
                if request.superseded:
                    continue
                del self._queued[request.resource]
                self._report_queued(len(self._queued))
            namespace, name = request.resource
            try:
                # Asked for by an event, which stored what it saw first (seen.py); a revisit
                # reads everything from the API server.
                watched = request.urgency != Urgency.REVISIT
                waited_for = request.urgency == Urgency.ENDED
                self._reconciler.reconcile(namespace, name, watched=watched, waited_for=waited_for)
            except Exception:
                logger.exception(
                    "Reconciling %s/%s failed; it is tried again in %.0f s or at its next change",
                    namespace,
                    name,
                    self._revisit_seconds,
                )
                self.later(namespace, name)

    @staticmethod
    def _run_deferred(step: Callable[[], object]) -> None:
        try:
            step()
        except Exception:
            logger.exception("A deferred step of a reconcile failed; the next one does it again")

    def _schedule_revisits(self) -> None:
        """Hands each revisit to the lanes when it comes due (one thread for all of them)."""
        with self._guard:
            while not self._stopping:
                now = time.monotonic()
                while self._revisits and self._revisits[0][0] <= now:
                    due, _, key = heapq.heappop(self._revisits)
                    if self._revisit_due.get(key) == due:  # not pushed later since
                        del self._revisit_due[key]
                        self._guard.release()
                        try:
                            self.request(Urgency.REVISIT, *key)
                        finally:
                            self._guard.acquire()
                wait = self._revisits[0][0] - now if self._revisits else None
                self._revisits_changed.wait(wait)
