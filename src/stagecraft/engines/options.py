"""Parsing engine options: each engine describes its options as a frozen dataclass.

pydantic validates non-empty options (types, bounds, unknown fields) against that dataclass. An
empty mapping takes the dataclass defaults directly: importing pydantic costs more than the
whole no-op plan of 5,000 migrations, and defaults need no validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from .errors import InvalidOptions

T = TypeVar("T")
_UNKNOWN_FIELD_ERRORS = frozenset({"unexpected_keyword_argument", "extra_forbidden"})

# Set as `__pydantic_config__` on option dataclasses: a misspelt option is an error, not ignored.
FORBID_UNKNOWN_FIELDS: dict[str, Any] = {"extra": "forbid"}


def parse_options(engine_id: str, model: type[T], options: Mapping[str, Any]) -> T:
    if not options:
        return model()
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(model).validate_python(dict(options))
    except ValidationError as error:
        known = ", ".join(field.name for field in fields(model))  # type: ignore[arg-type]
        problems = [
            (
                ".".join(str(part) for part in issue["loc"]) or "options",
                f"unknown option; known options: {known}"
                if issue["type"] in _UNKNOWN_FIELD_ERRORS
                else issue["msg"],
            )
            for issue in error.errors()
        ]
        raise InvalidOptions(engine_id, problems) from None
