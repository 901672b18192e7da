"""Property: whatever precedes it, a failing statement is reported at its own line and column."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagecraft.engines import MigrationFailed, RunOptions
from stagecraft.engines.raw import RawEngine

_filler = st.lists(
    st.sampled_from(
        [
            "SELECT 1;",
            "SELECT 'a;b';",
            "-- a comment; with a semicolon\n",
            "/* block\n comment; */",
            "\n",
            "   ",
            "CREATE TABLE IF NOT EXISTS t (id int);",
            "CREATE TABLE IF NOT EXISTS t (id int);\nINSERT INTO t VALUES (1);",
        ]
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(_filler, st.sampled_from(["", " ", "\n", "\t\n  "]))
def test_property_sqlite_failures_point_at_the_failing_statement(
    before: list[str], indent: str
) -> None:
    prefix = "".join(before) + indent
    script = prefix + "SELECT * FROM no_such_table;\nSELECT 2;\n"
    expected_line = prefix.count("\n") + 1
    expected_column = len(prefix) - (prefix.rfind("\n") + 1) + 1
    with tempfile.TemporaryDirectory() as folder:
        migrations = Path(folder, "migrations")
        migrations.mkdir()
        (migrations / "1.sql").write_text(script)
        url = f"sqlite:///{Path(folder, 'db.sqlite')}"
        with pytest.raises(MigrationFailed) as raised:
            RawEngine().run(RunOptions(path=migrations, database_url=url))
    failure = raised.value.failure
    assert (failure.line, failure.column) == (expected_line, expected_column)
    assert "no such table" in failure.message
