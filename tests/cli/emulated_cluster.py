"""An emulated API server for the CLI's cluster commands, and a kubeconfig that points at it.

The CLI runs as a real process and reaches the emulator over HTTP exactly as it would reach a
cluster; the emulator runs in the test's event loop, so the tests wait for the process with
asyncio (a blocking wait would stop the emulator from answering).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import yaml

from stagecraft.operator.models import API_VERSION, GROUP, KIND, PLURAL
from tests.operator.emulator import ApiServerEmulator
from tests.operator.harness import _declare_custom_resource

PROCESS_TIMEOUT = 120.0  # seconds; a bound for hangs, never an expectation of speed


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


def write_kubeconfig(path: Path, server: str, namespace: str = "default") -> Path:
    """A kubeconfig like a cluster's, with a dummy token (the emulator checks none)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "not-a-real-token"}}],
        "contexts": [
            {"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}},
            {
                "name": "team",
                "context": {"cluster": "emulator", "user": "tester", "namespace": namespace},
            },
        ],
        "current-context": "team",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@dataclass
class EmulatedCluster:
    emulator: ApiServerEmulator
    server: str
    kubeconfig: Path

    async def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        metadata: dict[str, Any] = {"name": name, "labels": labels or {}}
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
        await self.emulator.put_object("", "namespaces", namespace)

    async def create_database_migration(
        self, namespace: str, name: str, spec: dict[str, Any]
    ) -> None:
        resource = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        await self.emulator.put_object(GROUP, PLURAL, resource)

    def database_migration(self, namespace: str, name: str) -> dict[str, Any]:
        stored = self.emulator.stored(GROUP, PLURAL, namespace, name)
        assert stored is not None, f"DatabaseMigration {namespace}/{name} is gone"
        return stored

    def annotations(self, namespace: str, name: str) -> dict[str, str]:
        return dict(self.database_migration(namespace, name)["metadata"].get("annotations", {}))

    def jobs(self, namespace: str) -> list[dict[str, Any]]:
        return self.emulator.stored_objects("batch", "jobs", namespace)


async def run_stagecraft(*args: str, env: dict[str, str] | None = None) -> Finished:
    """`stagecraft ARGS` as a process, awaited without blocking the emulator's loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stagecraft", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT)
    assert process.returncode is not None
    return Finished(process.returncode, stdout.decode(), stderr.decode())


@asynccontextmanager
async def emulated_cluster(
    workdir: Path, namespace: str = "default"
) -> AsyncIterator[EmulatedCluster]:
    emulator = ApiServerEmulator()
    _declare_custom_resource(emulator)
    async with emulator, kmock.Server(emulator) as server:
        url = str(server.url).rstrip("/")
        workdir.mkdir(parents=True, exist_ok=True)
        kubeconfig = write_kubeconfig(workdir / "kubeconfig", url, namespace)
        yield EmulatedCluster(emulator, url, kubeconfig)
