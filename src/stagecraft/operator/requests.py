"""Asking the operator for a run: the annotations `stagecraft migrate retry|run --cluster` write.

A request is a token in an annotation; the operator acts on a token once and records it in the
status (`handledRetry`, `handledRunRequest`), so writing the same token twice asks once and a new
token asks again. Tokens carry the time and who asked, for people reading the resource.

A run request may be bound to the plan that was reviewed: the annotation's value is then
`<token>;plan=<hash>` (the hash the status shows), and the whole value is what the status records
as handled. `parse_run_request` is the one reader of that format.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .models import RETRY_ANNOTATION, RUN_REQUEST_ANNOTATION

PLAN_MARKER = ";plan="
# A plan hash as the status and `stagecraft migrate plan` show it: lowercase hex.
PLAN_HASH_PATTERN = re.compile(r"^[0-9a-f]{8,64}$")
_REQUESTER_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class InvalidPlanHash(ValueError):
    """A `--plan` value that cannot be a plan hash; the message says what one looks like."""


@dataclass(frozen=True)
class RunRequest:
    token: str
    plan: str | None = None  # the reviewed plan's hash the run is bound to, if any


def new_token(requested_by: str, now: datetime | None = None) -> str:
    moment = (now or datetime.now(tz=UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    # The requester is for people to read; characters that could end the token are dropped.
    requester = _REQUESTER_UNSAFE.sub("-", requested_by).strip("-") or "unknown"
    return f"{moment}-{requester}-{uuid.uuid4().hex[:6]}"


def run_request_value(token: str, plan: str | None = None) -> str:
    """The run-request annotation's value: the token, bound to a plan hash when one is given."""
    if plan is None:
        return token
    if not PLAN_HASH_PATTERN.match(plan):
        raise InvalidPlanHash(
            f"{plan!r} is not a plan hash: expected 8 to 64 lowercase hexadecimal characters, "
            "as the resource's status shows it"
        )
    return f"{token}{PLAN_MARKER}{plan}"


def parse_run_request(value: str) -> RunRequest:
    """The token and the bound plan hash (None when unbound) of a run-request annotation."""
    token, marker, plan = value.partition(PLAN_MARKER)
    return RunRequest(token=token, plan=(plan.strip() or None) if marker else None)


def retry_patch(token: str) -> dict[str, Any]:
    """Merge patch asking for a fresh attempt now, whatever the last result was."""
    return {"metadata": {"annotations": {RETRY_ANNOTATION: token}}}


def run_request_patch(token: str, plan: str | None = None) -> dict[str, Any]:
    """Merge patch asking a manual-strategy resource to run once (bound to `plan` if given)."""
    return {"metadata": {"annotations": {RUN_REQUEST_ANNOTATION: run_request_value(token, plan)}}}


def request_handled(status: dict[str, Any], value: str) -> bool:
    """Whether the operator has acted on this annotation value (for a CLI that waits)."""
    return value in (status.get("handledRetry"), status.get("handledRunRequest"))
