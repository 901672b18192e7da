"""The operator's log: kopf's, on stderr, without a line for every event it only follows.

kopf sets up logging only from its own CLI, so the operator does it (`python -m
stagecraft.operator` and `stagecraft operator` alike). At INFO kopf says "Handler 'x' succeeded."
after every handler it runs, and the operator follows every Deployment, ConfigMap and Job of the
cluster with handlers that mostly find nothing to do: in bench/bench_rollout.py, 200 rollouts
made 3,200 such lines for the Deployments alone, and aiohttp logged every webhook call again.
Those successes are dropped; everything about a DatabaseMigration, every warning and every
failure stays. `verbose` keeps everything, at DEBUG.
"""

from __future__ import annotations

import logging

import kopf

# The handlers and webhooks that run for objects the operator only follows.
QUIET_HANDLER_IDS = frozenset({"deployment", "configmap", "job", "namespace-scope"})
QUIET_WEBHOOK_IDS = frozenset({"gate-deployment", "validate-database-migration"})
_QUIET_MESSAGES = frozenset(
    {f"Handler {handler!r} succeeded." for handler in QUIET_HANDLER_IDS}
    | {f"Webhook {webhook!r} succeeded." for webhook in QUIET_WEBHOOK_IDS}
)


class QuietFollowing(logging.Filter):
    """Drops the successes of the handlers above; nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.getMessage() not in _QUIET_MESSAGES


_QUIET = QuietFollowing()
OBJECTS_LOGGER = "kopf.objects"  # where kopf says what its handlers did with each object


def configure_logging(*, verbose: bool = False) -> None:
    kopf.configure(verbose=verbose)
    objects, access = logging.getLogger(OBJECTS_LOGGER), logging.getLogger("aiohttp.access")
    if verbose:
        objects.removeFilter(_QUIET)
        access.setLevel(logging.NOTSET)
        return
    objects.addFilter(_QUIET)
    # The API server calls the webhooks; its audit log, not ours, records each call.
    access.setLevel(logging.WARNING)
