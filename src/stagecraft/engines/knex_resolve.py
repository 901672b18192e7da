"""`stagecraft migrate resolve` and `baseline` for Knex: Stagecraft's started rows, Knex's record.

A dirty migration (started, not recorded by Knex) is settled by a person: `--applied` writes the
row Knex would have written, `--rolled-back` forgets the started row so that it runs again.
`baseline` records existing files as applied, in one batch, as Knex would have.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Migration, Resolution
from .errors import ResolveError
from .knex_tables import KnexTables


def migration_named(name: str, found: Sequence[Migration]) -> Migration:
    """Accept a file name with or without its extension."""
    matches = [m for m in found if name in (m.id, m.id.rsplit(".", 1)[0])]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(m.id for m in found[-5:]) or "(none)"
    raise ResolveError(f"no single Knex migration file named {name!r}; the last ones: {known}")


def resolve_started(tables: KnexTables, name: str, outcome: Resolution) -> str:
    recorded = {row.name for row in tables.recorded()}
    if name not in tables.started() - recorded:
        raise ResolveError(
            f"{name} is not dirty: only a migration that started and that Knex did not record "
            "can be resolved (see `stagecraft migrate plan`)"
        )
    tables.forget_started({name})
    if outcome is Resolution.ROLLED_BACK:
        return f"{name}: started row removed; it is pending again"
    tables.record_applied([name])
    return f"{name}: recorded in {tables.table} as applied, as Knex would have recorded it"


def baseline_until(tables: KnexTables, found: Sequence[Migration], last: Migration) -> list[str]:
    """Record every file up to `last` (in Knex's order) that is not recorded yet."""
    tables.ensure_knex_tables()
    recorded = {row.name for row in tables.recorded()}
    cut = found.index(last)
    marked = [m.id for m in found[: cut + 1] if m.id not in recorded]
    if marked:
        tables.record_applied(marked)
    return marked
