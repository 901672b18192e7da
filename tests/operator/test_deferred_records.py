"""A reconcile's record (status, Events) written after the step that was waited for: later, on a
lane, or first thing in the resource's next reconcile, and once. Driven by a Reconciler of the
test's own against the emulator, with the operator stopped, so that nothing else reconciles."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from pathlib import Path

from stagecraft.operator.manifests import RunnerSettings
from stagecraft.operator.reconcile import Reconciler, ReconcilerSettings
from stagecraft.operator.runs import job_finished
from tests.operator.harness import NAMESPACE, POLL_INTERVAL, RUNNER_IMAGE, WAIT_TIMEOUT, Cluster
from tests.operator.test_end_to_end import GOOD_MIGRATIONS, _application, _spec


async def _job_started_with_its_record_deferred(
    cluster: Cluster, database_url: str, root: Path
) -> tuple[Reconciler, list[Callable[[], object]]]:
    await _application(cluster, root, database_url, GOOD_MIGRATIONS)
    await cluster.stop_operator()
    cluster.jobs.released.clear()  # the run stays in flight
    await cluster.apply_database_migration("shop-db", _spec())
    reconciler = Reconciler(cluster.api, ReconcilerSettings(RunnerSettings(image=RUNNER_IMAGE)))
    deferred: list[Callable[[], object]] = []
    reconciler.defer = deferred.append
    # As a lane runs what ended and is waited for (a rollout or a pre_deploy Job).
    await asyncio.to_thread(
        functools.partial(reconciler.reconcile, watched=True, waited_for=True),
        NAMESPACE,
        "shop-db",
    )
    return reconciler, deferred


async def _job_finished(cluster: Cluster) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not any(job_finished(job) for job in cluster.jobs_of("shop-db")):
        assert time.monotonic() < deadline, "the Job never finished"
        await asyncio.sleep(POLL_INTERVAL)


def _status(cluster: Cluster) -> dict[str, object]:
    status: dict[str, object] = cluster.database_migration("shop-db").get("status") or {}
    return status


async def test_the_job_is_created_before_its_record_which_a_lane_writes_once(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    _, deferred = await _job_started_with_its_record_deferred(cluster, postgres_url, tmp_path)
    before = _status(cluster)

    assert len(cluster.jobs_of("shop-db")) == 1
    assert len(deferred) == 1
    assert before.get("lastRun") is None  # not recorded yet: the Job holds the run
    assert "RunStarted" not in [reason for reason, _ in cluster.event_reasons("shop-db")]

    await asyncio.to_thread(deferred[0])
    await asyncio.to_thread(deferred[0])  # already written: nothing more

    last_run = _status(cluster)["lastRun"]
    assert isinstance(last_run, dict)
    assert last_run["result"] == "Running"
    assert [reason for reason, _ in cluster.event_reasons("shop-db")] == ["RunStarted"]


async def test_a_deferred_record_goes_before_the_resources_next_reconcile(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    reconciler, deferred = await _job_started_with_its_record_deferred(
        cluster, postgres_url, tmp_path
    )
    cluster.jobs.released.set()
    await _job_finished(cluster)

    await asyncio.to_thread(reconciler.reconcile, NAMESPACE, "shop-db")
    await asyncio.to_thread(deferred[0])  # comes too late: nothing more

    assert _status(cluster)["lastRun"]["result"] == "Succeeded"  # type: ignore[index]
    assert [reason for reason, _ in cluster.event_reasons("shop-db")] == [
        "RunStarted",
        "RunSucceeded",
    ]
    assert len(cluster.jobs_of("shop-db")) == 1  # recorded, so not started again


async def test_a_reconcile_nothing_waits_on_records_at_once(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    """A resource just created (kopf's handler): its status shows the Job at once."""
    await _application(cluster, tmp_path, postgres_url, GOOD_MIGRATIONS)
    await cluster.stop_operator()
    cluster.jobs.released.clear()
    await cluster.apply_database_migration("shop-db", _spec())
    reconciler = Reconciler(cluster.api, ReconcilerSettings(RunnerSettings(image=RUNNER_IMAGE)))
    deferred: list[Callable[[], object]] = []
    reconciler.defer = deferred.append

    await asyncio.to_thread(reconciler.reconcile, NAMESPACE, "shop-db")

    assert deferred == []
    assert _status(cluster)["lastRun"]["result"] == "Running"  # type: ignore[index]
