"""`stagecraft operator` as a real process against the emulated API server: it serves, it stays
out of namespaces its label selector does not match, and it stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes import client

from stagecraft.cli.operator_command import environment_with_flags
from tests.cli.emulated_cluster import EmulatedCluster, run_stagecraft
from tests.support.postgres_server import free_port

WAIT_TIMEOUT = 60.0  # seconds; a bound for hangs, never an expectation of speed
POLL_INTERVAL = 0.05
# kopf records the spec it last handled here once a resource's handlers have all run.
KOPF_HANDLED = "kopf.zalando.org/last-handled-configuration"
SPEC = {
    "migrations": {"engine": "raw", "path": "/app/migrations"},
    "connection": {"secretKeyRef": {"name": "db", "key": "url"}},
    "image": "registry.example/migrations:1",
}


async def _eventually(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(POLL_INTERVAL)
    return result


async def _get(url: str) -> int | None:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status
    except aiohttp.ClientConnectionError:
        return None  # not listening yet


@asynccontextmanager
async def _operator(
    kube: EmulatedCluster, log: Path, *flags: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`stagecraft operator FLAGS` with the kubeconfig in KUBECONFIG; stopped with SIGTERM."""
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stagecraft", "operator", *flags,
            stdout=output,
            stderr=output,
            # Only what it needs: no STAGECRAFT_* or in-cluster variables from the test's own.
            env={"KUBECONFIG": str(kube.kubeconfig), "HOME": str(log.parent), "PATH": "/usr/bin"},
        )  # fmt: skip
        try:
            yield process
        except AssertionError as error:  # the operator's log says why
            tail = log.read_text(encoding="utf-8", errors="replace")[-6000:]
            raise AssertionError(f"{error}\n--- operator log ---\n{tail}") from None
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), WAIT_TIMEOUT)


async def _label_namespace(kube: EmulatedCluster, name: str, labels: dict[str, str]) -> None:
    """`kubectl label namespace` over HTTP with the real client."""
    core = client.CoreV1Api(client.ApiClient(client.Configuration(host=kube.server)))
    await asyncio.to_thread(core.patch_namespace, name, {"metadata": {"labels": labels}})


async def test_operator_creates_jobs_only_in_namespaces_its_selector_matches(
    kube: EmulatedCluster, tmp_path: Path
) -> None:
    await kube.create_namespace("shop", {"team": "shop"})
    await kube.create_namespace("billing", {"team": "billing"})
    await kube.create_database_migration("billing", "billing-db", SPEC)
    await kube.create_database_migration("shop", "shop-db", SPEC)
    liveness, metrics = free_port(), free_port()
    log = tmp_path / "operator.log"

    async with _operator(
        kube, log, "--runner-image", "stagecraft:test", "--namespace-selector", "team=shop",
        "--liveness", f"http://127.0.0.1:{liveness}/healthz", "--metrics-port", str(metrics),
    ) as process:  # fmt: skip
        (job,) = await _eventually("a Job in shop", lambda: kube.jobs("shop"))
        await _eventually(
            "kopf handled billing-db",
            lambda: KOPF_HANDLED in kube.annotations("billing", "billing-db"),
        )
        assert kube.jobs("billing") == []
        assert "status" not in kube.database_migration("billing", "billing-db")
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "stagecraft:test"
        assert await _get(f"http://127.0.0.1:{liveness}/healthz") == 200
        assert await _get(f"http://127.0.0.1:{metrics}/metrics") == 200

        await _label_namespace(kube, "billing", {"team": "shop"})  # billing joins the scope
        await _eventually("a Job in billing", lambda: kube.jobs("billing"))

        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), WAIT_TIMEOUT)
    assert returncode == 0, log.read_text()


async def test_operator_serves_the_namespaces_it_is_given(
    kube: EmulatedCluster, tmp_path: Path
) -> None:
    await kube.create_namespace("shop")
    await kube.create_namespace("billing")
    await kube.create_database_migration("shop", "shop-db", SPEC)
    log = tmp_path / "operator.log"

    async with _operator(
        kube, log, "--runner-image", "stagecraft:test", "--namespace", "shop",
        "--namespace", "team-*", "--liveness", "", "--metrics-port", "0",
    ) as process:  # fmt: skip
        await _eventually("a Job in shop", lambda: kube.jobs("shop"))
        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), WAIT_TIMEOUT)
    assert returncode == 0, log.read_text()


async def test_a_selector_narrows_the_listed_namespaces(
    kube: EmulatedCluster, tmp_path: Path
) -> None:
    await kube.create_namespace("shop", {"team": "shop"})
    await kube.create_namespace("billing", {"team": "billing"})
    await kube.create_database_migration("billing", "billing-db", SPEC)
    await kube.create_database_migration("shop", "shop-db", SPEC)
    log = tmp_path / "operator.log"

    async with _operator(
        kube, log, "--runner-image", "stagecraft:test", "--namespace", "shop",
        "--namespace", "billing", "--namespace-selector", "team=shop", "--liveness", "",
        "--metrics-port", "0",
    ):  # fmt: skip
        await _eventually("a Job in shop", lambda: kube.jobs("shop"))
        await _eventually(
            "kopf handled billing-db",
            lambda: KOPF_HANDLED in kube.annotations("billing", "billing-db"),
        )
        assert kube.jobs("billing") == []


async def test_operator_without_a_runner_image_names_the_flag_and_variable() -> None:
    result = await run_stagecraft("operator", env={"STAGECRAFT_RUNNER_IMAGE": ""})
    assert result.returncode == 2
    assert "error: STAGECRAFT_RUNNER_IMAGE is not set" in result.stderr
    assert "flags override the variables: stagecraft operator -h" in result.stderr


async def test_an_invalid_selector_flag_is_a_usage_error() -> None:
    result = await run_stagecraft("operator", "--runner-image", "s", "--namespace-selector", "a=(")
    assert result.returncode == 2
    assert "Invalid value for '--namespace-selector'" in result.stderr


def test_flags_override_their_environment_variables() -> None:
    environment = {"STAGECRAFT_RUNNER_IMAGE": "old", "STAGECRAFT_PEERING": "kept", "HOME": "/h"}
    flags: dict[str, Any] = {
        "runner_image": "new",
        "namespaces": ("shop", "team-*"),
        "metrics_port": 0,
        "liveness": "",
        "peering": None,
        "webhook_port": None,
    }
    assert environment_with_flags(environment, flags) == {
        "STAGECRAFT_RUNNER_IMAGE": "new",
        "STAGECRAFT_NAMESPACES": "shop,team-*",
        "STAGECRAFT_METRICS_PORT": "0",
        "STAGECRAFT_LIVENESS": "",
        "STAGECRAFT_PEERING": "kept",
        "HOME": "/h",
    }
