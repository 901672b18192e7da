"""Options shared by the `migrate` commands, and the one place errors become exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..engines.errors import StagecraftError
from ..engines.urls import scrub
from .exit_codes import exit_code_for
from .output import emit_json, error_document

F = TypeVar("F", bound=Callable[..., Any])

_TARGET_OPTIONS = [
    click.option(
        "--config",
        "-c",
        "config",
        type=click.Path(path_type=Path, dir_okay=False),
        help="stagecraft.yml to take engine, path and connection_env from.",
    ),
    click.option(
        "--database",
        "-d",
        "database",
        metavar="NAME",
        help="Which entry of `databases:` (default: the only one).",
    ),
    click.option("--engine", "-e", metavar="ID", help="Engine id without --config (default: raw)."),
    click.option(
        "--path",
        "-p",
        type=click.Path(path_type=Path, file_okay=False),
        help="Migrations folder without --config (default: ./migrations).",
    ),
    click.option(
        "--database-url",
        metavar="URL",
        help="postgresql://... or sqlite:///file.db. Without --config it may come from "
        "STAGECRAFT_DATABASE_URL instead; default sqlite:///stagecraft.db.",
    ),
    click.option(
        "--option",
        "-o",
        "option_pairs",
        multiple=True,
        metavar="KEY=VALUE",
        help="Engine option without --config; repeatable.",
    ),
    click.option(
        "--lock-timeout",
        type=click.FloatRange(min=0),
        default=60.0,
        show_default=True,
        help="Seconds to wait for another runner's lock.",
    ),
    click.option(
        "--output",
        "output",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="json prints one document (see docs/cli.md).",
    ),
]


def target_options(command: F) -> F:
    for option in reversed(_TARGET_OPTIONS):
        command = option(command)
    return command


def reports_errors(command: F) -> F:
    """Turn StagecraftErrors into a message (or JSON document) and the documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except StagecraftError as error:
            fail(error, kwargs.get("output", "text"), kwargs.get("database_url"))

    return wrapper  # type: ignore[return-value]


def fail(
    error: StagecraftError, output: str, url: str | None, document: dict[str, Any] | None = None
) -> None:
    code = exit_code_for(error)
    if output == "json":
        emit_json(document or {"kind": "error", "error": error_document(error, url)})
    else:
        message = scrub(str(error), url) if url else str(error)
        click.echo(f"error: {message}", err=True)
    sys.exit(int(code))
