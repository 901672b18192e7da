"""The knex engine passes the engine conformance checks on PostgreSQL, running the real Knex."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from stagecraft.engines import get
from stagecraft.engines.conformance import ALL_CHECKS, ConformanceCase
from tests.engines.knex_projects import js_migration, make_project


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda check: check.__name__)
def test_knex_engine_conforms(
    check: Callable[[ConformanceCase], object], postgres_url: str, tmp_path: Path
) -> None:
    projects = itertools.count()

    def make_folder(migrations: Sequence[tuple[str, str]]) -> Path:
        return make_project(
            tmp_path / f"project-{next(projects)}",
            {f"{name}.js": js_migration(sql) for name, sql in migrations},
        )

    check(ConformanceCase(engine=get("knex"), database_url=postgres_url, make_folder=make_folder))
