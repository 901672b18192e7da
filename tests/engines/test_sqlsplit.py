"""The statement splitter: psql's rules for where a statement ends, and exact positions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stagecraft.engines.sqlsplit import (
    POSTGRES,
    SQLITE,
    line_and_column,
    line_start_offsets,
    split_statements,
)


def texts(script: str, rules: object = POSTGRES) -> list[str]:
    assert rules is POSTGRES or rules is SQLITE
    return [s.text for s in split_statements(script, rules)]


def test_splits_on_semicolons_and_drops_empty_statements() -> None:
    assert texts("SELECT 1;;\n  SELECT 2 ;\n-- only a comment\n") == ["SELECT 1", "SELECT 2"]


def test_last_statement_needs_no_semicolon() -> None:
    assert texts("SELECT 1;\nSELECT 2") == ["SELECT 1", "SELECT 2"]


def test_semicolons_inside_quotes_and_comments_do_not_split() -> None:
    script = (
        "INSERT INTO t VALUES ('a;b', 'it''s;');\n"
        'SELECT "odd;name" FROM t; -- trailing; comment\n'
        "/* block; /* nested; */ still comment; */ SELECT 3;"
    )
    assert texts(script) == [
        "INSERT INTO t VALUES ('a;b', 'it''s;')",
        'SELECT "odd;name" FROM t',
        "SELECT 3",
    ]


def test_dollar_quoted_bodies_keep_their_semicolons() -> None:
    script = (
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\n"
        "BEGIN\n  RETURN 1;\nEND;\n$body$;\n"
        "DO $$ BEGIN PERFORM 1; END $$;\nSELECT $1tag;"
    )
    result = texts(script)
    assert len(result) == 3
    assert result[0].endswith("$body$")
    assert result[1] == "DO $$ BEGIN PERFORM 1; END $$"


def test_escape_strings_allow_backslash_quotes_on_postgres() -> None:
    assert texts(r"SELECT E'a\';b'; SELECT 2;") == [r"SELECT E'a\';b'", "SELECT 2"]


def test_begin_atomic_bodies_are_one_statement() -> None:
    script = (
        "CREATE OR REPLACE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql\n"
        "BEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN a ELSE 0 END + b;\n  SELECT 1;\nEND;\n"
        "SELECT add(1, 2);"
    )
    result = texts(script)
    assert len(result) == 2
    assert result[1] == "SELECT add(1, 2)"


def test_parentheses_hold_semicolons_like_psql() -> None:
    assert texts("CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b); SELECT 1;") == [
        "CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b)",
        "SELECT 1",
    ]


def test_sqlite_trigger_bodies_are_one_statement() -> None:
    script = (
        "CREATE TRIGGER audit AFTER INSERT ON t BEGIN\n"
        "  INSERT INTO log VALUES (new.id);\n  UPDATE t SET n = CASE WHEN 1 THEN 2 END;\nEND;\n"
        "SELECT [odd;name], `x;y` FROM t;"
    )
    assert len(texts(script, SQLITE)) == 2


def test_statements_report_their_first_line_and_column() -> None:
    script = "-- header\n\n  SELECT 1;\n\tSELECT\n2;"
    statements = split_statements(script, POSTGRES)
    assert [(s.line, s.column) for s in statements] == [(3, 3), (4, 2)]
    assert [script[s.offset : s.offset + 6] for s in statements] == ["SELECT", "SELECT"]


def test_keyword_is_the_first_word_upper_cased() -> None:
    statements = split_statements("begin; commit; select 1;", POSTGRES)
    assert [s.keyword for s in statements] == ["BEGIN", "COMMIT", "SELECT"]


_safe_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters=";'\"$-/*`[]()\\\r"),
    max_size=30,
)
_literal = _safe_text.map(lambda text: "'" + text.replace("'", "''") + "'")
_statement = st.builds(
    lambda word, literal, ws: f"SELECT{ws}{literal} AS {word}",
    st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
    _literal,
    st.sampled_from([" ", "\n", "\t", " \n  "]),
)
_separator = st.sampled_from([";", ";\n", " ;\n\n", ";\n-- comment ; here\n", ";/* x; */\n"])


@given(st.lists(st.tuples(_statement, _separator), min_size=1, max_size=8), _safe_text)
def test_property_split_recovers_each_statement_at_its_offset(
    parts: list[tuple[str, str]], prefix_noise: str
) -> None:
    prefix = "-- " + prefix_noise.replace("\n", " ") + "\n"
    script = prefix + "".join(statement + separator for statement, separator in parts)
    statements = split_statements(script, POSTGRES)
    assert [s.text for s in statements] == [statement for statement, _ in parts]
    starts = line_start_offsets(script)
    for statement in statements:
        assert script.startswith(statement.text, statement.offset)
        assert line_and_column(starts, statement.offset) == (statement.line, statement.column)


@given(st.text(max_size=200), st.integers(min_value=0, max_value=199))
def test_property_line_and_column_agree_with_counting(script: str, offset: int) -> None:
    offset = min(offset, len(script))
    line, column = line_and_column(line_start_offsets(script), offset)
    before = script[:offset]
    assert line == before.count("\n") + 1
    assert column == len(before) - (before.rfind("\n") + 1) + 1
