"""The emulator serves Namespaces, the cluster-scoped objects kopf lists and watches when it
serves namespaces by name, glob or label (kmock 0.8 alone answers their paths with 500 or 404)."""

from __future__ import annotations

import asyncio

import kmock
from kubernetes import client

from tests.operator.emulator import ApiServerEmulator


async def test_namespaces_are_listed_read_and_patched_over_http() -> None:
    emulator = ApiServerEmulator()
    async with emulator, kmock.Server(emulator) as server:
        core = client.CoreV1Api(client.ApiClient(client.Configuration(host=str(server.url))))
        await emulator.put_object(
            "",
            "namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        )

        listed = await asyncio.to_thread(core.list_namespace)
        await asyncio.to_thread(core.patch_namespace, "shop", {"metadata": {"labels": {"a": "b"}}})
        read = await asyncio.to_thread(core.read_namespace, "shop")

    assert [item.metadata.name for item in listed.items if item.metadata] == ["shop"]
    assert read.metadata is not None
    assert read.metadata.labels == {"a": "b"}
    stored = emulator.stored("", "namespaces", "", "shop")
    assert stored is not None
    assert stored["metadata"]["labels"] == {"a": "b"}
