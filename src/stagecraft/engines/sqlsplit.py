"""Split an SQL script into statements, keeping where each one starts in the file.

The rules follow psql's lexer: a semicolon ends a statement only outside quotes, comments,
dollar quotes, parentheses and the BEGIN ... END body of a routine (PostgreSQL's BEGIN ATOMIC,
SQLite's triggers). Knowing each statement's start lets an error name its line and column even
when the database reports no position (constraint violations, division by zero, ...).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass


@dataclass(frozen=True)
class Statement:
    text: str
    offset: int  # 0-based character offset of text[0] in the script
    line: int  # 1-based
    column: int  # 1-based

    @property
    def keyword(self) -> str:
        """The statement's first word, upper-cased ('' when it starts with punctuation)."""
        match = _WORD.match(self.text)
        return match.group(0).upper() if match else ""


@dataclass(frozen=True)
class SplitRules:
    dollar_quotes: bool  # PostgreSQL $tag$ ... $tag$
    escape_strings: bool  # PostgreSQL E'...' with backslash escapes
    bracket_identifiers: bool  # SQLite [name] and `name`
    # Statement heads inside which BEGIN ... END encloses a body that contains semicolons.
    block_heads: re.Pattern[str]


POSTGRES = SplitRules(
    dollar_quotes=True,
    escape_strings=True,
    bracket_identifiers=False,
    block_heads=re.compile(r"CREATE\s+(OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE)\b", re.I),
)
SQLITE = SplitRules(
    dollar_quotes=False,
    escape_strings=False,
    bracket_identifiers=True,
    block_heads=re.compile(r"CREATE\s+(TEMP\s+|TEMPORARY\s+)?TRIGGER\b", re.I),
)

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<line_comment>--[^\n]*)
    | (?P<block_comment>/\*)
    | (?P<estring>[eE]'(?:[^'\\]|\\.|'')*(?:'|\Z))
    | (?P<string>'(?:[^']|'')*(?:'|\Z))
    | (?P<quoted>"(?:[^"]|"")*(?:"|\Z))
    | (?P<backtick>`(?:[^`]|``)*(?:`|\Z))
    | (?P<bracket>\[[^\]]*(?:\]|\Z))
    | (?P<dollar>\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$)
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<semicolon>;)
    | (?P<open>\()
    | (?P<close>\))
    | (?P<other>[^\s\-/'"`\[$;()A-Za-z_]+|.)
    """,
    re.X | re.S,
)


def _skip_block_comment(script: str, start: int) -> int:
    """End of a (nested) /* */ comment starting at `start`, or the end of the script."""
    depth, index = 0, start
    while index < len(script):
        if script.startswith("/*", index):
            depth += 1
            index += 2
        elif script.startswith("*/", index):
            depth -= 1
            index += 2
            if depth == 0:
                return index
        else:
            index += 1
    return len(script)


class _Splitter:
    def __init__(self, script: str, rules: SplitRules) -> None:
        self.script = script
        self.rules = rules
        self.statements: list[tuple[int, int]] = []  # (start, end) offsets
        self.start: int | None = None  # offset of the current statement's first token
        self.paren_depth = 0
        self.block_depth = 0
        self.in_block_statement = False

    def begin_token(self, offset: int) -> None:
        if self.start is None:
            self.start = offset
            self.in_block_statement = bool(self.rules.block_heads.match(self.script, offset))

    def end_statement(self, end: int) -> None:
        if self.start is not None:
            self.statements.append((self.start, end))
        self.start = None
        self.paren_depth = self.block_depth = 0

    def on_word(self, word: str) -> None:
        if not self.in_block_statement:
            return
        upper = word.upper()
        if upper == "BEGIN" or (upper == "CASE" and self.block_depth > 0):
            self.block_depth += 1
        elif upper == "END" and self.block_depth > 0:
            self.block_depth -= 1

    def split(self) -> list[tuple[int, int]]:
        script, index = self.script, 0
        while index < len(script):
            match = _TOKEN.match(script, index)
            assert match is not None  # the last alternative matches any character
            kind, end = match.lastgroup, match.end()
            if kind in ("space", "line_comment"):
                index = end
                continue
            if kind == "block_comment":
                index = _skip_block_comment(script, index)
                continue
            end = self.token_end(kind, match, end)
            if kind == "semicolon":
                if self.paren_depth == 0 and self.block_depth == 0:
                    self.end_statement(index)
                index = end
                continue
            self.begin_token(index)
            if kind == "word":
                self.on_word(match.group(0))
            elif kind == "open":
                self.paren_depth += 1
            elif kind == "close" and self.paren_depth > 0:
                self.paren_depth -= 1
            index = end
        self.end_statement(len(script))
        return self.statements

    def token_end(self, kind: str | None, match: re.Match[str], end: int) -> int:
        """Where a token really ends, for tokens the rules treat differently per dialect."""
        rules, script = self.rules, self.script
        if kind == "dollar":
            if not rules.dollar_quotes:
                return match.start() + 1
            closing = script.find(match.group(0), end)
            return len(script) if closing < 0 else closing + len(match.group(0))
        if kind == "estring" and not rules.escape_strings:
            return match.start() + 1  # a plain word starting with e; the quote follows
        if kind in ("backtick", "bracket") and not rules.bracket_identifiers:
            return match.start() + 1
        return end


def split_statements(script: str, rules: SplitRules) -> list[Statement]:
    """The statements of `script` (without their terminating semicolons), in order."""
    line_starts = line_start_offsets(script)
    result = []
    for start, end in _Splitter(script, rules).split():
        text = script[start:end].rstrip()
        line, column = line_and_column(line_starts, start)
        result.append(Statement(text=text, offset=start, line=line, column=column))
    return result


def line_start_offsets(script: str) -> list[int]:
    return [0] + [match.end() for match in re.finditer("\n", script)]


def line_and_column(line_starts: list[int], offset: int) -> tuple[int, int]:
    """1-based line and column of a 0-based character offset."""
    line_index = bisect_right(line_starts, offset) - 1
    return line_index + 1, offset - line_starts[line_index] + 1
