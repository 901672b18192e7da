"""The Stagecraft steps around Knex's own CLI in a knex migration Job.

Knex migrations are JavaScript, and the issue's design runs them in the application's image with
the project's own Knex CLI: that image has Node.js and the project's node_modules, the Stagecraft
image has neither (and the application image seldom has Python). So a knex Job's pod runs:

  copy-migrations   (application image)  copies the migrations folder into a shared volume
  plan              (Stagecraft image)   `before`: plans natively and refuses what a run would
                                         refuse (Knex's lock held, a missing file, a dirty row),
                                         and keeps the pending list for `after`
  knex              (application image)  `knex migrate:latest`, as the project runs it
  migrate           (Stagecraft image)   `after`: reads Knex's table again and writes the run
                                         document the operator reads (docs/cli.md's `run` kind)

Each step prints a JSON run document; `job_runner` puts it in the step's termination message.
Usage: python -m stagecraft.operator.knex_job before|after --path DIR --state FILE
       [--option KEY=VALUE ...]; the URL comes from STAGECRAFT_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..engines import registry
from ..engines.base import Plan, PlanOptions
from ..engines.errors import DatabaseUnavailable, LockTimeout, StagecraftError
from ..engines.urls import redact_url, scrub

ENGINE_ID = "knex"
URL_VARIABLE = "STAGECRAFT_DATABASE_URL"
DOCUMENT_VERSION = 1  # the CLI's JSON document version (docs/cli.md)

# The CLI's exit codes (docs/cli.md), so the Job's pod failure policy reads both alike.
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE, EXIT_REFUSED = 0, 1, 2, 3, 4


def _document(url: str, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "version": DOCUMENT_VERSION,
        "kind": "run",
        "engine": ENGINE_ID,
        "database": redact_url(url),
        "status": status,
        "applied": [],
        "error": None,
        **fields,
    }


def _error(kind: str, message: str, url: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "message": scrub(message, url), **fields}


def _plan(path: Path, url: str, options: dict[str, str]) -> Plan:
    engine = registry.get(ENGINE_ID)
    return engine.plan(PlanOptions(path=path, database_url=url, options=options))


def before(
    path: Path, url: str, options: dict[str, str], state: Path
) -> tuple[int, dict[str, Any]]:
    """Plan, refuse what a run would refuse, and keep the pending list for `after`."""
    plan = _plan(path, url, options)
    blocking = plan.blocking_problems()
    if blocking:
        problems = [
            {"kind": p.kind, "migration": p.migration, "message": p.message} for p in blocking
        ]
        message = "refusing to run Knex: " + "; ".join(p.message for p in blocking)
        error = _error("RunRefused", message, url, problems=problems)
        return EXIT_REFUSED, _document(url, "failed", error=error)
    pending = [migration.id for migration in plan.pending]
    state.write_text(json.dumps({"pending": pending, "plan": plan.fingerprint}), encoding="utf-8")
    return EXIT_OK, _document(url, "planned", plan=plan.fingerprint, pending=pending)


def after(path: Path, url: str, options: dict[str, str], state: Path) -> tuple[int, dict[str, Any]]:
    """What Knex applied: the planned migrations now recorded, or a failure naming the rest."""
    planned: list[str] = json.loads(state.read_text(encoding="utf-8"))["pending"]
    recorded = {applied.id for applied in _plan(path, url, options).applied}
    applied = [{"id": name, "duration_ms": None} for name in planned if name in recorded]
    missing = [name for name in planned if name not in recorded]
    if missing:
        message = (
            f"Knex finished without error but {', '.join(missing)} is not recorded in its "
            "migrations table: the project's knexfile points Knex at another database, table or "
            "folder than the DatabaseMigration (check its connection and migrations settings)"
        )
        error = _error("MigrationFailed", message, url, migration=missing[0])
        return EXIT_FAILED, _document(url, "failed", applied=applied, error=error)
    return EXIT_OK, _document(url, "succeeded", applied=applied)


def _options(pairs: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator:
            raise SystemExit(f"--option {pair!r}: expected KEY=VALUE")
        options[key] = value
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stagecraft.operator.knex_job")
    parser.add_argument("step", choices=["before", "after"])
    parser.add_argument("--path", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--option", action="append", default=[])
    arguments = parser.parse_args(argv)
    url = os.environ.get(URL_VARIABLE, "")
    step = before if arguments.step == "before" else after
    try:
        code, document = step(arguments.path, url, _options(arguments.option), arguments.state)
    except (DatabaseUnavailable, LockTimeout) as error:
        code = EXIT_UNAVAILABLE
        document = _document(url, "failed", error=_error(type(error).__name__, str(error), url))
    except StagecraftError as error:
        code = EXIT_INVALID
        document = _document(url, "failed", error=_error(type(error).__name__, str(error), url))
    sys.stdout.write(json.dumps(document, sort_keys=True) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
