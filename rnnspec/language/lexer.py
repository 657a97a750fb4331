"""The language's one lexer, built from the parser's own terminals.

Two readers share it. The parser runs `ParserLexer` (a Lark lexer: `parse.parser()` names
it), and the tools read `tokenize` (through `parse.tokenize`, which passes the parser's
scanner): `rnnspec fmt` and the language server's completion read
files that may not parse (half typed, or with characters the language has no use for), and
fmt keeps comments, so they need a token stream that never fails and keeps what the grammar
ignores. Both read the one scanner built here from the terminal definitions of the grammar,
which tries them in the order Lark's own basic lexer does, so a new keyword, operator or
number form is one grammar edit:

- a fixed string that a pattern also matches (the keyword `let` and NAME) is matched by
  the pattern and then retyped, as Lark does;
- a run of fixed strings that Lark would try one after the other (the operators) is one
  alternative, longest first, whose text names its terminal: the scanner's regular
  expression stays small, and compiling it is part of every `rnnspec check`;
- for the tools, what the grammar ignores (spaces, newlines and comments, one terminal) is
  cut into its comments, each a COMMENT token, and the newlines before the next token are
  counted; a character that no terminal matches is an UNKNOWN token of its own. For the
  parser it is Lark's own `UnexpectedCharacters` error.
"""

from __future__ import annotations

import functools
import re

from lark.exceptions import UnexpectedCharacters
from lark.lexer import Lexer, PatternStr
from lark.lexer import Token as LarkToken

from rnnspec.records import Record

COMMENT = "COMMENT"
UNKNOWN = "UNKNOWN"
# The pattern terminals that are values, by the kind the tools see them as; every other
# terminal that reads as a word is a keyword (kind "name"), the rest are operators ("op").
_VALUE_KINDS = {"NAME": "name", "INT": "int", "FLOAT": "float"}
_STRINGS = "rnnspec_strings_"  # the group of a run of fixed strings (terminals are upper case)


class Token(Record):
    type: str  # the grammar's terminal (NAME, INT, LET, PLUS, ...), COMMENT or UNKNOWN
    kind: str  # name (keywords too), int, float, op, comment, other
    text: str
    start: int  # offset in the text
    newlines: int  # newlines between the previous token (or comment) and this one


class _Scanner(Record):
    pattern: re.Pattern  # one named group per pattern terminal or run of fixed strings
    strings: dict  # group of a run of fixed strings -> {string: its terminal}
    retype: dict  # terminal -> {fixed string it also matches: that string's terminal}
    kinds: dict  # terminal -> kind
    ignored: frozenset
    terminals: frozenset  # every terminal the scanner can give


def _build(terminals, ignore) -> _Scanner:
    """The scanner of `terminals` (Lark `TerminalDef`s), `ignore` the ignored ones."""
    ordered = sorted(terminals, key=lambda t: (
        -t.priority, -t.pattern.max_width, -len(t.pattern.value), t.name))
    strings = [t for t in ordered if isinstance(t.pattern, PatternStr)]
    patterns = [t for t in ordered if not isinstance(t.pattern, PatternStr)]
    retype: dict[str, dict[str, str]] = {}
    embedded = set()
    for pattern in patterns:
        regexp = re.compile(pattern.pattern.to_regexp())
        for string in strings:
            if string.priority == pattern.priority and regexp.fullmatch(string.pattern.value):
                retype.setdefault(pattern.name, {})[string.pattern.value] = string.name
                embedded.add(string.name)
    kinds = {COMMENT: "comment", UNKNOWN: "other"}
    for terminal in ordered:
        word = isinstance(terminal.pattern, PatternStr) and terminal.pattern.value.isidentifier()
        kinds[terminal.name] = _VALUE_KINDS.get(terminal.name, "name" if word else "op")
    alternatives: list[str] = []
    runs: dict[str, dict[str, str]] = {}
    run: list = []

    def end_run():
        if run:
            group = f"{_STRINGS}{len(runs)}"
            texts = sorted((t.pattern.value for t in run), key=lambda v: -len(v))
            alternatives.append(f"(?P<{group}>{'|'.join(re.escape(v) for v in texts)})")
            runs[group] = {t.pattern.value: t.name for t in run}
            run.clear()

    for terminal in ordered:
        if terminal.name in embedded:
            continue
        if isinstance(terminal.pattern, PatternStr):
            run.append(terminal)
            continue
        end_run()
        alternatives.append(f"(?P<{terminal.name}>{terminal.pattern.to_regexp()})")
    end_run()
    alternatives.append(f"(?P<{UNKNOWN}>(?s:.))")
    return _Scanner(re.compile("|".join(alternatives)), runs, retype, kinds,
                    frozenset(ignore), frozenset(t.name for t in ordered))


@functools.cache
def scanner_of(conf) -> _Scanner:
    """The scanner of a Lark lexer configuration (the parser's: `parse.parser().lexer_conf`),
    built once per process."""
    return _build(conf.terminals, conf.ignore)


def _terminal(scanner: _Scanner, match: re.Match) -> tuple[str, str]:
    """The terminal and text of a match of the scanner."""
    group, value = match.lastgroup, match.group()
    run = scanner.strings.get(group)
    if run is not None:
        return run[value], value
    return scanner.retype.get(group, {}).get(value, group), value


class ParserLexer(Lexer):
    """The lexer the parser runs (Lark's interface: `lex` yields tokens)."""

    __future_interface__ = 2  # `lex(lexer_state, parser_state)`, as Lark's own lexers

    def __init__(self, conf):
        self.conf = conf
        self.callbacks = conf.callbacks

    def lex(self, lexer_state, parser_state):
        scanner = scanner_of(self.conf)
        match_at, ignored, callbacks = scanner.pattern.match, scanner.ignored, self.callbacks
        text, end = lexer_state.text.text, lexer_state.text.end
        counter = lexer_state.line_ctr
        while counter.char_pos < end:
            match = match_at(text, counter.char_pos, end)
            kind, value = _terminal(scanner, match)
            if kind == UNKNOWN:
                allowed = scanner.terminals - ignored or {"<END-OF-FILE>"}
                last = lexer_state.last_token
                raise UnexpectedCharacters(
                    text, counter.char_pos, counter.line, counter.column, allowed=allowed,
                    token_history=last and [last], state=parser_state,
                    terminals_by_name=self.conf.terminals_by_name)
            if kind in ignored:
                counter.feed(value)
                continue
            token = LarkToken(kind, value, counter.char_pos, counter.line, counter.column)
            counter.feed(value, "\n" in value)
            token.end_line, token.end_column = counter.line, counter.column
            token.end_pos = counter.char_pos
            if kind in callbacks:
                token = callbacks[kind](token)
            lexer_state.last_token = token
            yield token


def tokenize(text: str, scanner: _Scanner) -> list[Token]:
    """Every token and comment of `text` in order, with the newlines before each
    (`parse.tokenize` passes the parser's scanner)."""
    kinds, ignored = scanner.kinds, scanner.ignored
    tokens: list[Token] = []
    newlines = 0
    for match in scanner.pattern.finditer(text):
        kind, value = _terminal(scanner, match)
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
        tokens.append(Token(kind, kinds[kind], value, match.start(), newlines))
        newlines = 0
    return tokens


__all__ = ["COMMENT", "UNKNOWN", "ParserLexer", "Token", "tokenize"]
