"""The operator is not ready (kopf's /healthz fails) until the gate's index is complete."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

from stagecraft.operator.warmup import Warmup
from stagecraft.operator.webhooks import GATE_READY_PROBE_ID
from tests.operator.harness import POLL_INTERVAL, WAIT_TIMEOUT, Cluster, free_port


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_warm_once_a_handler_ran() -> None:
    warmup = Warmup(grace_seconds=30, clock=Clock())
    assert not warmup.warm
    warmup.mark()
    assert warmup.warm


def test_warm_after_the_grace_when_nothing_is_there_to_handle() -> None:
    clock = Clock()
    warmup = Warmup(grace_seconds=30, clock=clock)
    clock.now += 29.9
    assert not warmup.warm
    clock.now += 0.1
    assert warmup.warm


def _health(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def _health_once(port: int, status: int) -> str:
    """The body of /healthz once it answers `status` (kopf starts serving it a moment late)."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while True:
        try:
            answered, body = await asyncio.to_thread(_health, port)
        except OSError:
            answered, body = 0, ""
        if answered == status:
            return body
        assert time.monotonic() < deadline, f"/healthz answered {answered}, not {status}"
        await asyncio.sleep(POLL_INTERVAL)


async def test_not_ready_until_kopf_processed_an_object_then_ready(cluster: Cluster) -> None:
    await cluster.stop_operator()
    port = free_port()
    await cluster.start_operator(liveness_port=port, warmup=Warmup(grace_seconds=600))

    # Nothing in the cluster yet: no handler has run, so kopf may not have filled its indexes.
    await _health_once(port, 500)
    await cluster.create(
        "", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "root"}}
    )

    body = await _health_once(port, 200)
    assert json.loads(body)[GATE_READY_PROBE_ID] is True
