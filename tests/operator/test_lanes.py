"""Reconciles asked for by watched objects: the most urgent first, one per resource."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from stagecraft.operator.lanes import ReconcileLanes, Urgency

WAIT_SECONDS = 10.0


class Recorder:
    """A reconcile that records its calls; the first one waits until `go` is set, so that the
    requests made meanwhile queue up behind it."""

    def __init__(self, calls_expected: int) -> None:
        self.calls: list[tuple[str, str]] = []
        self.go = threading.Event()
        self.done = threading.Semaphore(0)
        self.calls_expected = calls_expected
        self.fail_for: set[str] = set()
        self.times: list[float] = []  # when each call started (time.monotonic)
        self.watched: list[bool] = []  # whether each call could read what the watch saw
        self.waited_for: list[bool] = []  # whether a rollout or a Job waits on each call

    def reconcile(self, namespace: str, name: str, *, watched: bool, waited_for: bool) -> None:
        self.go.wait(WAIT_SECONDS)
        self.times.append(time.monotonic())
        self.watched.append(watched)
        self.waited_for.append(waited_for)
        self.calls.append((namespace, name))
        self.done.release()
        if name in self.fail_for:
            raise RuntimeError(f"API error while reconciling {name}")

    def wait_for_calls(self) -> list[tuple[str, str]]:
        for _ in range(self.calls_expected):
            assert self.done.acquire(timeout=WAIT_SECONDS), f"only {self.calls} were reconciled"
        return self.calls


def _busy_lanes(recorder: Recorder) -> ReconcileLanes:
    """One thread, held by a first reconcile of shop/blocker until `go` is set."""
    lanes = ReconcileLanes(recorder, threads=1)
    lanes.request(Urgency.CHANGED, "shop", "blocker")
    deadline = time.monotonic() + WAIT_SECONDS
    while lanes.queued:  # taken by the thread: what is asked now queues up
        assert time.monotonic() < deadline
        time.sleep(0.001)
    return lanes


def test_what_is_waited_for_comes_first_then_results_to_record_then_changes() -> None:
    """Within an urgency, in the order asked."""
    recorder = Recorder(calls_expected=5)
    lanes = _busy_lanes(recorder)

    lanes.request(Urgency.CHANGED, "shop", "new-image")
    lanes.request(Urgency.RECORD, "shop", "post-deploy-job-finished")
    lanes.request(Urgency.ENDED, "shop", "pre-deploy-job-finished")
    lanes.request(Urgency.ENDED, "shop", "rollout-complete")
    recorder.go.set()

    assert recorder.wait_for_calls() == [
        ("shop", "blocker"),
        ("shop", "pre-deploy-job-finished"),
        ("shop", "rollout-complete"),
        ("shop", "post-deploy-job-finished"),
        ("shop", "new-image"),
    ]
    assert recorder.waited_for == [False, True, True, False, False]
    lanes.stop()


def test_a_resource_already_queued_is_reconciled_once_and_moves_up_when_more_urgent() -> None:
    recorder = Recorder(calls_expected=4)
    lanes = _busy_lanes(recorder)

    lanes.request(Urgency.CHANGED, "shop", "first")
    lanes.request(Urgency.CHANGED, "shop", "db")
    lanes.request(Urgency.CHANGED, "shop", "db")  # covered by the one queued
    lanes.request(Urgency.ENDED, "shop", "db")  # moves up, still once
    lanes.request(Urgency.CHANGED, "blog", "db")  # another namespace, another resource
    assert lanes.queued == 3
    recorder.go.set()

    calls = recorder.wait_for_calls()
    assert calls == [("shop", "blocker"), ("shop", "db"), ("shop", "first"), ("blog", "db")]
    time.sleep(0.05)
    assert len(recorder.calls) == 4  # nothing more ran
    lanes.stop()


def test_a_request_while_the_resource_is_being_reconciled_runs_again_after_it() -> None:
    recorder = Recorder(calls_expected=2)
    lanes = _busy_lanes(recorder)

    lanes.request(Urgency.CHANGED, "shop", "blocker")  # it changed again while reconciled
    recorder.go.set()

    assert recorder.wait_for_calls() == [("shop", "blocker"), ("shop", "blocker")]
    lanes.stop()


def test_a_failed_reconcile_is_logged_and_the_lanes_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder(calls_expected=2)
    recorder.fail_for = {"broken"}
    recorder.go.set()
    lanes = ReconcileLanes(recorder, threads=1)

    with caplog.at_level(logging.ERROR, logger="stagecraft.operator.lanes"):
        lanes.request(Urgency.ENDED, "shop", "broken")
        lanes.request(Urgency.ENDED, "shop", "fine")
        calls = recorder.wait_for_calls()

    assert calls == [("shop", "broken"), ("shop", "fine")]
    assert "Reconciling shop/broken failed" in caplog.text
    lanes.stop()


def test_lanes_start_no_thread_until_asked_and_stop_when_told() -> None:
    before = {thread.name for thread in threading.enumerate()}
    recorder = Recorder(calls_expected=1)
    recorder.go.set()
    lanes = ReconcileLanes(recorder, threads=2, name="lanes-under-test")
    assert not {t.name for t in threading.enumerate()} - before

    lanes.request(Urgency.CHANGED, "shop", "db")
    recorder.wait_for_calls()
    lanes.later("shop", "db")  # not due before the lanes stop: dropped
    lanes.stop()

    deadline = time.monotonic() + WAIT_SECONDS
    while any(t.name.startswith("lanes-under-test") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the lanes' threads did not stop"
        time.sleep(0.01)


def test_the_queue_length_is_reported_as_it_changes() -> None:
    recorder = Recorder(calls_expected=3)
    reported: list[int] = []
    lanes = ReconcileLanes(recorder, threads=1, report_queued=reported.append)
    lanes.request(Urgency.CHANGED, "shop", "blocker")
    deadline = time.monotonic() + WAIT_SECONDS
    while lanes.queued:
        assert time.monotonic() < deadline
        time.sleep(0.001)

    lanes.request(Urgency.CHANGED, "shop", "a")
    lanes.request(Urgency.CHANGED, "shop", "b")
    lanes.request(Urgency.CHANGED, "shop", "a")  # already queued: no change to report
    assert reported == [1, 0, 1, 2]
    recorder.go.set()
    recorder.wait_for_calls()

    assert reported == [1, 0, 1, 2, 1, 0]
    lanes.stop()


REVISIT_SECONDS = 0.2


def test_a_revisit_comes_once_its_delay_has_passed_since_it_was_last_asked_for() -> None:
    recorder = Recorder(calls_expected=1)
    recorder.go.set()
    lanes = ReconcileLanes(recorder, threads=1, revisit_seconds=REVISIT_SECONDS)

    lanes.later("shop", "db")
    time.sleep(REVISIT_SECONDS / 2)
    assert recorder.calls == []
    asked_again = time.monotonic()
    lanes.later("shop", "db")  # a reconcile that still waits asks again: pushed back

    assert recorder.wait_for_calls() == [("shop", "db")]
    assert recorder.times[0] - asked_again >= REVISIT_SECONDS
    time.sleep(REVISIT_SECONDS * 2)
    assert recorder.calls == [("shop", "db")]  # once: the first request did not also run
    lanes.stop()


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_a_revisit_comes_after_the_changes_already_queued() -> None:
    recorder = Recorder(calls_expected=3)
    lanes = ReconcileLanes(recorder, threads=1, revisit_seconds=0.0)
    lanes.request(Urgency.CHANGED, "shop", "blocker")
    _until(lambda: lanes.queued == 0)  # taken by the thread, held until `go`

    lanes.later("shop", "waiting")
    _until(lambda: lanes.queued == 1)  # due at once: handed to the lanes
    lanes.request(Urgency.CHANGED, "shop", "new-image")
    recorder.go.set()

    assert recorder.wait_for_calls() == [
        ("shop", "blocker"),
        ("shop", "new-image"),
        ("shop", "waiting"),
    ]
    # What events asked for reads the Deployment as the watch saw it; a revisit reads it anew.
    assert recorder.watched == [True, True, False]
    lanes.stop()


def test_a_failed_reconcile_is_tried_again_a_while_later() -> None:
    recorder = Recorder(calls_expected=2)
    recorder.fail_for = {"broken"}
    recorder.go.set()
    lanes = ReconcileLanes(recorder, threads=1, revisit_seconds=REVISIT_SECONDS)

    lanes.request(Urgency.ENDED, "shop", "broken")

    assert recorder.wait_for_calls() == [("shop", "broken"), ("shop", "broken")]
    assert recorder.times[1] - recorder.times[0] >= REVISIT_SECONDS
    lanes.stop()


def test_a_forgotten_revisit_does_not_come() -> None:
    recorder = Recorder(calls_expected=1)
    recorder.go.set()
    lanes = ReconcileLanes(recorder, threads=1, revisit_seconds=REVISIT_SECONDS)

    lanes.later("shop", "done-waiting")
    lanes.later("shop", "still-waiting")
    lanes.forget("shop", "done-waiting")  # its wait ended meanwhile

    assert recorder.wait_for_calls() == [("shop", "still-waiting")]
    time.sleep(REVISIT_SECONDS * 2)
    assert recorder.calls == [("shop", "still-waiting")]
    lanes.stop()


def test_a_deferred_step_runs_after_what_is_waited_for_and_before_changes() -> None:
    recorder = Recorder(calls_expected=3)
    lanes = _busy_lanes(recorder)
    ran: list[str] = []

    lanes.request(Urgency.CHANGED, "shop", "new-image")
    lanes.defer(lambda: ran.append(f"record after {len(recorder.calls)} reconciles"))
    lanes.request(Urgency.ENDED, "shop", "rollout-complete")
    recorder.go.set()

    assert recorder.wait_for_calls() == [
        ("shop", "blocker"),
        ("shop", "rollout-complete"),
        ("shop", "new-image"),
    ]
    assert ran == ["record after 2 reconciles"]
    lanes.stop()
