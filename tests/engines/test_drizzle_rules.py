"""Drizzle's pending rule and the problems Stagecraft adds to it, in memory."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from stagecraft.engines import ProblemKind
from stagecraft.engines.drizzle_folder import DrizzleMigration
from stagecraft.engines.drizzle_rules import TrackingRow, compare_with_journal, js_number


def entry(tag: str, when: int, checksum: str | None = None) -> DrizzleMigration:
    return DrizzleMigration(id=tag, path=None, checksum=checksum or f"hash-{tag}", when=when)


def row(created_at: object, hash_: str) -> TrackingRow:
    return TrackingRow(id=None, hash=hash_, created_at=created_at)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 0.0), (5, 5.0), (Decimal("7"), 7.0), ("12", 12.0), ("", 0.0), (2.5, 2.5)],
)
def test_js_number_converts_like_javascripts_number(value: object, expected: float) -> None:
    assert js_number(value) == expected


def test_js_number_of_text_that_is_no_number_is_nan() -> None:
    assert math.isnan(js_number("soon"))


def test_without_rows_every_entry_is_pending_in_journal_order() -> None:
    entries = [entry("b", 20), entry("a", 10)]
    plan = compare_with_journal("drizzle", entries, [])
    assert [m.id for m in plan.pending] == ["b", "a"]
    assert plan.problems == ()


def test_only_entries_newer_than_the_newest_row_are_pending() -> None:
    entries = [entry("a", 10), entry("b", 20), entry("c", 30)]
    plan = compare_with_journal("drizzle", entries, [row(20, "hash-b"), row(10, "hash-a")])
    assert [m.id for m in plan.pending] == ["c"]
    assert [a.id for a in plan.applied] == ["a", "b"]
    assert plan.problems == ()


def test_an_entry_as_old_as_the_newest_row_without_a_row_is_never_applied() -> None:
    entries = [entry("a", 10), entry("b", 20), entry("late", 15)]
    plan = compare_with_journal("drizzle", entries, [row(20, "hash-b"), row(10, "hash-a")])
    assert plan.pending == ()
    assert [(p.kind, p.migration) for p in plan.problems] == [(ProblemKind.NEVER_APPLIED, "late")]
    assert "(b, created_at 20)" in plan.problems[0].message


def test_entries_sharing_a_when_each_find_their_own_row() -> None:
    entries = [entry("a", 10), entry("b", 10)]
    plan = compare_with_journal("drizzle", entries, [row(10, "hash-b"), row(10, "hash-a")])
    assert plan.problems == ()
    assert sorted(a.id for a in plan.applied) == ["a", "b"]


def test_a_row_with_another_hash_is_an_edit_and_a_row_without_entry_is_reported() -> None:
    entries = [entry("a", 10)]
    plan = compare_with_journal("drizzle", entries, [row(30, "hash-x"), row(10, "old")])
    kinds = [(p.kind, p.migration) for p in plan.problems]
    assert kinds == [
        (ProblemKind.CHECKSUM_MISMATCH, "a"),
        (ProblemKind.MISSING_FILE, "created_at 30"),
    ]


def test_a_newest_row_that_is_no_number_stops_drizzle_applying_anything() -> None:
    # Number("soon") is NaN and NaN < when is false: Drizzle then applies nothing, ever.
    plan = compare_with_journal("drizzle", [entry("a", 10)], [row("soon", "hash-z")])
    assert plan.pending == ()
    assert [p.kind for p in plan.problems] == [ProblemKind.NEVER_APPLIED, ProblemKind.MISSING_FILE]
