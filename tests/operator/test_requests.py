"""Run and retry requests are annotation tokens, acted on once."""

from __future__ import annotations

from datetime import UTC, datetime

from stagecraft.operator.requests import (
    new_token,
    request_handled,
    retry_patch,
    run_request_patch,
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
