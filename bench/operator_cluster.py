"""What bench_operator.py runs an operator against: the tests' API-server emulator, a recorder of
when each resource's Job and status were stored, a Job controller that only completes Jobs, and
the operator as a process of its own (so that its CPU time and memory are its alone).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import attrs
import kmock
from tests.operator.emulator import ApiServerEmulator, now

from stagecraft.operator.models import API_VERSION, GROUP, KIND, PLURAL, SINGULAR, VERSION

NAMESPACE = "bench"
STOP_TIMEOUT = 15.0  # seconds an operator gets to exit after SIGTERM
WATCH_TIMEOUT = 120.0  # seconds an operator gets to start and open its watches
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_notes() -> str:
    """The machine and the versions under test, for both operator benchmarks' reports."""
    load1, load5, load15 = os.getloadavg()
    stamp = datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Machine: {os.cpu_count()} cores shared with other work during the run (load average "
        f"{load1:.2f}, {load5:.2f}, {load15:.2f} at the end), Python {platform.python_version()}, "
        f"kopf {version('kopf')}, kmock {version('kmock')}, {stamp}."
    )


def completed_job_status(started: str, finished: str) -> dict[str, Any]:
    """A Job's status as the Job controller writes it when its one pod succeeded."""
    condition = {"status": "True", "reason": "CompletionsReached", "lastTransitionTime": finished}
    return {
        "startTime": started,
        "completionTime": finished,
        "succeeded": 1,
        "active": 0,
        "conditions": [
            {**condition, "type": "SuccessCriteriaMet"},
            {**condition, "type": "Complete"},
        ],
    }


@attrs.define(kw_only=True)
class CountingEmulator(ApiServerEmulator):
    """The tests' emulator, its requests counted by method and resource for the tables."""

    @property
    def served(self) -> Counter[str]:
        """Since `asked` was last cleared: `GET deployments`, `PATCH databasemigrations/status`."""
        served: Counter[str] = Counter()
        for asked, count in self.asked.items():
            served[f"{asked.method} {asked.resource}"] += count
        return served


def declare_custom_resource(emulator: ApiServerEmulator) -> None:
    emulator.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = kmock.ResourceInfo(
        kind=KIND,
        singular=SINGULAR,
        namespaced=True,
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    )


def _owner(job: dict[str, Any]) -> str | None:
    for owner in job["metadata"].get("ownerReferences", []):
        if owner.get("kind") == KIND:
            return str(owner["name"])
    return None


@dataclass
class Timeline:
    """When the emulator stored each resource, its first Job, and its first status that names a
    Job (`status.lastRun.job`, which both operators write): perf_counter seconds."""

    created: dict[str, float] = field(default_factory=dict)
    job: dict[str, float] = field(default_factory=dict)
    status: dict[str, float] = field(default_factory=dict)
    last_write: float = 0.0
    _waiters: dict[str, asyncio.Event] = field(default_factory=dict)

    async def on_write(self, event: str, plural: str, obj: dict[str, Any]) -> None:
        moment = time.perf_counter()
        self.last_write = moment
        name = obj["metadata"]["name"]
        if plural == PLURAL and event == "ADDED":
            self.created.setdefault(name, moment)
        elif plural == PLURAL and event == "MODIFIED" and name not in self.status:
            if ((obj.get("status") or {}).get("lastRun") or {}).get("job"):
                self.status[name] = moment
                self._waiter(name).set()
        elif plural == "jobs" and event == "ADDED":
            owner = _owner(obj)
            if owner is not None:
                self.job.setdefault(owner, moment)

    def _waiter(self, name: str) -> asyncio.Event:
        return self._waiters.setdefault(name, asyncio.Event())

    async def wait_for_status(self, name: str, timeout: float) -> None:
        await asyncio.wait_for(self._waiter(name).wait(), timeout)

    def latencies(self, names: list[str]) -> tuple[list[float], list[float]]:
        """Seconds from creation to the Job, and to the status, of each resource."""
        to_job = [self.job[name] - self.created[name] for name in names]
        to_status = [self.status[name] - self.created[name] for name in names]
        return to_job, to_status


@dataclass
class JobCompleter:
    """The Job controller's visible effect and nothing else: a Job is marked Complete a fixed time
    after it is created (no pod runs), so resources reach their steady state as in a cluster."""

    emulator: ApiServerEmulator
    seconds: float
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def on_write(self, event: str, plural: str, obj: dict[str, Any]) -> None:
        if plural == "jobs" and event == "ADDED":
            task = asyncio.create_task(self._complete(obj["metadata"]["name"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    async def _complete(self, name: str) -> None:
        started = now()
        await asyncio.sleep(self.seconds)
        finished = now()
        status = completed_job_status(started, finished)
        if self.emulator.stored("batch", "jobs", NAMESPACE, name) is not None:
            await self.emulator.write_status("batch", "jobs", NAMESPACE, name, status)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for Stagecraft's webhook server, so that the operator runs as the
    chart's default install runs it (webhooks on) and their cost is in the figures."""
    certificate, key = folder / "webhook.crt", folder / "webhook.key"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run(
        [*request, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(certificate)],
        check=True,
        capture_output=True,
    )
    return certificate, key


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_kubeconfig(path: Path, server: str) -> None:
    """What kubectl would use: the emulator over plain HTTP, a token nobody checks."""
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "bench", "user": {"token": "bench"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "bench"}}],
        "current-context": "emulator",
    }
    path.write_text(json.dumps(kubeconfig), encoding="utf-8")


@dataclass(frozen=True)
class Memory:
    rss_mib: float
    peak_mib: float  # VmHWM: the most the process ever had resident


@dataclass
class OperatorProcess:
    """An operator started as `python <arguments>` with a kubeconfig; its log goes to a file."""

    arguments: list[str]
    environment: dict[str, str]
    log: Path
    process: asyncio.subprocess.Process | None = None

    async def start(self, kubeconfig: Path) -> None:
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only a fallback
            "KUBECONFIG": str(kubeconfig),
            **self.environment,
        }
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, *self.arguments, env=environment, stdout=log, stderr=log
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.returncode is not None:
            tail = self.log.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise RuntimeError(f"the operator exited with {self.process.returncode}:\n{tail}")

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the operator process so far."""
        text = Path(f"/proc/{self.pid}/stat").read_text(encoding="utf-8")
        fields = text.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def memory(self) -> Memory:
        values: dict[str, float] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text(encoding="utf-8").splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024  # kB
        return Memory(rss_mib=values["VmRSS"], peak_mib=values["VmHWM"])

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def wait_until_watching(
    emulator: ApiServerEmulator, plurals: set[str], operator: OperatorProcess
) -> None:
    """kopf is ready to react once its watch streams are open."""
    deadline = time.monotonic() + WATCH_TIMEOUT
    while not plurals <= emulator.served_watches:
        operator.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the operator never watched {plurals - emulator.served_watches}")
        await asyncio.sleep(0.05)


def database_migration(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }
