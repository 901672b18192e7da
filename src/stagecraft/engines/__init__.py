"""The migration engine library: the Engine contract, the registry and the built-in engines.

Importing this package declares the built-in engines; each engine's module (and its database
driver) loads when it is first looked up, so `stagecraft --help`, config checks and a run of one
engine stay fast.
"""

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
from .registry import declare_builtin, get, ids, register

for _engine_id, _origin in {
    "raw": "stagecraft.engines.raw.RawEngine",
    "drizzle": "stagecraft.engines.drizzle.DrizzleEngine",
    "prisma": "stagecraft.engines.prisma.PrismaEngine",
    "knex": "stagecraft.engines.knex.KnexEngine",
}.items():
    declare_builtin(_engine_id, _origin)

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
