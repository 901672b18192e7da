"""The engine contract: what every migration engine provides, and the values it exchanges.

Adding an engine, step by step:

1. Subclass nothing: write a class with a unique ``id`` class attribute and the three methods of
   :class:`Engine` (``parse_options``, ``plan``, ``run``); add ``resolve`` and ``baseline``
   (:class:`SupportsResolve`) when the engine has a dirty or failed state a person can clear.
2. Parse ``options`` with a frozen dataclass model through :func:`options.parse_options`, so
   that bad options fail with :class:`InvalidOptions` naming the field.
3. Never read the environment: everything arrives in :class:`PlanOptions`/:class:`RunOptions`.
4. ``plan`` is read-only. ``run`` takes the lock, computes the plan again under it through the
   same code path, refuses blocking problems, then applies exactly that plan.
5. Commit each migration together with its tracking row (or, where the tool's users expect it,
   as Knex's do, the whole batch with its rows); record a migration that cannot run in a
   transaction as dirty first, so a crash leaves a visible dirty record, never a silent one.
6. Register: built-ins are imported by ``stagecraft.engines``; a third-party engine declares an
   entry point in the ``stagecraft.engines`` group naming its class.
7. Run :mod:`stagecraft.engines.conformance` from the engine's tests on every dialect it supports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable


class ProblemKind(StrEnum):
    """Why a plan is unsafe to run as it is. Engines share these kinds where the meaning matches."""

    CHECKSUM_MISMATCH = "checksum_mismatch"  # an applied migration's file was edited
    MISSING_FILE = "missing_file"  # an applied migration's file is gone
    OUT_OF_ORDER = "out_of_order"  # a pending migration sorts before the last applied one
    DIRTY = "dirty"  # a migration started outside a transaction and did not finish
    FAILED = "failed"  # the tool recorded a failed migration that must be resolved
    NEVER_APPLIED = "never_applied"  # the tool's own pending rule would skip this migration
    ORDER_AMBIGUOUS = "order_ambiguous"  # the tool's ordering differs from byte order
    LOCKED = "locked"  # the tool's own lock row is held


# Problems a person may choose to accept for one run; the rest must be resolved first.
ALLOWABLE_PROBLEMS: frozenset[str] = frozenset(
    {ProblemKind.CHECKSUM_MISMATCH, ProblemKind.MISSING_FILE, ProblemKind.OUT_OF_ORDER}
)


@dataclass(frozen=True)
class Problem:
    kind: str
    migration: str
    message: str

    @property
    def allowable(self) -> bool:
        return self.kind in ALLOWABLE_PROBLEMS

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "migration": self.migration, "message": self.message}


@dataclass(frozen=True)
class Migration:
    """A migration found in the migrations folder."""

    id: str  # the identity the tracking table records
    path: Path | None
    checksum: str | None
    transactional: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "file": str(self.path) if self.path else None,
            "checksum": self.checksum,
            "transactional": self.transactional,
        }


@dataclass(frozen=True)
class AppliedMigration:
    """A row of the tracking table."""

    id: str
    checksum: str | None
    applied_at: str | None = None
    execution_ms: int | None = None
    dirty: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "checksum": self.checksum,
            "applied_at": self.applied_at,
            "execution_ms": self.execution_ms,
            "dirty": self.dirty,
        }


@dataclass(frozen=True)
class Plan:
    """What a run would do now: read-only, serialisable, and identified by its fingerprint."""

    engine: str
    pending: tuple[Migration, ...]
    applied: tuple[AppliedMigration, ...]
    problems: tuple[Problem, ...] = ()

    @property
    def fingerprint(self) -> str:
        """Short hash of the pending migrations and their contents: binds a run to a review."""
        digest = hashlib.sha256(self.engine.encode())
        for migration in self.pending:
            digest.update(
                b"\0" + migration.id.encode() + b"\0" + (migration.checksum or "").encode()
            )
        return digest.hexdigest()[:16]

    def blocking_problems(self, allow: frozenset[str] = frozenset()) -> list[Problem]:
        return [p for p in self.problems if not (p.allowable and p.kind in allow)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "fingerprint": self.fingerprint,
            "pending": [m.to_dict() for m in self.pending],
            "applied": [a.to_dict() for a in self.applied],
            "problems": [p.to_dict() for p in self.problems],
        }


class ProgressListener(Protocol):
    """Told about each migration as a run applies it (the CLI draws progress from this)."""

    def started(self, migration: Migration, index: int, total: int) -> None: ...

    def finished(self, migration: Migration, index: int, total: int, duration_ms: int) -> None: ...


@dataclass(frozen=True)
class PlanOptions:
    path: Path
    database_url: str
    options: Mapping[str, Any] = field(default_factory=dict)
    lock_timeout: float = 60.0  # seconds a run waits for another runner's lock
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class RunOptions(PlanOptions):
    allow: frozenset[str] = frozenset()  # ProblemKinds accepted for this run
    expected_plan: str | None = None  # refuse unless the fresh plan has this fingerprint
    dry_run: bool = False
    progress: ProgressListener | None = None


@dataclass(frozen=True)
class AppliedResult:
    id: str
    duration_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "duration_ms": self.duration_ms}


@dataclass(frozen=True)
class RunReport:
    engine: str
    plan: Plan
    applied: tuple[AppliedResult, ...] = ()
    skipped: tuple[str, ...] = ()  # pending at plan time but applied meanwhile by another runner
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "fingerprint": self.plan.fingerprint,
            "dry_run": self.dry_run,
            "applied": [a.to_dict() for a in self.applied],
            "skipped": list(self.skipped),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


class Resolution(StrEnum):
    APPLIED = "applied"  # the person finished the migration by hand: record it as applied
    ROLLED_BACK = "rolled_back"  # the person undid it: forget the record so it runs again


class Engine(Protocol):
    """A migration engine. Instances are stateless; the registry creates them on demand."""

    id: ClassVar[str]

    def parse_options(self, options: Mapping[str, Any]) -> object:
        """Validate engine-specific options; raise InvalidOptions naming the field at fault."""
        ...

    def plan(self, opts: PlanOptions) -> Plan:
        """Read-only: pending, applied and problems, exactly as `run` would see them now."""
        ...

    def run(self, opts: RunOptions) -> RunReport:
        """Apply the plan computed under the lock; raise a StagecraftError on failure."""
        ...


@runtime_checkable
class SupportsResolve(Protocol):
    """Engines with a dirty or failed state that a person can clear."""

    def resolve(self, opts: PlanOptions, migration: str, outcome: Resolution) -> str: ...

    def baseline(self, opts: PlanOptions, up_to: str) -> list[str]: ...
