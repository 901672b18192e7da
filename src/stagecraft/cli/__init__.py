"""The `stagecraft` command. Imports stay lazy so that `stagecraft --help` answers at once."""

from __future__ import annotations

from typing import Any

import click

from .. import __version__
from .common import reports_errors
from .migrate import migrate
from .operator_command import operator
from .render import render


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stagecraft")
def cli() -> None:
    """Database schema migrations for applications on Kubernetes.

    Exit codes: 0 success, 1 a migration failed, 2 invalid input, 3 database (or Kubernetes API
    server) unreachable or lock wait exceeded, 4 refused (the plan has problems that need a
    person, or it changed).
    """


cli.add_command(migrate)
cli.add_command(render)
cli.add_command(operator)


@cli.group()
def engines() -> None:
    """The migration engines this installation knows."""


@engines.command("list")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@reports_errors
def list_engines(output: str) -> None:
    """Registered engine ids, built-in and from installed plugins."""
    from ..engines import ids

    if output == "json":
        from .output import emit_json

        emit_json({"kind": "engines", "engines": ids()})
    else:
        for engine_id in ids():
            click.echo(engine_id)


@cli.group()
def config() -> None:
    """Work with stagecraft.yml."""


@config.command("validate")
@click.option(
    "--config",
    "-c",
    "path",
    default="stagecraft.yml",
    show_default=True,
    type=click.Path(dir_okay=False),
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@reports_errors
def validate_config(path: str, output: str) -> None:
    """Check the file against the models and the engine registry; errors name line and field."""
    from pathlib import Path

    from ..config import load_config

    loaded = load_config(Path(path))
    names = list(loaded.config.databases)
    if output == "json":
        from .output import emit_json

        emit_json({"kind": "config", "file": path, "valid": True, "databases": names})
    else:
        click.echo(f"{path} is valid: {len(names)} database(s): {', '.join(names)}")


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="stagecraft")
