"""Typed errors of the engine library, each written for the person who has to act on it.

The CLI maps each type to an exit code and the operator maps each to a condition reason, so the
type is the contract; the message is for humans and never contains a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import AppliedResult


class StagecraftError(Exception):
    """Base of every error Stagecraft raises on purpose."""


class UnknownEngine(StagecraftError, LookupError):
    def __init__(self, engine_id: str, known: list[str]) -> None:
        self.engine_id = engine_id
        self.known = known
        listed = ", ".join(known) if known else "(none)"
        super().__init__(f"unknown migration engine {engine_id!r}; registered engines: {listed}")


class DuplicateEngine(StagecraftError):
    def __init__(self, engine_id: str, existing: str, new: str) -> None:
        self.engine_id = engine_id
        super().__init__(
            f"migration engine id {engine_id!r} is registered twice: by {existing} and by {new}; "
            "engine ids must be unique, rename one of them"
        )


class EngineLoadError(StagecraftError):
    """A third-party engine's entry point could not be imported."""


class InvalidOptions(StagecraftError, ValueError):
    """Engine options that the engine's own model rejects. `problems` are (field, message)."""

    def __init__(self, engine_id: str, problems: list[tuple[str, str]]) -> None:
        self.engine_id = engine_id
        self.problems = problems
        lines = "; ".join(f"{name}: {message}" for name, message in problems)
        super().__init__(f"invalid options for engine {engine_id!r}: {lines}")


class InvalidDatabaseUrl(StagecraftError, ValueError):
    pass


class MigrationSourceError(StagecraftError):
    """The migrations folder or one of its files cannot be used as it is."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        self.path = path
        super().__init__(message)


class DatabaseUnavailable(StagecraftError):
    """The database could not be reached, or the connection broke; safe to retry later."""


class LockTimeout(StagecraftError):
    """Another runner held the migration lock for longer than the allowed wait."""


@dataclass(frozen=True)
class SqlFailure:
    """Where and why one SQL statement of a migration failed."""

    message: str
    sqlstate: str | None = None
    detail: str | None = None
    hint: str | None = None
    line: int | None = None
    column: int | None = None
    statement: str | None = None


class MigrationFailed(StagecraftError):
    """A migration's SQL failed. Nothing was recorded as applied unless `dirty` is true."""

    def __init__(
        self,
        migration: str,
        path: Path | None,
        failure: SqlFailure,
        *,
        dirty: bool = False,
        resolve_hint: str = "",
        outcome: str | None = None,
    ) -> None:
        """`outcome` replaces the closing line that says what was applied and recorded, for
        engines whose tool records failures its own way (Prisma's failed rows)."""
        self.migration = migration
        self.path = path
        self.failure = failure
        self.dirty = dirty
        # Migrations the same run applied before this one failed (they stay applied).
        self.applied: tuple[AppliedResult, ...] = ()
        where = str(path) if path else migration
        if failure.line is not None:
            where += f":{failure.line}:{failure.column or 1}"
        parts = [f"migration {migration} failed at {where}: {failure.message}"]
        if failure.sqlstate:
            parts[0] += f" (SQLSTATE {failure.sqlstate})"
        if failure.detail:
            parts.append(f"detail: {failure.detail}")
        if failure.hint:
            parts.append(f"hint: {failure.hint}")
        if outcome is not None:
            parts.append(outcome)
        elif dirty:
            parts.append(
                "it ran outside a transaction, so part of it may have been applied; it is "
                f"recorded as dirty and blocks further runs. {resolve_hint}".rstrip()
            )
        else:
            parts.append("nothing of it was applied or recorded")
        super().__init__("\n".join(parts))


@dataclass(frozen=True)
class RefusalReason:
    kind: str
    migration: str
    message: str


class RunRefused(StagecraftError):
    """The plan has problems that make running unsafe; nothing was run."""

    def __init__(self, reasons: list[RefusalReason], advice: str = "") -> None:
        self.reasons = reasons
        lines = [f"refusing to run: {len(reasons)} problem(s) need attention"]
        lines += [f"  - {reason.message}" for reason in reasons]
        if advice:
            lines.append(advice)
        super().__init__("\n".join(lines))


class PlanChanged(StagecraftError):
    """The pending migrations differ from the plan the caller reviewed."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"the plan changed since it was reviewed: expected plan {expected}, "
            f"the database and files now give plan {actual}; review the new plan and run again"
        )


class ResolveError(StagecraftError):
    """`migrate resolve` or `migrate baseline` was asked for something that does not apply."""
