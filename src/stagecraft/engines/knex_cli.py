"""Running the project's own Knex CLI with Node.js, and reading what it reports.

Knex loads Stagecraft's knexfile (`knex_config.cjs`), which takes its settings on stdin and the
database URL from one environment variable: nothing secret is ever on a command line. That
knexfile prints `@@stagecraft {json}` event lines, parsed here into a `KnexOutcome`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StagecraftError
from .urls import scrub

WRAPPER_KNEXFILE = Path(__file__).with_name("knex_config.cjs")
EVENT_MARKER = "@@stagecraft "
KNEX_LOCK_HELD = "Migration table is already locked"
KNEXFILE_NAMES = tuple(f"knexfile.{ext}" for ext in ("js", "mjs", "coffee", "ts", "eg", "ls"))
OUTPUT_TAIL_LINES = 15


class ToolNotFound(StagecraftError):
    """Node.js or the project's Knex CLI is missing; the message says what to install."""


@dataclass(frozen=True)
class KnexTools:
    node: str
    cli: Path  # the knex CLI script (node_modules/.bin/knex or knex/bin/cli.js)
    module: Path  # the knex package folder, for Stagecraft's knexfile (KNEX_PATH)


def _node_binary(node: str) -> str:
    found = shutil.which(node)
    if found is None:
        raise ToolNotFound(
            f"Node.js is not available: `{node}` is not an executable on PATH. Knex migrations are "
            "JavaScript, so the knex engine runs them with Node.js: run Stagecraft in the "
            "application's image (which has node), install Node.js, or set the engine option "
            "node=/path/to/node"
        )
    return found


def find_project_root(folder: Path) -> Path | None:
    """The nearest folder at or above the migrations folder with Knex in node_modules."""
    for candidate in (folder, *folder.parents):
        if (candidate / "node_modules" / "knex" / "package.json").is_file():
            return candidate
    return None


def locate_tools(node: str, knex_bin: Path | None, project_root: Path) -> KnexTools:
    if not WRAPPER_KNEXFILE.is_file():
        raise ToolNotFound(
            f"Stagecraft's knexfile {WRAPPER_KNEXFILE} is missing from this installation: "
            "reinstall Stagecraft from a package that includes stagecraft/engines/*.cjs"
        )
    candidates = (
        [knex_bin]
        if knex_bin
        else [
            # The script itself first: pnpm's .bin entries are shell scripts, not links to it.
            project_root / "node_modules" / "knex" / "bin" / "cli.js",
            project_root / "node_modules" / ".bin" / "knex",
        ]
    )
    for candidate in candidates:
        if candidate.is_file():
            cli = candidate.resolve()
            # The CLI lives at <knex package>/bin/cli.js; the package holds Knex's own loaders.
            return KnexTools(node=_node_binary(node), cli=cli, module=cli.parent.parent)
    raise ToolNotFound(
        f"the project's Knex CLI was not found at {candidates[0]}: install Knex in the "
        f"application (`npm install knex pg` in {project_root}), or set the engine options "
        "project_root (the folder holding node_modules) or knex_bin"
    )


def find_knexfile(project_root: Path) -> Path | None:
    """The knexfile Knex's CLI would pick in the project root, if there is one."""
    for name in KNEXFILE_NAMES:
        if (project_root / name).is_file():
            return project_root / name
    return None


@dataclass
class KnexOutcome:
    returncode: int
    events: list[dict[str, Any]] = field(default_factory=list)
    output: list[str] = field(default_factory=list)  # Knex's own lines, events removed

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("event") == kind]

    def warnings(self) -> list[str]:
        return [str(event.get("message", "")) for event in self.of_kind("warn")]

    @property
    def lost_race(self) -> bool:
        """Another runner got in after Stagecraft looked: it held Knex's lock row, or it applied
        some of the planned migrations before this Knex took the lock."""
        if self.returncode == 0:
            return False
        return bool(self.of_kind("raced")) or any(KNEX_LOCK_HELD in w for w in self.warnings())

    @property
    def batch_transaction(self) -> bool:
        """Whether Knex ran the whole batch in one transaction (all or nothing)."""
        return any(event.get("transaction") is True for event in self.of_kind("batch"))

    @property
    def finished(self) -> dict[str, int]:
        return {str(e["name"]): int(e.get("ms") or 0) for e in self.of_kind("finished")}

    @property
    def unfinished(self) -> str | None:
        """The migration that started and did not finish: the one that failed."""
        done = set(self.finished)
        started = [str(event["name"]) for event in self.of_kind("started")]
        return next((name for name in reversed(started) if name not in done), None)

    def tail(self, url: str) -> str:
        lines = [line for line in self.output if line.strip()][-OUTPUT_TAIL_LINES:]
        return scrub("\n".join(lines), url)


