"""The operator under test: the real kopf operator in its own thread and event loop, talking over
HTTP to the emulator, which runs in the test's loop with the stand-in Job controller.

kopf gets a thread of its own because its shutdown cancels tasks of the loop it runs in (it would
cancel pytest-asyncio's fixture teardown), and because the sync kubernetes client that its handlers
use must never block the loop that serves the emulator (../shared/TESTING.md).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
import kopf

from stagecraft.operator.crd import custom_resource_definition
from stagecraft.operator.kube import KubeApi
from stagecraft.operator.main import base_settings, build_registry
from stagecraft.operator.manifests import RunnerSettings
from stagecraft.operator.metrics import OperatorMetrics
from stagecraft.operator.models import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION
from stagecraft.operator.planner import RetryPolicy
from stagecraft.operator.reconcile import Reconciler, ReconcilerSettings
from stagecraft.operator.warmup import Warmup
from stagecraft.operator.webhooks import GATE_HANDLER_ID
from tests.operator.controllers import JobController
from tests.operator.deployments import DeploymentController
from tests.operator.emulator import ApiServerEmulator, MutatingWebhook
from tests.operator.schema_check import schema_problems

RUNNER_IMAGE = "stagecraft:test"
WATCHED = {PLURAL, "jobs", "deployments", "configmaps"}  # what the operator must be watching
NAMESPACE = "shop"
WAIT_TIMEOUT = 60.0  # seconds; a bound for hangs, never an expectation of speed
POLL_INTERVAL = 0.02


def _declare_custom_resource(emulator: ApiServerEmulator) -> None:
    emulator.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = kmock.ResourceInfo(
        kind=KIND,
        singular=SINGULAR,
        namespaced=True,
        shortnames=set(SHORT_NAMES),
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _operator_settings(webhook_port: int) -> kopf.OperatorSettings:
    settings = base_settings()
    # kopf's real webhook server, over plain HTTP on loopback; tests send it AdmissionReviews as
    # the API server would. Nothing is registered in the cluster (the chart owns that).
    settings.admission.server = kopf.WebhookServer(
        addr="127.0.0.1", port=webhook_port, insecure=True
    )
    settings.watching.connect_timeout = 5
    settings.networking.error_backoffs = [0.1, 0.2, 0.5]
    settings.process.ultimate_exiting_timeout = 5
    return settings


@dataclass
class OperatorThread:
    """kopf's operator in a thread with its own event loop; `stop` waits for it to end."""

    server: str
    reconciler: Reconciler
    webhook_port: int = field(default_factory=free_port)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    errors: list[BaseException] = field(default_factory=list)
    liveness_port: int | None = None  # kopf's /healthz on loopback, as the chart probes it
    warmup: Warmup | None = None
    peered: bool = True  # as with STAGECRAFT_PEERING; False: standalone (main.build_registry)

    def start(self) -> None:
        registry = build_registry(
            self.reconciler, resync_seconds=RESYNC_SECONDS, warmup=self.warmup, peered=self.peered
        )
        server = self.server

        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=server, insecure=True)

        kopf.on.login(registry=registry, id="emulator")(login)

        def run() -> None:
            try:
                asyncio.run(
                    kopf.operator(
                        registry=registry,
                        settings=_operator_settings(self.webhook_port),
                        clusterwide=True,
                        standalone=True,
                        stop_flag=self._stop,
                        ready_flag=self._ready,
                        liveness_endpoint=(
                            f"http://127.0.0.1:{self.liveness_port}/healthz"
                            if self.liveness_port
                            else None
                        ),
                    )
                )
            except BaseException as error:  # reported by the fixture, not lost in the thread
                self.errors.append(error)

        self._thread = threading.Thread(target=run, name="kopf-operator", daemon=True)
        self._thread.start()

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}"

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_TIMEOUT)
            assert not self._thread.is_alive(), "the kopf operator did not stop"


