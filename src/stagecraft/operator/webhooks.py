"""Admission: reject a DatabaseMigration that reconcile would stall on as InvalidSpec.

The webhook runs the very checks of `validation.py` (stagecraft.yml's models and the engine
registry), so the message a user gets from `kubectl apply` is the one the Stalled condition would
carry on a cluster without the webhook.
"""

from __future__ import annotations

from typing import Any

import kopf

from .models import GROUP, PLURAL, VERSION
from .validation import validate_spec

VALIDATE_HANDLER_ID = "validate-database-migration"
HTTP_UNPROCESSABLE = 422  # what the API server itself answers for an invalid object


def reject_invalid_spec(spec: kopf.Spec, **_: Any) -> None:
    result = validate_spec(dict(spec))
    if not result.valid:
        raise kopf.AdmissionError(result.message, code=HTTP_UNPROCESSABLE)


def register_webhooks(registry: kopf.OperatorRegistry) -> None:
    kopf.on.validate(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id=VALIDATE_HANDLER_ID,
        operations=["CREATE", "UPDATE"],
    )(reject_invalid_spec)
