"""The prisma engine passes the engine conformance checks on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from stagecraft.engines import get
from stagecraft.engines.conformance import ALL_CHECKS, ConformanceCase
from tests.conftest import FolderWriter


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda check: check.__name__)
def test_prisma_engine_conforms(
    check: Callable[[ConformanceCase], object], database_url: str, write_folder: FolderWriter
) -> None:
    def make_folder(migrations: Sequence[tuple[str, str]]) -> Path:
        return write_folder({f"{name}/migration.sql": f"{sql};\n" for name, sql in migrations})

    check(ConformanceCase(engine=get("prisma"), database_url=database_url, make_folder=make_folder))