@dataclass(frozen=True)
class KnexInvocation:
    tools: KnexTools
    project_root: Path
    url: str
    url_env: str
    settings: Mapping[str, Any]  # read by knex_config.cjs from stdin
    single_transaction: bool = True


EventListener = Callable[[dict[str, Any]], None]


def _command(invocation: KnexInvocation) -> list[str]:
    command = [
        invocation.tools.node,
        str(invocation.tools.cli),
        "--knexfile",
        str(WRAPPER_KNEXFILE),
        "migrate:latest",
    ]
    if not invocation.single_transaction:
        command.append("--disable-transactions")
    return command


def _environment(invocation: KnexInvocation) -> dict[str, str]:
    # The runner's own environment passes through: the application's knexfile may expect its
    # variables (NODE_ENV, TLS settings). Stagecraft adds the URL under the name it reads.
    # Knex's commits need not wait for the disk one by one: the run ends with one durable commit
    # that covers them (Database.durable_at_end), as every engine's runs do. node-postgres
    # reads PGOPTIONS for each session unless the knexfile's connection sets `options` itself.
    options = f"{os.environ.get('PGOPTIONS', '')} -c synchronous_commit=off".strip()
    return {
        **os.environ,
        invocation.url_env: invocation.url,
        "KNEX_PATH": str(invocation.tools.module),
        "PGOPTIONS": options,
        "NO_COLOR": "1",
        "FORCE_COLOR": "0",
    }


def migrate_latest(
    invocation: KnexInvocation, on_event: EventListener | None = None
) -> KnexOutcome:
    """Run `knex migrate:latest` once and collect its events as they come."""
    outcome = KnexOutcome(returncode=-1)
    with subprocess.Popen(
        _command(invocation),
        cwd=invocation.project_root,
        env=_environment(invocation),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream: no pipe can fill up unread
        text=True,
        encoding="utf-8",
        errors="replace",
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            process.stdin.write(json.dumps(invocation.settings))
            process.stdin.close()
        except BrokenPipeError:
            pass  # Knex exited before reading; its output says why
        for line in process.stdout:
            _read_line(line.rstrip("\n"), outcome, on_event)
        outcome.returncode = process.wait()
    return outcome


def _read_line(line: str, outcome: KnexOutcome, on_event: EventListener | None) -> None:
    if line.startswith(EVENT_MARKER):
        try:
            event = json.loads(line[len(EVENT_MARKER) :])
        except json.JSONDecodeError:
            outcome.output.append(line)
            return
        if isinstance(event, dict):
            outcome.events.append(event)
            if on_event:
                on_event(event)
            return
    outcome.output.append(line)


def settings_for(
    *,
    project_root: Path,
    knexfile: Path | None,
    environment: str | None,
    url_env: str,
    client: str,
    table: str,
    schema: str | None,
    directories: Sequence[Path],
    load_extensions: Sequence[str],
    sort_dirs_separately: bool,
    listing: Sequence[tuple[Path, str]],
    single_transaction: bool,
    allow_missing: bool,
    started_table: str,
) -> dict[str, Any]:
    return {
        "projectRoot": str(project_root),
        "knexfile": str(knexfile) if knexfile else None,
        "environment": environment,
        "urlEnv": url_env,
        "client": client,
        "tableName": table,
        "schemaName": schema,
        "directories": [str(directory) for directory in directories],
        "loadExtensions": list(load_extensions),
        "sortDirsSeparately": sort_dirs_separately,
        "listing": [[str(directory), name] for directory, name in listing],
        "singleTransaction": single_transaction,
        "allowMissing": allow_missing,
        "startedTable": started_table,
    }
