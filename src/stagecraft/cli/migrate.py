"""`stagecraft migrate plan|status|run|resolve|baseline`."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import Any

import click

from ..engines.base import (
    ALLOWABLE_PROBLEMS,
    PlanOptions,
    ProblemKind,
    Resolution,
    RunOptions,
    SupportsResolve,
)
from ..engines.errors import ResolveError, StagecraftError
from .common import fail, reports_errors, target_options
from .output import (
    PlainProgress,
    TerminalProgress,
    emit_json,
    plan_document,
    print_plan,
    print_run,
    print_status,
    run_document,
    status_rows,
)
from .target import Target, resolve_target

_ALLOW_FLAGS = [
    click.option(
        "--allow-checksum-mismatch",
        is_flag=True,
        help="Run even though applied migrations were edited.",
    ),
    click.option(
        "--allow-missing", is_flag=True, help="Run even though applied migrations' files are gone."
    ),
    click.option(
        "--allow-out-of-order",
        is_flag=True,
        help="Apply new migrations that sort before the last applied one.",
    ),
]


def _allow(kwargs: dict[str, Any]) -> frozenset[str]:
    chosen = {
        ProblemKind.CHECKSUM_MISMATCH: kwargs.pop("allow_checksum_mismatch", False),
        ProblemKind.MISSING_FILE: kwargs.pop("allow_missing", False),
        ProblemKind.OUT_OF_ORDER: kwargs.pop("allow_out_of_order", False),
    }
    return frozenset(kind for kind, on in chosen.items() if on and kind in ALLOWABLE_PROBLEMS)


def _target(kwargs: dict[str, Any]) -> Target:
    return resolve_target(
        config=kwargs["config"],
        database=kwargs["database"],
        engine=kwargs["engine"],
        path=kwargs["path"],
        database_url=kwargs["database_url"],
        option_pairs=kwargs["option_pairs"],
    )


def _plan_options(target: Target, kwargs: dict[str, Any]) -> PlanOptions:
    return PlanOptions(
        path=target.path,
        database_url=target.database_url,
        options=target.options,
        lock_timeout=kwargs["lock_timeout"],
    )


@click.group()
def migrate() -> None:
    """Plan, apply and inspect migrations against one database."""


@migrate.command()
@target_options
@_ALLOW_FLAGS[0]
@_ALLOW_FLAGS[1]
@_ALLOW_FLAGS[2]
@reports_errors
def plan(**kwargs: Any) -> None:
    """Show what `run` would apply, and any problem that would stop it. Changes nothing."""
    allow = _allow(kwargs)
    target = _target(kwargs)
    result = target.engine.plan(_plan_options(target, kwargs))
    if kwargs["output"] == "json":
        emit_json(plan_document(result, target.database_url, str(target.path), allow))
    else:
        print_plan(result, target.database_url, str(target.path), allow)


@migrate.command()
@target_options
@reports_errors
def status(**kwargs: Any) -> None:
    """List every migration with its state: applied, pending, dirty, edited or missing_file."""
    target = _target(kwargs)
    result = target.engine.plan(_plan_options(target, kwargs))
    if kwargs["output"] == "json":
        document = plan_document(result, target.database_url, str(target.path), frozenset())
        emit_json({**document, "kind": "status", "migrations": status_rows(result)})
    else:
        print_status(result, target.database_url, str(target.path))


@migrate.command()
@target_options
@_ALLOW_FLAGS[0]
@_ALLOW_FLAGS[1]
@_ALLOW_FLAGS[2]
@click.option("--dry-run", is_flag=True, help="Plan under the lock and stop; change nothing.")
@click.option(
    "--expect-plan",
    metavar="FINGERPRINT",
    help="Refuse unless the pending migrations are exactly the reviewed plan.",
)
@reports_errors
def run(**kwargs: Any) -> None:
    """Apply pending migrations, each in its own transaction with its tracking row."""
    allow = _allow(kwargs)
    target = _target(kwargs)
    json_output = kwargs["output"] == "json"
    progress: Any = None
    if not json_output:
        progress = TerminalProgress() if sys.stdout.isatty() else PlainProgress()
    base = _plan_options(target, kwargs)
    options = RunOptions(
        path=base.path,
        database_url=base.database_url,
        options=base.options,
        lock_timeout=base.lock_timeout,
        allow=allow,
        expected_plan=kwargs["expect_plan"],
        dry_run=kwargs["dry_run"],
        progress=progress,
    )
    try:
        with progress if isinstance(progress, TerminalProgress) else nullcontext():
            report = target.engine.run(options)
    except StagecraftError as error:
        document = run_document(None, target.database_url, error) if json_output else None
        fail(error, kwargs["output"], target.database_url, document)
        return
    if json_output:
        emit_json(run_document(report, target.database_url, None))
    else:
        print_run(report)


def _resolvable(target: Target) -> SupportsResolve:
    if not isinstance(target.engine, SupportsResolve):
        raise ResolveError(f"engine {target.engine.id!r} has nothing to resolve or baseline")
    return target.engine


@migrate.command()
@target_options
@click.option(
    "--migration",
    "-m",
    "migration",
    required=True,
    metavar="ID",
    help="The migration to resolve, as `migrate status` names it (raw: .sql may be left off).",
)
@click.option(
    "--applied",
    "outcome",
    flag_value=Resolution.APPLIED.value,
    help="It is done (finished by hand, or its edited file is accepted).",
)
@click.option(
    "--rolled-back",
    "outcome",
    flag_value=Resolution.ROLLED_BACK.value,
    help="It was undone by hand: forget the dirty record so it runs again.",
)
@reports_errors
def resolve(**kwargs: Any) -> None:
    """Clear a dirty record, or accept an edited file, after checking the database by hand."""
    if kwargs["outcome"] is None:
        raise ResolveError("say what happened: --applied or --rolled-back")
    target = _target(kwargs)
    message = _resolvable(target).resolve(
        _plan_options(target, kwargs), kwargs["migration"], Resolution(kwargs["outcome"])
    )
    if kwargs["output"] == "json":
        emit_json({"kind": "resolve", "migration": kwargs["migration"], "message": message})
    else:
        click.echo(message)


@migrate.command()
@target_options
@click.option(
    "--to",
    "up_to",
    required=True,
    metavar="ID",
    help="The last migration the existing database already contains.",
)
@reports_errors
def baseline(**kwargs: Any) -> None:
    """Record every migration up to --to as applied without running it (adopting a database)."""
    target = _target(kwargs)
    marked = _resolvable(target).baseline(_plan_options(target, kwargs), kwargs["up_to"])
    if kwargs["output"] == "json":
        emit_json({"kind": "baseline", "marked": marked})
    else:
        click.echo(f"recorded {len(marked)} migration(s) as applied without running them")
        for migration_id in marked:
            click.echo(f"  {migration_id}")
