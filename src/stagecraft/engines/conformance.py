"""Checks every engine must pass, on every dialect it supports; engine tests call them.

The checks speak only through the Engine contract and a folder factory, so a third-party engine
can run them too: ``make_folder`` writes migrations in the engine's own format, each given as a
name and one SQL body, and returns the folder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .base import Engine, RunOptions, RunReport
from .database import connect
from .errors import MigrationFailed

FolderFactory = Callable[[Sequence[tuple[str, str]]], Path]

GOOD = [
    ("0001_first", "CREATE TABLE conformance_first (id integer PRIMARY KEY)"),
    ("0002_second", "CREATE TABLE conformance_second (id integer PRIMARY KEY)"),
    ("0003_third", "CREATE TABLE conformance_third (id integer PRIMARY KEY)"),
]
FAILING = (
    "0004_fails",
    "CREATE TABLE conformance_partial (id integer PRIMARY KEY);\n"
    "INSERT INTO conformance_missing_table VALUES (1)",
)


@dataclass(frozen=True)
class ConformanceCase:
    engine: Engine
    database_url: str
    make_folder: FolderFactory
    options: Mapping[str, Any] = field(default_factory=dict)

    def run_options(self, folder: Path, **overrides: Any) -> RunOptions:
        return replace(
            RunOptions(path=folder, database_url=self.database_url, options=self.options),
            **overrides,
        )


def _tables(url: str) -> set[str]:
    database = connect(url, read_only=True)
    try:
        return database.table_names()
    finally:
        database.close()


def check_plan_is_read_only(case: ConformanceCase) -> None:
    folder = case.make_folder(GOOD)
    before = _tables(case.database_url)
    first = case.engine.plan(case.run_options(folder))
    second = case.engine.plan(case.run_options(folder))
    assert _tables(case.database_url) == before, "plan() created or dropped tables"
    assert [m.id for m in first.pending] == [m.id for m in second.pending]
    assert len(first.pending) == len(GOOD), f"expected {len(GOOD)} pending, got {first.pending}"


def check_run_applies_exactly_the_plan(case: ConformanceCase) -> RunReport:
    folder = case.make_folder(GOOD)
    plan = case.engine.plan(case.run_options(folder))
    report = case.engine.run(case.run_options(folder))
    assert [a.id for a in report.applied] == [m.id for m in plan.pending]
    assert report.plan.fingerprint == plan.fingerprint
    assert {"conformance_first", "conformance_second", "conformance_third"} <= _tables(
        case.database_url
    )
    return report


def check_second_run_is_a_no_op(case: ConformanceCase) -> None:
    folder = case.make_folder(GOOD)
    case.engine.run(case.run_options(folder))
    again = case.engine.run(case.run_options(folder))
    assert again.applied == (), f"second run applied {again.applied}"
    plan = case.engine.plan(case.run_options(folder))
    assert plan.pending == (), plan
    assert plan.problems == (), plan


def check_concurrent_runs_apply_each_migration_once(
    case: ConformanceCase, runners: int = 4
) -> None:
    folder = case.make_folder(GOOD)
    with ThreadPoolExecutor(max_workers=runners) as pool:
        reports = list(
            pool.map(lambda _: case.engine.run(case.run_options(folder)), range(runners))
        )
    applied = sorted(a.id for report in reports for a in report.applied)
    assert len(applied) == len(GOOD) == len(set(applied)), f"applied across runners: {applied}"
    plan = case.engine.plan(case.run_options(folder))
    assert plan.pending == (), plan
    assert plan.problems == (), plan


def check_failure_records_nothing(case: ConformanceCase) -> None:
    folder = case.make_folder([*GOOD[:1], FAILING])
    failure: MigrationFailed | None = None
    try:
        case.engine.run(case.run_options(folder))
    except MigrationFailed as failed:
        failure = failed
    assert failure is not None, "a failing migration did not raise MigrationFailed"
    assert FAILING[0] in failure.migration, failure.migration
    assert not failure.dirty
    plan = case.engine.plan(case.run_options(folder))
    # An engine commits each migration (the one before the failure stays applied) or, as Knex
    # does by default, the whole batch (nothing stays); either way the error names what stayed.
    kept = [a.id for a in plan.applied if not a.dirty]
    assert kept == [a.id for a in failure.applied], (kept, failure.applied)
    assert len(kept) + len(plan.pending) == 2, plan
    assert FAILING[0] in plan.pending[-1].id
    assert "conformance_partial" not in _tables(case.database_url), "failed migration left a table"


ALL_CHECKS: tuple[Callable[[ConformanceCase], object], ...] = (
    check_plan_is_read_only,
    check_run_applies_exactly_the_plan,
    check_second_run_is_a_no_op,
    check_concurrent_runs_apply_each_migration_once,
    check_failure_records_nothing,
)
