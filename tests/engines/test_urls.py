"""Database URLs: dialect by scheme, and passwords never shown."""

from __future__ import annotations

import pytest

from stagecraft.engines.errors import InvalidDatabaseUrl
from stagecraft.engines.sqlite import sqlite_path
from stagecraft.engines.urls import dialect_of, redact_url, scrub


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:hunter2@db:5432/shop", "postgresql://app:***@db:5432/shop"),
        (
            "postgres://app:p%40ss@db/shop?sslmode=require",
            "postgres://app:***@db/shop?sslmode=require",
        ),
        ("postgresql://app@db/shop", "postgresql://app@db/shop"),
        (
            "postgresql://db/shop?password=hunter2&sslmode=require",
            "postgresql://db/shop?password=***&sslmode=require",
        ),
        (
            "host=db user=app password='a b c' dbname=shop",
            "host=db user=app password=*** dbname=shop",
        ),
        ("sqlite:///local.db", "sqlite:///local.db"),
    ],
)
def test_redaction_hides_passwords_in_every_url_form(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_scrub_removes_the_password_wherever_a_message_repeats_it() -> None:
    url = "postgresql://app:hunter2@db/shop"
    assert "hunter2" not in scrub("auth failed for hunter2 at postgresql://app:hunter2@db", url)


@pytest.mark.parametrize(
    ("url", "dialect"),
    [
        ("postgresql://x/y", "postgres"),
        ("postgres://x/y", "postgres"),
        ("SQLite:///a.db", "sqlite"),
    ],
)
def test_the_scheme_picks_the_dialect(url: str, dialect: str) -> None:
    assert dialect_of(url) == dialect


def test_an_unsupported_scheme_lists_the_supported_ones_without_the_password() -> None:
    with pytest.raises(InvalidDatabaseUrl) as raised:
        dialect_of("mysql://root:hunter2@db/x")
    assert "postgresql" in str(raised.value)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:////abs/file.db", "/abs/file.db"),
        ("sqlite:local.db", "local.db"),
        ("sqlite:///with%20space.db", "with space.db"),
    ],
)
def test_sqlite_urls_name_a_file(url: str, path: str) -> None:
    assert sqlite_path(url) == path


def test_a_sqlite_url_with_a_host_is_refused() -> None:
    with pytest.raises(InvalidDatabaseUrl, match="names a host"):
        sqlite_path("sqlite://host/file.db")
