"""Knex's folder rules as Stagecraft reads them: which files count, in which order.

One test lists tricky names with Knex's own lister (FsMigrations, through node) and compares.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagecraft.engines import MigrationSourceError
from stagecraft.engines.knex_folder import (
    find_knex_migrations,
    javascript_order,
    node_extname,
    with_contents,
)
from tests.conftest import FolderWriter
from tests.engines.knex_projects import NODE_MODULES, NODE_TIMEOUT

TRICKY_NAMES = [
    "20240101_a.js",
    "20240101_B.js",
    "20240101-b.js",
    "20240101_\u00e9.js",
    "20240101_\uffff.js",
    "20240101_\U0001f600.js",  # above U+FFFF: a surrogate pair in JavaScript, sorts before U+FFFF
    "20240101_z.ts",
    "20240101_c.cjs",
    "20240101_skip.mjs",
    "README.md",
    ".js",
    "20240101_noext",
]

FS_MIGRATIONS = """
const { FsMigrations } = require('knex/lib/migrations/migrate/sources/fs-migrations');
const [dirs, separately] = JSON.parse(process.argv[1]);
new FsMigrations(dirs, separately).getMigrations()
  .then((found) => console.log(JSON.stringify(found.map((m) => [m.directory, m.file]))));
"""


def knex_listing(directories: list[Path], *, separately: bool) -> list[tuple[str, str]]:
    done = subprocess.run(
        ["node", "-e", FS_MIGRATIONS, json.dumps([[str(d) for d in directories], separately])],
        capture_output=True,
        text=True,
        env={"NODE_PATH": str(NODE_MODULES), "PATH": "/usr/local/bin:/usr/bin:/bin"},
        timeout=NODE_TIMEOUT,
        check=True,
    )
    return [(directory, name) for directory, name in json.loads(done.stdout)]


def test_order_and_extensions_match_knexs_own_lister(write_folder: FolderWriter) -> None:
    first = write_folder({name: "" for name in TRICKY_NAMES[::2]})
    second = write_folder({name: "" for name in TRICKY_NAMES[1::2]})
    for separately in (False, True):
        ours = [
            (str(m.path.parent), m.id)
            for m in find_knex_migrations([first, second], sort_dirs_separately=separately)
            if m.path is not None
        ]
        assert ours == knex_listing([first, second], separately=separately)


@given(st.lists(st.text(min_size=1, max_size=6), min_size=2, max_size=6))
def test_javascript_order_compares_utf16_code_units(names: list[str]) -> None:
    def code_units(name: str) -> list[int]:
        data = name.encode("utf-16-be", "surrogatepass")
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]

    assert sorted(names, key=javascript_order) == sorted(names, key=code_units)


@pytest.mark.parametrize(
    ("name", "extension"),
    [("a.js", ".js"), (".js", ""), ("a", ""), ("a.test.ts", ".ts"), ("..js", ".js"), ("a.", ".")],
)
def test_extensions_follow_node_path_extname(name: str, extension: str) -> None:
    assert node_extname(name) == extension


def test_the_same_name_in_two_folders_is_an_error(write_folder: FolderWriter) -> None:
    first = write_folder({"001_a.js": ""})
    second = write_folder({"001_a.js": ""})
    with pytest.raises(MigrationSourceError, match="two Knex migration folders"):
        find_knex_migrations([first, second])


def test_a_missing_folder_names_itself(tmp_path: Path) -> None:
    with pytest.raises(MigrationSourceError, match="does not exist"):
        find_knex_migrations([tmp_path / "nowhere"])


def test_contents_give_the_checksum_and_the_transaction_opt_out(
    write_folder: FolderWriter,
) -> None:
    folder = write_folder(
        {
            "001_plain.js": "exports.up = (k) => k.raw('select 1');",
            "002_alone.js": "exports.config = {\n  transaction: false,\n};\nexports.up = () => {};",
            "003_esm.js": "export const config = { transaction: false };",
        }
    )
    found = [with_contents(m) for m in find_knex_migrations([folder])]
    assert [m.transactional for m in found] == [True, False, False]
    assert all(m.checksum and len(m.checksum) == 64 for m in found)
