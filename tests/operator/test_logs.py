"""The operator's log keeps what concerns DatabaseMigrations, warnings and failures, and drops
the success of every handler that only follows other objects."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest

from stagecraft.operator.logs import (
    OBJECTS_LOGGER,
    QUIET_HANDLER_IDS,
    QUIET_WEBHOOK_IDS,
    QuietFollowing,
    configure_logging,
)
from stagecraft.operator.main import build_registry, register_namespace_scope
from stagecraft.operator.reconcile import Reconciler
from stagecraft.operator.scoping import NamespaceScope, parse_selector


def _kept(message: str, level: int = logging.INFO) -> bool:
    record = logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)
    return QuietFollowing().filter(record)


def test_the_successes_of_handlers_that_only_follow_are_dropped() -> None:
    assert not _kept("Handler 'deployment' succeeded.")
    assert not _kept("Handler 'job' succeeded.")
    assert not _kept("Webhook 'gate-deployment' succeeded.")


def test_what_concerns_a_resource_and_every_failure_are_kept() -> None:
    assert _kept("Handler 'reconcile-created' succeeded.")
    assert _kept("Creation is processed: 1 succeeded; 0 failed.")
    assert _kept("Handler 'deployment' failed with an exception. Will ignore.", logging.ERROR)
    assert _kept("Handler 'deployment' succeeded.", logging.WARNING)


def test_every_quiet_id_is_one_the_operator_registers() -> None:
    """A renamed handler would be logged again: the ids must stay in step."""
    reconciler = cast(Reconciler, object())
    registry = build_registry(reconciler, resync_seconds=5.0)
    register_namespace_scope(registry, NamespaceScope(parse_selector("team=shop")), reconciler)
    # kopf's registries are private; kopf's own observer reads them the same way.
    handlers: list[Any] = list(registry._watching.get_all_handlers())
    webhooks: list[Any] = list(registry._webhooks.get_all_handlers())

    assert {handler.id for handler in handlers} >= QUIET_HANDLER_IDS
    assert {webhook.id for webhook in webhooks} >= QUIET_WEBHOOK_IDS


@pytest.fixture
def restored_logging() -> Any:
    root, access = logging.getLogger(), logging.getLogger("aiohttp.access")
    objects = logging.getLogger(OBJECTS_LOGGER)
    handlers, level, access_level = list(root.handlers), root.level, access.level
    filters = list(objects.filters)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    access.setLevel(access_level)
    objects.filters[:] = filters


def _quieted() -> bool:
    return any(isinstance(f, QuietFollowing) for f in logging.getLogger(OBJECTS_LOGGER).filters)


@pytest.mark.usefixtures("restored_logging")
def test_configured_logging_quiets_the_followers_and_the_access_log() -> None:
    configure_logging()

    assert logging.getLogger().level == logging.INFO
    assert _quieted()
    assert logging.getLogger("aiohttp.access").level == logging.WARNING


@pytest.mark.usefixtures("restored_logging")
def test_verbose_logging_keeps_everything() -> None:
    configure_logging()
    configure_logging(verbose=True)

    assert logging.getLogger().level == logging.DEBUG
    assert not _quieted()
    assert logging.getLogger("aiohttp.access").level == logging.NOTSET
