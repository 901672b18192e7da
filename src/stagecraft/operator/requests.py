"""Asking the operator for a run: the annotations `stagecraft migrate retry|run --cluster` write.

A request is a token in an annotation; the operator acts on a token once and records it in the
status (`handledRetry`, `handledRunRequest`), so writing the same token twice asks once and a new
token asks again. Tokens carry the time and who asked, for people reading the resource.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from .models import RETRY_ANNOTATION, RUN_REQUEST_ANNOTATION


def new_token(requested_by: str, now: datetime | None = None) -> str:
    moment = (now or datetime.now(tz=UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{moment}-{requested_by}-{uuid.uuid4().hex[:6]}"


def retry_patch(token: str) -> dict[str, Any]:
    """Merge patch asking for a fresh attempt now, whatever the last result was."""
    return {"metadata": {"annotations": {RETRY_ANNOTATION: token}}}


def run_request_patch(token: str) -> dict[str, Any]:
    """Merge patch asking a manual-strategy resource to run once."""
    return {"metadata": {"annotations": {RUN_REQUEST_ANNOTATION: token}}}


def request_handled(status: dict[str, Any], token: str) -> bool:
    """Whether the operator has acted on this token (for a CLI that waits for the run)."""
    return token in (status.get("handledRetry"), status.get("handledRunRequest"))
