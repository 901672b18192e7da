"""What kopf remembers of an object between its events, built for the DatabaseMigrations only.

On every watch event of every kind it watches, kopf builds the object's "essence" (a deep copy
of the whole body, status included, from which it then drops the status) and compares it with
the essence stored after the last handled change, to find the causes of on.create and on.update
handlers. Only DatabaseMigrations have such handlers. The Deployments, Jobs, ConfigMaps and
Namespaces are followed by on.event and index handlers, which never read it, yet each of their
events paid for the copies: with 200 rollouts at once (about ten status writes each), building
and clearing essences was a fifth of the operator's event loop in a profile of
bench/bench_rollout.py, and every Deployment event waited behind it.

The storage keeps kopf's annotation and its format (an operator upgraded in place reads what the
previous one stored), builds nothing for the other kinds, and leaves a DatabaseMigration's status
out before copying instead of after.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import kopf

from .models import KIND


class DatabaseMigrationDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's default storage (the `last-handled-configuration` annotation), for one kind."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        if not _is_a_resource(body):
            return kopf.BodyEssence()  # nothing to compare: a fresh one, kopf may edit it
        fields = list(extra_fields or [])
        if fields:  # a handler filtering on a field, possibly in the status: kopf's way
            return super().build(body=body, extra_fields=fields)
        raw = {key: value for key, value in body.items() if key != "status"}
        without_status = kopf.Body(cast(kopf.RawBody, raw))
        return super().build(body=without_status)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        # Another kopf operator's on.update handlers may have left the annotation on a Deployment.
        return super().fetch(body=body) if _is_a_resource(body) else None


def _is_a_resource(body: kopf.Body) -> bool:
    """A DatabaseMigration, or a body that does not say its kind (kopf's way for those)."""
    return bool(body.get("kind", KIND) == KIND)
