"""What bench_rollout.py runs the operator against, besides bench/operator_cluster.py's emulator
and operator process: the gate webhook registered as the chart registers it (over TLS, as the API
server calls it), a Job controller that only marks Jobs Complete with a run document, and a
recorder that timestamps, in the emulator's write path, the moments the benchmark compares.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp.connector
import attrs
from tests.operator.emulator import MutatingWebhook, now

from bench.operator_cluster import CountingEmulator, completed_job_status
from stagecraft.operator.gate import (
    APPROVED_HASH_ANNOTATION,
    PENDING_HASH_ANNOTATION,
    deployment_gate_hash,
)
from stagecraft.operator.handlers import owning_resource
from stagecraft.operator.manifests import MANAGED_BY, MANAGED_BY_LABEL, RUNNER_CONTAINER
from stagecraft.operator.rollout import rollout_state
from stagecraft.operator.webhooks import GATE_HANDLER_ID

CONTAINER = "app"  # the one container of every benchmark Deployment, the one the gate hashes
GATE_LABEL = {"stagecraft.dev/gate": "enabled"}  # the chart's webhook selects on it
Key = tuple[str, str, str]  # namespace, Deployment (and DatabaseMigration) name, image


class IndexedStore(dict[tuple[str, str, str, str], dict[str, Any]]):
    """The emulator's store, indexed as a real API server's watch cache is: by kind and
    namespace, and by owner (for garbage collection). Writes go through `[key] = obj` and
    `pop(key)`, the only two the emulator makes."""

    def __init__(self) -> None:
        super().__init__()
        self.by_kind: dict[tuple[str, str, str], set[tuple[str, str, str, str]]] = {}
        self.by_owner: dict[str, set[tuple[str, str, str, str]]] = {}

    def __setitem__(self, key: tuple[str, str, str, str], obj: dict[str, Any]) -> None:
        if key in self:
            self._unindex(key, self[key])
        super().__setitem__(key, obj)
        self.by_kind.setdefault(key[:3], set()).add(key)
        for owner in obj.get("metadata", {}).get("ownerReferences") or []:
            self.by_owner.setdefault(str(owner.get("uid")), set()).add(key)

    def pop(self, key: tuple[str, str, str, str], *default: Any) -> Any:
        if key in self:
            self._unindex(key, self[key])
        return super().pop(key, *default)

    def _unindex(self, key: tuple[str, str, str, str], obj: dict[str, Any]) -> None:
        self.by_kind.get(key[:3], set()).discard(key)
        for owner in obj.get("metadata", {}).get("ownerReferences") or []:
            self.by_owner.get(str(owner.get("uid")), set()).discard(key)


@attrs.define(kw_only=True)
class ListingEmulator(CountingEmulator):
    """The tests' emulator, answering as a real API server does from indexes rather than by
    walking its whole store: at 200 Deployments the store holds thousands of objects (pods,
    ReplicaSets, Jobs, the operator's Events), and the tests' emulator walks all of them for each
    list (its objects, and the latest resourceVersion) and for each deletion (dependents to
    collect), which made the emulator, not the operator, the bottleneck (py-spy: 60% of the
    bench process's samples). The same objects, in the same order, are returned."""

    _latest_version: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._store = IndexedStore()
        issued = self._versions

        def recorded() -> Iterator[int]:
            for version in issued:
                self._latest_version = version
                yield version

        self._versions = recorded()  # type: ignore[assignment]

    @property
    def _index(self) -> IndexedStore:
        assert isinstance(self._store, IndexedStore)
        return self._store

    def _stored_keys(
        self, group: str, plural: str, namespace: str | None
    ) -> list[tuple[str, str, str, str]]:
        if namespace is None:
            keys = [
                key
                for kind, members in self._index.by_kind.items()
                if kind[:2] == (group, plural)
                for key in members
            ]
        else:
            keys = list(self._index.by_kind.get((group, plural, namespace), ()))
        keys.sort()
        return keys

    def _last_version(self) -> str:
        """The latest resourceVersion issued (a real server's is its store's revision)."""
        return str(self._latest_version)

    async def _collect_dependents(self, owner_uid: str) -> None:
        for key in sorted(self._index.by_owner.get(owner_uid, ())):
            if key in self._store:
                await self._delete(key)


def webhook_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the operator's webhook server, valid for localhost by its
    subject alternative names (what a client checks), and its key."""
    certificate, key = folder / "webhook.crt", folder / "webhook.key"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    command += ["-keyout", str(key), "-out", str(certificate)]
    subprocess.run(command, check=True, capture_output=True)
    return certificate, key


def trust_webhook_certificate(certificate: Path) -> None:
    """The API server trusts the webhook through the caBundle of the chart's
    MutatingWebhookConfiguration; the emulator calls webhooks with aiohttp's default client
    context, so the certificate joins that context's trusted ones (in this process only)."""
    context: ssl.SSLContext = aiohttp.connector._SSL_CONTEXT_VERIFIED
    context.load_verify_locations(cafile=str(certificate))


def gate_webhook(port: int) -> MutatingWebhook:
    """The gate, registered as the chart's MutatingWebhookConfiguration registers it."""
    url = f"https://localhost:{port}/{GATE_HANDLER_ID}"
    return MutatingWebhook(
        name="gate-deployment.stagecraft.dev",
        group="apps",
        plural="deployments",
        url=lambda: url,
    )


def run_document(image: str) -> str:
    """What the runner leaves in its termination message after a successful run (docs/cli.md)."""
    tag = image.rsplit(":", 1)[-1]
    document = {
        "version": 1,
        "kind": "run",
        "status": "succeeded",
        "engine": "raw",
        "database": "postgresql://app:***@db:5432/shop",
        "fingerprint": f"{tag:0>16}"[-16:],
        "dry_run": False,
        "applied": [{"id": f"{tag}_release.sql", "duration_ms": 4}],
        "applied_total": 1,
        "skipped": [],
        "error": None,
    }
    return json.dumps(document)


def application_image(job: dict[str, Any]) -> str:
    """The application image a migration Job takes its files from (its init container's)."""
    pod_spec = job["spec"]["template"]["spec"]
    containers = pod_spec.get("initContainers") or pod_spec["containers"]
    return str(containers[0]["image"])


@dataclass
class JobSucceeder:
    """The Job controller and kubelet, reduced to what the operator sees of a successful run: a
    fixed time after a Job is created, its pod appears terminated with the runner's run document
    as termination message, then the Job is marked Complete. No migration runs (that is the
    runner's time, not the operator's)."""

    emulator: CountingEmulator
    seconds: float
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def on_write(self, event: str, plural: str, obj: dict[str, Any]) -> None:
        labels = obj["metadata"].get("labels") or {}
        if plural == "jobs" and event == "ADDED" and labels.get(MANAGED_BY_LABEL) == MANAGED_BY:
            task = asyncio.create_task(self._succeed(obj))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    async def _succeed(self, job: dict[str, Any]) -> None:
        started = now()
        await asyncio.sleep(self.seconds)
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        if self.emulator.stored("batch", "jobs", namespace, name) is None:
            return
        await self.emulator.put_object("", "pods", self._pod(job))
        finished = now()
        status = completed_job_status(started, finished)
        await self.emulator.write_status("batch", "jobs", namespace, name, status)

    def _pod(self, job: dict[str, Any]) -> dict[str, Any]:
        metadata, template = job["metadata"], job["spec"]["template"]
        terminated = {"exitCode": 0, "reason": "Completed", "finishedAt": now()}
        init = [
            {"name": container["name"], "state": {"terminated": terminated}}
            for container in template["spec"].get("initContainers") or []
        ]
        message = run_document(application_image(job))
        runner = {
            "name": RUNNER_CONTAINER,
            "state": {"terminated": {**terminated, "message": message}},
        }
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        labels.update(
            {"batch.kubernetes.io/job-name": metadata["name"], "job-name": metadata["name"]}
        )
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{metadata['name']}-bench",
                "namespace": metadata["namespace"],
                "labels": labels,
                "creationTimestamp": now(),
            },
            "spec": template["spec"],
            "status": {
                "phase": "Succeeded",
                "initContainerStatuses": init,
                "containerStatuses": [runner],
            },
        }

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _image_of(deployment: dict[str, Any]) -> str:
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        if container["name"] == CONTAINER:
            return str(container["image"])
    return ""


