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
from .cluster import Request, connect, request_retry, request_run
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
from .target import Target, UsageProblem, resolve_target

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


_CLUSTER_OPTIONS = [
    click.option(
        "--namespace",
        "-n",
        "namespace",
        metavar="NAMESPACE",
        help="The resource's namespace (default: the kubeconfig context's, as for kubectl).",
    ),
    click.option(
        "--kubeconfig",
        metavar="FILE",
        help="Kubeconfig to use (default: KUBECONFIG, ~/.kube/config, else in-cluster).",
    ),
    click.option("--context", metavar="NAME", help="Kubeconfig context (default: the current)."),
]


def cluster_options(command: Any) -> Any:
    for option in reversed(_CLUSTER_OPTIONS):
        command = option(command)
    return command


def _report_request(request: Request, output: str) -> None:
    if output == "json":
        emit_json(
            {
                "kind": request.kind,
                "namespace": request.namespace,
                "name": request.name,
                "annotation": request.annotation,
                "value": request.value,
            }
        )
        return
    asked = "a fresh attempt" if request.kind == "retry-request" else "a run"
    click.echo(
        f"asked the operator for {asked} of DatabaseMigration {request.name} in namespace "
        f"{request.namespace} ({request.annotation}={request.value}); "
        f"`kubectl get databasemigration {request.name} -n {request.namespace}` shows its progress"
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
@click.option(
    "--cluster",
    metavar="NAME",
    help="Instead of running here, ask the operator to run the manual-strategy "
    "DatabaseMigration NAME (writes its stagecraft.dev/run-request annotation).",
)
@click.option(
    "--plan",
    metavar="HASH",
    help="With --cluster: run only if the plan is still the one with this hash in the status.",
)
@cluster_options
@reports_errors
def run(**kwargs: Any) -> None:
    """Apply pending migrations, each in its own transaction with its tracking row.

    With --cluster NAME, ask the operator to run a DatabaseMigration instead.
    """
    if kwargs["cluster"] is not None:
        _request_cluster_run(kwargs)
        return
    for flag in ("plan", "namespace", "kubeconfig", "context"):
        if kwargs[flag] is not None:
            raise UsageProblem(f"--{flag} goes with --cluster NAME (a run by the operator)")
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


_LOCAL_ONLY = (
    "config", "database", "engine", "path", "database_url", "option_pairs", "expect_plan",
    "dry_run", "allow_checksum_mismatch", "allow_missing", "allow_out_of_order",
)  # fmt: skip


def _request_cluster_run(kwargs: dict[str, Any]) -> None:
    given = [name for name in _LOCAL_ONLY if kwargs[name]]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageProblem(
            f"--cluster asks the operator to run; {flags} only apply to a run here: drop them"
        )
    connection = connect(kwargs["kubeconfig"], kwargs["context"])
    namespace = kwargs["namespace"] or connection.default_namespace
    request = request_run(connection, namespace, kwargs["cluster"], kwargs["plan"])
    _report_request(request, kwargs["output"])


@migrate.command()
@click.argument("name")
@cluster_options
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@reports_errors
def retry(
    name: str, namespace: str | None, kubeconfig: str | None, context: str | None, output: str
) -> None:
    """Ask the operator for a fresh attempt of DatabaseMigration NAME now, whatever its last
    result (writes its stagecraft.dev/retry annotation)."""
    connection = connect(kubeconfig, context)
    request = request_retry(connection, namespace or connection.default_namespace, name)
    _report_request(request, output)


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
