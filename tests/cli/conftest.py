"""Fixtures for the CLI's cluster commands: an emulated API server per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.cli.emulated_cluster import EmulatedCluster, emulated_cluster


@pytest_asyncio.fixture
async def kube(tmp_path: Path) -> AsyncIterator[EmulatedCluster]:
    """An API server whose kubeconfig's current context has the namespace `shop`."""
    async with emulated_cluster(tmp_path / "cluster", namespace="shop") as cluster:
        yield cluster
