"""The drizzle engine passes the engine conformance checks on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from stagecraft.engines import get
from stagecraft.engines.conformance import ALL_CHECKS, ConformanceCase
from tests.conftest import FolderWriter
from tests.engines.drizzle_folders import dialect_of_url, write_drizzle_folder


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda check: check.__name__)
def test_drizzle_engine_conforms(
    check: Callable[[ConformanceCase], object], database_url: str, write_folder: FolderWriter
) -> None:
    def make_folder(migrations: Sequence[tuple[str, str]]) -> Path:
        return write_drizzle_folder(
            write_folder,
            [(tag, f"{sql};\n") for tag, sql in migrations],
            dialect=dialect_of_url(database_url),
        )

    check(
        ConformanceCase(engine=get("drizzle"), database_url=database_url, make_folder=make_folder)
    )
