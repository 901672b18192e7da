"""Pure plan computation: pending, drift, missing files, dirty records and out-of-order."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from stagecraft.engines.base import AppliedMigration, Migration, ProblemKind
from stagecraft.engines.planning import compare_by_identity


def found(*names: str, checksum: str = "c") -> list[Migration]:
    return [Migration(id=name, path=Path(name), checksum=checksum) for name in names]


def recorded(*names: str, checksum: str = "c", dirty: bool = False) -> list[AppliedMigration]:
    return [AppliedMigration(id=name, checksum=checksum, dirty=dirty) for name in names]


def compare(
    files: list[Migration], rows: list[AppliedMigration]
) -> tuple[list[str], list[tuple[str, str]]]:
    plan = compare_by_identity("raw", files, rows, sort_key=os.fsencode)
    return [m.id for m in plan.pending], [(p.kind, p.migration) for p in plan.problems]


def test_pending_are_the_unrecorded_files_in_folder_order() -> None:
    assert compare(found("1", "2", "3"), recorded("1")) == (["2", "3"], [])


def test_an_edited_applied_file_is_a_checksum_mismatch() -> None:
    _, problems = compare(found("1", checksum="new"), recorded("1", checksum="old"))
    assert problems == [(ProblemKind.CHECKSUM_MISMATCH, "1")]


def test_a_recorded_migration_without_its_file_is_missing() -> None:
    assert compare(found("2"), recorded("1", "2")) == ([], [(ProblemKind.MISSING_FILE, "1")])


def test_a_dirty_record_is_a_problem_and_not_pending() -> None:
    assert compare(found("1"), recorded("1", dirty=True)) == ([], [(ProblemKind.DIRTY, "1")])


def test_a_new_file_sorting_before_the_last_applied_is_out_of_order() -> None:
    pending, problems = compare(found("1", "2", "3"), recorded("1", "3"))
    assert pending == ["2"]
    assert problems == [(ProblemKind.OUT_OF_ORDER, "2")]


def test_only_drift_missing_and_order_can_be_allowed() -> None:
    plan = compare_by_identity(
        "raw",
        found("1", "3", checksum="new"),
        [*recorded("0", "1", checksum="old"), *recorded("2", dirty=True), *recorded("4")],
        sort_key=os.fsencode,
    )
    kinds = {p.kind for p in plan.problems}
    assert kinds == {
        ProblemKind.MISSING_FILE,
        ProblemKind.CHECKSUM_MISMATCH,
        ProblemKind.DIRTY,
        ProblemKind.OUT_OF_ORDER,
    }
    allow = frozenset(
        {ProblemKind.CHECKSUM_MISMATCH, ProblemKind.MISSING_FILE, ProblemKind.OUT_OF_ORDER}
    )
    assert [p.kind for p in plan.blocking_problems(allow)] == [ProblemKind.DIRTY]


def test_the_fingerprint_changes_with_pending_content_only() -> None:
    def fingerprint(files: list[Migration], rows: list[AppliedMigration]) -> str:
        return compare_by_identity("raw", files, rows, sort_key=os.fsencode).fingerprint

    base = fingerprint(found("1", "2"), recorded("1"))
    assert base == fingerprint(found("1", "2"), recorded("1", checksum="other"))
    assert base != fingerprint(found("1", "2", checksum="edited"), recorded("1"))
    assert base != fingerprint(found("1", "2", "3"), recorded("1"))


_names = st.lists(
    st.text(
        st.characters(codec="utf-8", exclude_characters="/\0"),
        min_size=1,
        max_size=12,
    ),
    unique=True,
    max_size=20,
)


@given(_names, st.data())
def test_property_applied_prefix_leaves_the_rest_pending_without_problems(
    names: list[str], data: st.DataObject
) -> None:
    ordered = sorted(names, key=os.fsencode)
    cut = data.draw(st.integers(min_value=0, max_value=len(ordered)))
    pending, problems = compare(found(*ordered), recorded(*ordered[:cut]))
    assert pending == ordered[cut:]
    assert problems == []


@given(_names, st.data())
def test_property_out_of_order_is_exactly_pending_below_the_last_applied(
    names: list[str], data: st.DataObject
) -> None:
    ordered = sorted(names, key=os.fsencode)
    applied = data.draw(st.lists(st.sampled_from(ordered), unique=True)) if ordered else []
    pending, problems = compare(found(*ordered), recorded(*applied))
    last = max((os.fsencode(name) for name in applied), default=None)
    expected = [n for n in pending if last is not None and os.fsencode(n) < last]
    assert [m for kind, m in problems if kind == ProblemKind.OUT_OF_ORDER] == expected
