"""Fixtures for the operator's end-to-end tests: a running emulated cluster per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.operator.harness import Cluster, running_cluster


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path / "cluster") as running:
        yield running
