"""The migration engine library: the Engine contract, the registry and the built-in engines.

Importing this package registers the built-in engines. It imports no database driver: a driver
is loaded when an engine first connects, so `stagecraft --help` and config checks stay fast.
"""

from . import drizzle as _drizzle  # noqa: F401
from . import knex as _knex  # noqa: F401
from . import prisma as _prisma  # noqa: F401
from . import raw as _raw  # noqa: F401 - registers the built-in engine
from .base import (
    AppliedMigration,
    AppliedResult,
    Engine,
    Migration,
    Plan,
    PlanOptions,
    Problem,
    ProblemKind,
    ProgressListener,
    Resolution,
    RunOptions,
    RunReport,
    SupportsResolve,
)
from .errors import (
    DatabaseUnavailable,
    DuplicateEngine,
    EngineLoadError,
    InvalidDatabaseUrl,
    InvalidOptions,
    LockTimeout,
    MigrationFailed,
    MigrationSourceError,
    PlanChanged,
    ResolveError,
    RunRefused,
    StagecraftError,
    UnknownEngine,
)
from .registry import get, ids, register

__all__ = [
    "AppliedMigration",
    "AppliedResult",
    "DatabaseUnavailable",
    "DuplicateEngine",
    "Engine",
    "EngineLoadError",
    "InvalidDatabaseUrl",
    "InvalidOptions",
    "LockTimeout",
    "Migration",
    "MigrationFailed",
    "MigrationSourceError",
    "Plan",
    "PlanChanged",
    "PlanOptions",
    "Problem",
    "ProblemKind",
    "ProgressListener",
    "Resolution",
    "ResolveError",
    "RunOptions",
    "RunRefused",
    "RunReport",
    "StagecraftError",
    "SupportsResolve",
    "UnknownEngine",
    "get",
    "ids",
    "register",
]
