"""Run and retry requests are annotation tokens, acted on once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stagecraft.operator.requests import (
    InvalidPlanHash,
    RunRequest,
    new_token,
    parse_run_request,
    request_handled,
    retry_patch,
    run_request_patch,
    run_request_value,
)


def test_tokens_say_when_and_who_and_never_repeat() -> None:
    moment = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    first, second = new_token("alice", moment), new_token("alice", moment)
    assert first.startswith("20260301T093000Z-alice-")
    assert first != second


def test_patches_write_the_request_annotations() -> None:
    assert retry_patch("t") == {"metadata": {"annotations": {"stagecraft.dev/retry": "t"}}}
    assert run_request_patch("t") == {
        "metadata": {"annotations": {"stagecraft.dev/run-request": "t"}}
    }


def test_a_request_is_handled_once_the_status_records_its_token() -> None:
    assert request_handled({"handledRunRequest": "t1"}, "t1")
    assert request_handled({"handledRetry": "t1"}, "t1")
    assert not request_handled({"handledRetry": "t0"}, "t1")


def test_the_requester_cannot_break_the_token_format() -> None:
    token = new_token("dev;plan=x y", datetime(2026, 3, 1, tzinfo=UTC))
    assert token.startswith("20260301T000000Z-dev-plan-x-y-")
    assert parse_run_request(token) == RunRequest(token=token, plan=None)


def test_a_run_request_can_be_bound_to_a_reviewed_plan() -> None:
    patch = run_request_patch("t", plan="684b699ac4419847")
    value = patch["metadata"]["annotations"]["stagecraft.dev/run-request"]
    assert value == "t;plan=684b699ac4419847"
    assert parse_run_request(value) == RunRequest(token="t", plan="684b699ac4419847")


def test_an_unbound_run_request_is_the_token_alone() -> None:
    assert run_request_value("t") == "t"
    assert parse_run_request("t") == RunRequest(token="t", plan=None)


@pytest.mark.parametrize("plan", ["", "XYZ", "684B699AC4419847", "abc", "a" * 65, "abc;plan=1"])
def test_a_plan_hash_must_look_like_one(plan: str) -> None:
    with pytest.raises(InvalidPlanHash, match="not a plan hash"):
        run_request_value("t", plan)
