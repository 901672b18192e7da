"""Writing Drizzle migrations folders in drizzle-kit's exact format, for the drizzle tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tests.conftest import FolderWriter

# A fixed generation time keeps the tests reproducible; drizzle-kit writes Date.now().
BASE_WHEN = 1_795_858_922_838
GENERATED = Path(__file__).parent / "fixtures" / "drizzle" / "generated"


def journal_text(tags_and_whens: Sequence[tuple[str, int]], dialect: str = "postgresql") -> str:
    """`meta/_journal.json` as drizzle-kit writes it (two-space indent, no final newline)."""
    entries = [
        {"idx": idx, "version": "7", "when": when, "tag": tag, "breakpoints": True}
        for idx, (tag, when) in enumerate(tags_and_whens)
    ]
    return json.dumps({"version": "7", "dialect": dialect, "entries": entries}, indent=2)


def write_drizzle_folder(
    write_folder: FolderWriter,
    migrations: Sequence[tuple[str, str | bytes]],
    *,
    dialect: str = "postgresql",
    whens: Sequence[int] | None = None,
) -> Path:
    """A folder with one `<tag>.sql` per (tag, body) and a journal listing them in order."""
    times = list(whens) if whens is not None else [BASE_WHEN + i for i in range(len(migrations))]
    files: dict[str, str | bytes] = {f"{tag}.sql": body for tag, body in migrations}
    files["meta/_journal.json"] = journal_text(
        [(tag, when) for (tag, _), when in zip(migrations, times, strict=True)], dialect
    )
    return write_folder(files)


def dialect_of_url(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"
