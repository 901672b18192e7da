"""What the CLI prints: human text on terminals and in logs, or one JSON document (`--output json`).

The JSON documents are a stable interface (docs/cli.md): the operator reads the run document
from the migration Job's termination message.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import click

from ..engines.base import Migration, Plan, RunReport
from ..engines.errors import MigrationFailed, RunRefused, StagecraftError
from ..engines.urls import redact_url, scrub

JSON_VERSION = 1


def emit_json(document: dict[str, Any]) -> None:
    click.echo(json.dumps({"version": JSON_VERSION, **document}, sort_keys=True))


def error_document(error: StagecraftError, url: str | None) -> dict[str, Any]:
    message = scrub(str(error), url) if url else str(error)
    document: dict[str, Any] = {"type": type(error).__name__, "message": message}
    if isinstance(error, MigrationFailed):
        failure = error.failure
        document.update(
            migration=error.migration,
            file=str(error.path) if error.path else None,
            line=failure.line,
            column=failure.column,
            sqlstate=failure.sqlstate,
            database_message=scrub(failure.message, url) if url else failure.message,
            detail=failure.detail,
            hint=failure.hint,
            dirty=error.dirty,
        )
    if isinstance(error, RunRefused):
        document["problems"] = [
            {"kind": r.kind, "migration": r.migration, "message": r.message} for r in error.reasons
        ]
    return document


def plan_document(plan: Plan, url: str, path: str, allow: frozenset[str]) -> dict[str, Any]:
    return {
        "kind": "plan",
        "database": redact_url(url),
        "path": path,
        "blocked": bool(plan.blocking_problems(allow)),
        **plan.to_dict(),
    }


def print_plan(plan: Plan, url: str, path: str, allow: frozenset[str]) -> None:
    click.echo(f"engine {plan.engine} · database {redact_url(url)} · folder {path}")
    if plan.pending:
        click.echo(f"{len(plan.pending)} pending (plan {plan.fingerprint}):")
        for migration in plan.pending:
            note = "  (runs outside a transaction)" if not migration.transactional else ""
            click.echo(f"  {migration.id}{note}")
    else:
        click.echo(f"nothing pending; {len(plan.applied)} applied")
    _print_problems(plan, allow)


def _print_problems(plan: Plan, allow: frozenset[str]) -> None:
    blocking = plan.blocking_problems(allow)
    for problem in plan.problems:
        label = "problem" if problem in blocking else "allowed"
        click.echo(f"{label}: {problem.message}")
    if blocking:
        click.echo(f"a run would refuse: {len(blocking)} problem(s) need attention first")


def status_rows(plan: Plan) -> list[dict[str, Any]]:
    problems = {(p.migration, p.kind) for p in plan.problems}
    rows: list[dict[str, Any]] = []
    for applied in plan.applied:
        state = "dirty" if applied.dirty else "applied"
        if (applied.id, "missing_file") in problems:
            state = "missing_file"
        elif (applied.id, "checksum_mismatch") in problems:
            state = "edited"
        rows.append({**applied.to_dict(), "state": state})
    for migration in plan.pending:
        rows.append(
            {
                "id": migration.id,
                "state": "pending",
                "applied_at": None,
                "execution_ms": None,
                "checksum": migration.checksum,
                "dirty": False,
            }
        )
    return rows


def print_status(plan: Plan, url: str, path: str) -> None:
    click.echo(f"engine {plan.engine} · database {redact_url(url)} · folder {path}")
    rows = status_rows(plan)
    width = max([len("migration"), *(len(row["id"]) for row in rows)])
    click.echo(f"{'migration'.ljust(width)}  {'state':<12}  applied at")
    for row in rows:
        click.echo(f"{row['id'].ljust(width)}  {row['state']:<12}  {row['applied_at'] or '-'}")
    click.echo(
        f"{len(plan.applied)} applied, {len(plan.pending)} pending, {len(plan.problems)} problem(s)"
    )
    _print_problems(plan, frozenset())


def run_document(
    report: RunReport | None, url: str, error: StagecraftError | None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "kind": "run",
        "database": redact_url(url),
        "status": "failed" if error else ("planned" if report and report.dry_run else "succeeded"),
        "applied": [],
        "skipped": [],
        "error": error_document(error, url) if error else None,
    }
    if report:
        document.update(report.to_dict())
    if isinstance(error, MigrationFailed):
        document["applied"] = [a.to_dict() for a in error.applied]
    return document


def print_run(report: RunReport) -> None:
    if report.dry_run:
        click.echo(
            f"dry run: {len(report.plan.pending)} migration(s) would be applied "
            f"(plan {report.plan.fingerprint}); nothing was changed"
        )
        for migration in report.plan.pending:
            click.echo(f"  {migration.id}")
        return
    total_ms = sum(applied.duration_ms for applied in report.applied)
    if report.applied:
        click.echo(
            f"applied {len(report.applied)} migration(s) in {total_ms} ms; database is up to date"
        )
    else:
        click.echo("nothing to apply; database is up to date")
    if report.skipped:
        click.echo(f"{len(report.skipped)} migration(s) were applied meanwhile by another runner")


class PlainProgress:
    """One line per applied migration, for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def started(self, migration: Migration, index: int, total: int) -> None:
        del migration, index, total

    def finished(self, migration: Migration, index: int, total: int, duration_ms: int) -> None:
        print(
            f"[{index}/{total}] applied {migration.id} ({duration_ms} ms)",
            file=self.stream,
            flush=True,
        )


class TerminalProgress:
    """A live bar with the current migration, the count and the elapsed time."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        self._task: Any = None

    def __enter__(self) -> TerminalProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def started(self, migration: Migration, index: int, total: int) -> None:
        if self._task is None:
            self._task = self._progress.add_task("", total=total)
        self._progress.update(self._task, description=f"applying {migration.id}")

    def finished(self, migration: Migration, index: int, total: int, duration_ms: int) -> None:
        self._progress.update(self._task, completed=index)
        # markup and highlighting off: a file name like `[draft].sql` is text, not rich markup.
        self._progress.console.print(
            f"applied {migration.id} ({duration_ms} ms)", markup=False, highlight=False
        )
