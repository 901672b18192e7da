"""Which engine, folder and database a command works on: from a config file or from flags."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engines import registry
from ..engines.base import Engine
from ..engines.errors import StagecraftError

DEFAULT_DATABASE_URL = "sqlite:///stagecraft.db"
URL_VARIABLE = "STAGECRAFT_DATABASE_URL"  # read only without --config, where connection_env rules


class UsageProblem(StagecraftError):
    """The command line names its target inconsistently."""


@dataclass(frozen=True)
class Target:
    engine: Engine
    path: Path
    database_url: str
    options: dict[str, Any]


def parse_option_pairs(pairs: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageProblem(f"--option {pair!r} is not key=value")
        options[key] = value
    return options


def resolve_target(
    *,
    config: Path | None,
    database: str | None,
    engine: str | None,
    path: Path | None,
    database_url: str | None,
    option_pairs: tuple[str, ...],
) -> Target:
    if config is None:
        return Target(
            engine=registry.get(engine or "raw"),
            path=path or Path("migrations"),
            database_url=database_url or os.environ.get(URL_VARIABLE) or DEFAULT_DATABASE_URL,
            options=parse_option_pairs(option_pairs),
        )
    if engine or path or option_pairs:
        raise UsageProblem(
            "--config takes engine, path and options from the file; drop --engine/--path/--option"
        )
    from ..config import load_config  # pydantic loads only when a config file is used

    loaded = load_config(config)
    name, entry = loaded.database(database)
    url = database_url or os.environ.get(entry.connection_env)
    if not url:
        raise UsageProblem(
            f"environment variable {entry.connection_env} (databases.{name}.connection_env in "
            f"{config}) is not set; export it with the database URL, or pass --database-url"
        )
    return Target(
        engine=registry.get(entry.migrations.engine),
        path=loaded.migrations_path(entry),
        database_url=url,
        options=dict(entry.migrations.options),
    )