@dataclass
class Cluster:
    """What a test sees: the emulator's store, the real client, the Job and Deployment
    controllers."""

    emulator: ApiServerEmulator
    api: KubeApi
    jobs: JobController
    deployments: DeploymentController
    operator: OperatorThread
    metrics: OperatorMetrics

    async def restart_operator(self) -> None:
        """Stop the operator and start a new one, with nothing kept in memory between them."""
        await self.stop_operator()
        await self.start_operator()

    async def stop_operator(self) -> None:
        await asyncio.to_thread(self.operator.stop)

    async def start_operator(
        self, liveness_port: int | None = None, warmup: Warmup | None = None, peered: bool = True
    ) -> None:
        """A new operator, after `stop_operator`: it finds the cluster as the last one left it."""
        self.emulator.served_watches.clear()
        self.operator = OperatorThread(
            self.operator.server,
            _reconciler(self.api, self.metrics),
            liveness_port=liveness_port,
            warmup=warmup,
            peered=peered,
        )
        self.operator.start()
        await _wait_until_watching(self.emulator, WATCHED)
        await _wait_until_serving(self.operator.webhook_port)

    async def create(self, group: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create through the emulator's store, as `kubectl apply` of a fixture would."""
        obj.setdefault("metadata", {}).setdefault("namespace", NAMESPACE)
        return await self.emulator.put_object(group, plural, obj)

    async def create_secret(self, name: str, values: dict[str, str]) -> None:
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}
        await self.create("", "secrets", secret)

    async def create_deployment(self, name: str, containers: dict[str, str]) -> None:
        template_containers = [{"name": key, "image": image} for key, image in containers.items()]
        await self.create(
            "apps",
            "deployments",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name},
                "spec": {
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": template_containers},
                    },
                },
            },
        )

    async def apply_database_migration(self, name: str, spec: dict[str, Any]) -> None:
        """Create the resource over HTTP with the real kubernetes client, as a user would."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": spec,
        }
        custom = self.api._custom  # the same client the operator uses
        await asyncio.to_thread(
            custom.create_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL, body
        )

    async def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        """Merge-patch the resource's spec over HTTP with the real client, as kubectl would."""
        custom = self.api._custom
        await asyncio.to_thread(
            custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            NAMESPACE,
            PLURAL,
            name,
            {"spec": spec},
        )

    async def annotate(self, name: str, annotations: dict[str, str]) -> None:
        """`kubectl annotate` over HTTP, through the operator's own client code."""
        patch = {"metadata": {"annotations": annotations}}
        await asyncio.to_thread(self.api.patch_database_migration, NAMESPACE, name, patch)

    async def set_deployment_image(self, name: str, container: str, image: str) -> None:
        """A new application version: patch the Deployment's container image over HTTP."""
        apps = self.api._apps
        patch = {
            "spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}
        }
        await asyncio.to_thread(apps.patch_namespaced_deployment, name, NAMESPACE, patch)

    async def update_config_map(self, name: str, data: dict[str, str]) -> None:
        """Add files to a ConfigMap over HTTP, as `kubectl edit` would."""
        core = self.api._core
        patch = {"data": data}
        await asyncio.to_thread(core.patch_namespaced_config_map, name, NAMESPACE, patch)

    def database_migration(self, name: str) -> dict[str, Any]:
        stored = self.emulator.stored(GROUP, PLURAL, NAMESPACE, name)
        assert stored is not None, f"DatabaseMigration {name} is gone"
        return stored

    def event_reasons(self, name: str) -> list[tuple[str, str]]:
        """(reason, type) of the Events about a DatabaseMigration, oldest first."""
        events = [
            event
            for event in self.emulator.stored_objects("", "events", NAMESPACE)
            if event["involvedObject"]["name"] == name
        ]
        events.sort(key=lambda event: int(event["metadata"]["resourceVersion"]))
        return [(event["reason"], event["type"]) for event in events]

    async def wait_for_event_reasons(self, name: str, count: int) -> list[tuple[str, str]]:
        """`event_reasons` once there are at least `count`: the operator posts its Events after
        the status they go with, so a status a test waited for can come before its Event."""
        deadline = time.monotonic() + WAIT_TIMEOUT
        while len(reasons := self.event_reasons(name)) < count:
            assert not self.operator.errors, self.operator.errors
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} Events about {name}: {reasons}")
            await asyncio.sleep(POLL_INTERVAL)
        return reasons

    def jobs_of(self, name: str) -> list[dict[str, Any]]:
        return [
            job
            for job in self.emulator.stored_objects("batch", "jobs", NAMESPACE)
            if any(owner["name"] == name for owner in job["metadata"].get("ownerReferences", []))
        ]

    async def wait_for_status(
        self, name: str, condition: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """Poll the stored resource until `condition(status)` holds; fail after a bound."""
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            stored = self.database_migration(name)
            status = stored.get("status") or {}
            if condition(status):
                assert_conforms_to_crd(stored)
                return status
            assert not self.operator.errors, self.operator.errors
            if time.monotonic() > deadline:
                raise AssertionError(f"status of {name} never matched; last: {status}")
            await asyncio.sleep(POLL_INTERVAL)


def assert_conforms_to_crd(stored: dict[str, Any]) -> None:
    """What the operator wrote must be what the CRD describes, or a real server would prune it."""
    schema = custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    document = {key: value for key, value in stored.items() if key != "metadata"}
    problems = schema_problems(document, schema)
    assert not problems, problems


def condition_of(status: dict[str, Any], condition_type: str) -> dict[str, Any]:
    for condition in status.get("conditions", []):
        if condition["type"] == condition_type:
            return dict(condition)
    return {}


def is_true(condition_type: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: condition_of(status, condition_type).get("status") == "True"


async def _wait_until_serving(port: int) -> None:
    """The webhook server (failurePolicy Fail: Deployment writes fail until it answers)."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the webhook server never listened on {port}") from None
            await asyncio.sleep(POLL_INTERVAL)
        else:
            writer.close()
            await writer.wait_closed()
            return


async def _wait_until_watching(emulator: ApiServerEmulator, plurals: set[str]) -> None:
    """kopf's ready flag fires before its watch streams are open; wait for the streams."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not plurals <= emulator.served_watches:
        if time.monotonic() > deadline:
            raise AssertionError(f"kopf never watched {plurals - emulator.served_watches}")
        await asyncio.sleep(POLL_INTERVAL)


# Automatic retries come quickly in tests; the policy's shape is what is under test.
TEST_RETRY_POLICY = RetryPolicy(first_delay_seconds=1.0, max_delay_seconds=2.0, max_attempts=4)
RESYNC_SECONDS = 0.1


def _reconciler(api: KubeApi, metrics: OperatorMetrics) -> Reconciler:
    settings = ReconcilerSettings(RunnerSettings(image=RUNNER_IMAGE), retry=TEST_RETRY_POLICY)
    return Reconciler(api, settings, metrics=metrics)


@asynccontextmanager
async def running_cluster(workdir: Path) -> AsyncIterator[Cluster]:
    emulator = ApiServerEmulator()
    _declare_custom_resource(emulator)
    async with emulator, kmock.Server(emulator) as server:
        url = str(server.url).rstrip("/")
        jobs = JobController(emulator, workdir)
        emulator.write_listeners.append(jobs.on_write)
        jobs.released.set()
        deployments = DeploymentController(emulator, NAMESPACE)
        emulator.write_listeners.append(deployments.on_write)
        api = KubeApi.for_host(url)
        metrics = OperatorMetrics()
        operator = OperatorThread(url, _reconciler(api, metrics))
        cluster = Cluster(emulator, api, jobs, deployments, operator, metrics)
        # The Deployment gate, registered as the chart's MutatingWebhookConfiguration does.
        emulator.mutating_webhooks.append(
            MutatingWebhook(
                name="gate-deployment.stagecraft.dev",
                group="apps",
                plural="deployments",
                url=lambda: f"{cluster.operator.webhook_url}/{GATE_HANDLER_ID}",
            )
        )
        cluster.operator.start()
        try:
            await _wait_until_watching(emulator, WATCHED)
            await _wait_until_serving(cluster.operator.webhook_port)
            yield cluster
        finally:
            await asyncio.to_thread(cluster.operator.stop)
            await jobs.stop()
            await deployments.stop()