def _has_true(obj: dict[str, Any], condition_type: str) -> bool:
    return any(
        condition.get("type") == condition_type and condition.get("status") == "True"
        for condition in (obj.get("status") or {}).get("conditions") or []
    )


@dataclass
class Recorder:
    """When the emulator stored each moment the benchmark compares, per (namespace, name, image):
    perf_counter seconds of the bench process, taken in the write path, so that both ends of a
    delay are on one clock. The first write of each kind counts."""

    pods_of: Callable[[str], list[dict[str, Any]]]  # a namespace's pods, as stored now
    shipped: dict[Key, float] = field(default_factory=dict)  # the template got the image
    job_created: dict[Key, float] = field(default_factory=dict)
    job_completed: dict[Key, float] = field(default_factory=dict)  # Complete written
    released: dict[Key, float] = field(default_factory=dict)  # unpaused, hash approved
    rolled_out: dict[Key, float] = field(default_factory=dict)  # complete, as post_deploy asks
    ready: dict[Key, float] = field(default_factory=dict)  # DatabaseMigration Ready for the Job
    last_write: float = 0.0
    _jobs: dict[tuple[str, str], Key] = field(default_factory=dict)  # (namespace, Job) -> key
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_write(self, event: str, plural: str, obj: dict[str, Any]) -> None:
        moment = time.perf_counter()
        self.last_write = moment
        if event == "DELETED":
            return
        if plural == "deployments":
            self._deployment_written(obj, moment)
        elif plural == "jobs":
            self._job_written(event, obj, moment)
        elif plural == "databasemigrations":
            self._resource_written(obj, moment)

    def _deployment_written(self, deployment: dict[str, Any], moment: float) -> None:
        metadata = deployment["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        key = (namespace, name, _image_of(deployment))
        self._first(self.shipped, key, moment)
        gate = deployment_gate_hash(deployment, [CONTAINER])
        annotations = metadata.get("annotations") or {}
        if (
            not deployment["spec"].get("paused")
            and annotations.get(APPROVED_HASH_ANNOTATION) == gate
            and PENDING_HASH_ANNOTATION not in annotations
        ):
            self._first(self.released, key, moment)
        if key not in self.rolled_out:
            pods = [
                pod
                for pod in self.pods_of(namespace)
                if (pod["metadata"].get("labels") or {}).get("app") == name
            ]
            state = rollout_state(deployment, pods, gate_hash=gate, current_hash=gate)
            if state.complete:
                self._first(self.rolled_out, key, moment)

    def _job_written(self, event: str, job: dict[str, Any], moment: float) -> None:
        metadata = job["metadata"]
        owner = owning_resource(job)
        if owner is None:
            return
        key = (metadata["namespace"], owner, application_image(job))
        self._jobs[(metadata["namespace"], metadata["name"])] = key
        if event == "ADDED":
            self._first(self.job_created, key, moment)
        if _has_true(job, "Complete"):
            self._first(self.job_completed, key, moment)

    def _resource_written(self, resource: dict[str, Any], moment: float) -> None:
        last_run = (resource.get("status") or {}).get("lastRun") or {}
        key = self._jobs.get((resource["metadata"]["namespace"], str(last_run.get("job"))))
        if (
            key is not None
            and last_run.get("result") == "Succeeded"
            and _has_true(resource, "Ready")
        ):
            self._first(self.ready, key, moment)

    def _first(self, moments: dict[Key, float], key: Key, moment: float) -> None:
        if key not in moments:
            moments[key] = moment
            self._changed.set()

    async def wait_for(
        self,
        moments: dict[Key, float],
        keys: list[Key],
        timeout: float,
        check: Callable[[], None],
        *,
        fail: bool = True,
    ) -> list[Key]:
        """Until every key has its moment; `check` raises if the operator died. The keys still
        without one after `timeout`: an error if `fail`, else returned."""
        deadline = time.monotonic() + timeout
        while not all(key in moments for key in keys):
            check()
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [key for key in keys if key not in moments]
                if not fail:
                    return missing
                raise RuntimeError(f"{len(missing)} never got there, for example {missing[:3]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
        return []
