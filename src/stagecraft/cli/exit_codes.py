"""The CLI's exit codes: a stable contract for scripts, CI jobs and the operator's Job runner."""

from __future__ import annotations

from enum import IntEnum

from ..engines.errors import (
    DatabaseUnavailable,
    LockTimeout,
    MigrationFailed,
    PlanChanged,
    RunRefused,
    StagecraftError,
)
from .cluster import ClusterUnreachable


class ExitCode(IntEnum):
    OK = 0
    MIGRATION_FAILED = 1  # a migration's SQL failed; nothing of it was recorded unless dirty
    INVALID_INPUT = 2  # bad command line, config, options, URL or migrations folder
    # cannot connect (to the database, or the API server for `--cluster`), connection lost, or
    # lock wait exceeded: retry later
    DATABASE_UNAVAILABLE = 3
    REFUSED = 4  # the plan has problems (dirty, drift, missing, out of order) or changed


# Checked in order; the first matching type decides. Every other StagecraftError is bad input.
_BY_ERROR: tuple[tuple[type[StagecraftError], ExitCode], ...] = (
    (MigrationFailed, ExitCode.MIGRATION_FAILED),
    (DatabaseUnavailable, ExitCode.DATABASE_UNAVAILABLE),
    (LockTimeout, ExitCode.DATABASE_UNAVAILABLE),
    (ClusterUnreachable, ExitCode.DATABASE_UNAVAILABLE),
    (RunRefused, ExitCode.REFUSED),
    (PlanChanged, ExitCode.REFUSED),
)


def exit_code_for(error: StagecraftError) -> ExitCode:
    for error_type, code in _BY_ERROR:
        if isinstance(error, error_type):
            return code
    return ExitCode.INVALID_INPUT
