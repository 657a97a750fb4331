"""The language's tokens, comments included, built from the parser's own terminals.

`rnnspec fmt` and the language server's completion read files that may not parse (half
typed, or with characters the language has no use for), and fmt keeps comments: both need
a token stream that never fails and keeps what the grammar ignores. This module builds it
from the terminal definitions of the Lark parser (`parse.parser()`), in the order Lark's
own basic lexer tries them, so a new keyword, operator or number form is one grammar edit:

- a fixed string that a pattern also matches (the keyword `let` and NAME) is matched by
  the pattern and then retyped, as Lark does;
- what the grammar ignores (spaces, newlines and comments, one terminal) is cut into its
  comments, each a COMMENT token, and the newlines before the next token are counted;
- a character that no terminal matches is an UNKNOWN token of its own.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

COMMENT = "COMMENT"
UNKNOWN = "UNKNOWN"
# The pattern terminals that are values, by the kind the tools see them as; every other
# terminal that reads as a word is a keyword (kind "name"), the rest are operators ("op").
_VALUE_KINDS = {"NAME": "name", "INT": "int", "FLOAT": "float"}


class Token(NamedTuple):
    type: str  # the grammar's terminal (NAME, INT, LET, PLUS, ...), COMMENT or UNKNOWN
    kind: str  # name (keywords too), int, float, op, comment, other
    text: str
    start: int  # offset in the text
    newlines: int  # newlines between the previous token (or comment) and this one


class _Scanner(NamedTuple):
    pattern: re.Pattern
    retype: dict  # terminal -> {fixed string it also matches: that string's terminal}
    kinds: dict  # terminal -> kind
    ignored: frozenset


@functools.cache
def _scanner() -> _Scanner:
    from lark.lexer import PatternStr

    from rnnspec.language.parse import parser

    lark = parser()
    terminals = sorted(lark.terminals, key=lambda t: (
        -t.priority, -t.pattern.max_width, -len(t.pattern.value), t.name))
    strings = [t for t in terminals if isinstance(t.pattern, PatternStr)]
    patterns = [t for t in terminals if not isinstance(t.pattern, PatternStr)]
    retype: dict[str, dict[str, str]] = {}
    embedded = set()
    for pattern in patterns:
        regexp = re.compile(pattern.pattern.to_regexp())
        for string in strings:
            if string.priority == pattern.priority and regexp.fullmatch(string.pattern.value):
                retype.setdefault(pattern.name, {})[string.pattern.value] = string.name
                embedded.add(string.name)
    kinds = {COMMENT: "comment", UNKNOWN: "other"}
    for terminal in terminals:
        word = isinstance(terminal.pattern, PatternStr) and terminal.pattern.value.isidentifier()
        kinds[terminal.name] = _VALUE_KINDS.get(terminal.name, "name" if word else "op")
    alternatives = [f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in terminals
                    if t.name not in embedded]
    alternatives.append(f"(?P<{UNKNOWN}>(?s:.))")
    return _Scanner(re.compile("|".join(alternatives)), retype, kinds,
                    frozenset(lark.lexer_conf.ignore))


def tokenize(text: str) -> list[Token]:
    """Every token and comment of `text` in order, with the newlines before each."""
    scanner = _scanner()
    kinds, retype, ignored = scanner.kinds, scanner.retype, scanner.ignored
    tokens: list[Token] = []
    newlines = 0
    for match in scanner.pattern.finditer(text):
        kind, value = match.lastgroup, match.group()
        if kind in ignored:
            offset = match.start()
            for number, piece in enumerate(value.split("\n")):
                if number:
                    newlines += 1
                comment = piece.lstrip()
                if comment:
                    start = offset + len(piece) - len(comment)
                    tokens.append(Token(COMMENT, "comment", comment, start, newlines))
                    newlines = 0
                offset += len(piece) + 1
            continue
        kind = retype.get(kind, {}).get(value, kind)
        tokens.append(Token(kind, kinds[kind], value, match.start(), newlines))
        newlines = 0
    return tokens


__all__ = ["COMMENT", "UNKNOWN", "Token", "tokenize"]
