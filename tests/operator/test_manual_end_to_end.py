"""manual with a Deployment reference, with the real kopf operator: run requests bound to the plan
shown in the status run once; a request for a stale plan is refused, consumed and reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stagecraft.operator.requests import run_request_value
from tests.operator.harness import Cluster, condition_of, is_true

V41, V42 = "registry.example/shop-api:41", "registry.example/shop-api:42"
FILES = {
    "0001_customers.sql": "CREATE TABLE customers (id integer PRIMARY KEY);",
    "0002_orders.sql": "CREATE TABLE orders (id integer PRIMARY KEY);",
}
MANUAL = {
    "migrations": {"engine": "raw", "path": "/app/migrations", "strategy": "manual"},
    "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
    "deployment": {"name": "shop-api", "containers": ["api"]},
}
RUN_REQUEST = "stagecraft.dev/run-request"


def _image(root: Path, files: dict[str, str]) -> Path:
    folder = root / "app" / "migrations"
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    return root


async def _application(cluster: Cluster, root: Path, database_url: str) -> None:
    cluster.jobs.images[V41] = _image(root / "v41", FILES)
    newer = {**FILES, "0003_invoices.sql": "CREATE TABLE invoices (id integer);"}
    cluster.jobs.images[V42] = _image(root / "v42", newer)
    await cluster.create_secret("shop-db", {"url": database_url})
    await cluster.create_deployment("shop-api", {"api": V41})


def _waiting_for_plan(plan: str | None = None) -> Any:
    def check(status: dict[str, Any]) -> bool:
        ready = condition_of(status, "Ready")
        return ready.get("reason") == "WaitingForRunRequest" and (
            plan is None or status.get("targetHash") == plan
        )

    return check


def _handled(value: str) -> Any:
    return lambda status: status.get("handledRunRequest") == value


async def test_run_request_bound_to_the_plan_in_the_status_runs_once(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path, postgres_url)
    await cluster.apply_database_migration("shop-db", MANUAL)
    waiting = await cluster.wait_for_status("shop-db", _waiting_for_plan())
    plan = waiting["targetHash"]
    assert f"--plan {plan}" in condition_of(waiting, "Ready")["message"]
    assert cluster.jobs_of("shop-db") == []

    request = run_request_value("first", plan)
    await cluster.annotate("shop-db", {RUN_REQUEST: request})
    status = await cluster.wait_for_status(
        "shop-db", lambda status: _handled(request)(status) and is_true("Ready")(status)
    )

    assert [entry["id"] for entry in status["lastRun"]["applied"]] == list(FILES)
    assert len(cluster.jobs.runner_runs()) == 1
    # The same request written again (a re-applied manifest) asks nothing new.
    await cluster.restart_operator()
    await cluster.annotate("shop-db", {RUN_REQUEST: request})
    await cluster.patch_spec("shop-db", {"job": {"backoffLimit": 3}})
    await cluster.wait_for_status("shop-db", lambda status: status.get("observedGeneration") == 2)
    assert len(cluster.jobs.runner_runs()) == 1


async def test_run_request_for_a_stale_plan_is_refused_consumed_and_reported(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path, postgres_url)
    await cluster.apply_database_migration("shop-db", MANUAL)
    reviewed = (await cluster.wait_for_status("shop-db", _waiting_for_plan()))["targetHash"]
    # A new version arrives between the review and the request: the reviewed plan is stale.
    await cluster.set_deployment_image("shop-api", "api", V42)
    current = (
        await cluster.wait_for_status(
            "shop-db", lambda status: status.get("targetHash") not in (None, reviewed)
        )
    )["targetHash"]

    stale = run_request_value("reviewed-yesterday", reviewed)
    await cluster.annotate("shop-db", {RUN_REQUEST: stale})
    refused = await cluster.wait_for_status("shop-db", _handled(stale))

    message = condition_of(refused, "Ready")["message"]
    assert f"is for plan {reviewed}, not for the current plan {current}" in message
    assert condition_of(refused, "Ready")["reason"] == "WaitingForRunRequest"
    assert cluster.jobs_of("shop-db") == []
    refusal = [("RunRequestRefused", "Warning")]
    assert await cluster.wait_for_event_reasons("shop-db", 1) == refusal

    # A restarted operator neither refuses it again nor runs it.
    await cluster.restart_operator()
    await cluster.patch_spec("shop-db", {"job": {"backoffLimit": 3}})
    again = await cluster.wait_for_status(
        "shop-db", lambda status: status.get("observedGeneration") == 2
    )
    assert reviewed in condition_of(again, "Ready")["message"]
    assert cluster.event_reasons("shop-db") == refusal
    assert cluster.jobs_of("shop-db") == []

    fresh = run_request_value("reviewed-today", current)
    await cluster.annotate("shop-db", {RUN_REQUEST: fresh})
    status = await cluster.wait_for_status(
        "shop-db", lambda status: _handled(fresh)(status) and is_true("Ready")(status)
    )
    assert [entry["id"] for entry in status["lastRun"]["applied"]] == [
        *FILES,
        "0003_invoices.sql",
    ]
    assert reviewed not in condition_of(status, "Ready")["message"]
    assert [reason for reason, _ in await cluster.wait_for_event_reasons("shop-db", 3)] == [
        "RunRequestRefused",
        "RunStarted",
        "RunSucceeded",
    ]


async def test_stale_request_after_a_run_keeps_the_result_and_runs_nothing(
    cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    await _application(cluster, tmp_path, postgres_url)
    await cluster.apply_database_migration("shop-db", MANUAL)
    plan = (await cluster.wait_for_status("shop-db", _waiting_for_plan()))["targetHash"]
    await cluster.annotate("shop-db", {RUN_REQUEST: run_request_value("first", plan)})
    ready = await cluster.wait_for_status("shop-db", is_true("Ready"))

    stale = run_request_value("second", "0123456789abcdef")
    await cluster.annotate("shop-db", {RUN_REQUEST: stale})
    status = await cluster.wait_for_status("shop-db", _handled(stale))

    assert is_true("Ready")(status)
    assert status["lastRun"] == ready["lastRun"]
    assert "is for plan 0123456789abcdef" in condition_of(status, "Ready")["message"]
    assert len(cluster.jobs.runner_runs()) == 1
    events = await cluster.wait_for_event_reasons("shop-db", 3)
    assert events[-1] == ("RunRequestRefused", "Warning")
