"""Database URLs: which dialect a URL names, and how to show one without its password."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from .errors import InvalidDatabaseUrl

# scheme -> dialect module name; the only place that knows which schemes exist.
DIALECT_BY_SCHEME = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "sqlite": "sqlite",
}

_USERINFO_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*(?=@)")
_KEYWORD_PASSWORD = re.compile(r"(?P<head>password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.I)
REDACTED = "***"


def scheme_of(url: str) -> str:
    scheme, sep, _ = url.partition(":")
    if not sep or not scheme:
        raise InvalidDatabaseUrl(
            f"database URL {redact_url(url)!r} has no scheme; use postgresql://user@host/db "
            "or sqlite:///path/to/file.db"
        )
    return scheme.lower()


def dialect_of(url: str) -> str:
    scheme = scheme_of(url)
    try:
        return DIALECT_BY_SCHEME[scheme]
    except KeyError:
        known = ", ".join(sorted(DIALECT_BY_SCHEME))
        raise InvalidDatabaseUrl(
            f"unsupported database URL scheme {scheme!r} in {redact_url(url)!r}; supported: {known}"
        ) from None


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, in userinfo or in a password= parameter."""
    redacted = _USERINFO_PASSWORD.sub(lambda m: m.group("head") + REDACTED, url)
    return _KEYWORD_PASSWORD.sub(lambda m: m.group("head") + REDACTED, redacted)


def password_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.password:
        return unquote(parts.password)
    match = _KEYWORD_PASSWORD.search(url)
    return match.group(2).strip("'") if match else None


def scrub(text: str, url: str) -> str:
    """Remove the URL's password from any text (driver messages can echo connection strings)."""
    text = redact_url(text)
    password = password_of(url)
    if password and len(password) >= 3:
        text = text.replace(password, REDACTED)
    return text
