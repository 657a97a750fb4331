"""Reading a .rnn file and turning its text into the AST. With `lexer` (the tokens), the only
module that uses Lark."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import unicodedata

from rnnspec.language import ast
from rnnspec.language.diagnostics import Diagnostic, Span, error

# A legitimate spec never nests parentheses this deep; refusing deeper ones keeps every
# later recursive walk (evaluation of expressions) far from Python's recursion limit.
MAX_NESTING = 64
# Integer literals longer than this are refused before Python converts them.
MAX_LITERAL_DIGITS = 500
# The language's grammar, beside this module (and so inside the wheel).
GRAMMAR_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rnnspec.lark")

# Terminals matched by a pattern, described in words. Every other terminal is a fixed string
# of the grammar and is shown as itself, so a new keyword or operator is one grammar edit.
_PATTERN_WORDS = {"NAME": "a name", "INT": "an integer", "FLOAT": "a number",
                  "$END": "end of file"}
_VALUE_START = {"INT", "FLOAT", "NAME", "TRUE", "FALSE", "LPAR", "MINUS", "NOT"}
# Operators that may follow a value, named together so that a syntax error after a value
# does not list a dozen symbols.
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASHSLASH", "LESS", "LESSEQUAL", "MORE", "MOREEQUAL",
              "EQEQUAL", "NOTEQUAL", "AND", "OR", "IF"}

_CHARACTER_HELP = {
    '"': "words are written bare, without quotes: `nonlinearity = relu`",
    "'": "words are written bare, without quotes: `nonlinearity = relu`",
    ":": "properties and arguments are set with `=`",
    ";": "entries need no separator: put each on its own line",
    ".": "a number needs digits on both sides of the point: `0.5`",
}

# `nn.LSTM(` or `torch.nn.GRU(` copied from PyTorch code: the `.` is the unexpected character.
_TORCH_CALL = re.compile(r"(?:\btorch\s*\.\s*)?\bnn\s*\.\s*([A-Za-z_]\w*)\s*\(")


class SourceError(Exception):
    """A file that cannot be turned into text (exit status 2)."""

    def __init__(self, diagnostic: Diagnostic, text: str = ""):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic
        self.text = text  # what could be decoded, for showing the offending line


def decode_source(data: bytes, path: str) -> str:
    """UTF-8 text with a leading byte-order mark dropped and every line ending made `\\n`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        span = Span(path, line, column, line, column + 1)
        raise SourceError(
            error(
                "E005",
                f"file is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}",
                span,
                help="save the file as UTF-8",
            ),
            data.decode("utf-8", "replace"),
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_source(path: str) -> str:
    """The text of the spec at `path`; raises `SourceError` for anything unreadable."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SourceError(error("E006", f"cannot read `{path}`: {reason}", None)) from None
    return decode_source(data, path)


# ----------------------------------------------------------------------------- the parser


class _NestingTooDeep(Exception):
    def __init__(self, token):
        self.token = token


class _Nesting:
    """Counts open parentheses as the lexer meets them (reset for every parse)."""

    depth = 0

    @classmethod
    def open(cls, token):
        cls.depth += 1
        if cls.depth > MAX_NESTING:
            raise _NestingTooDeep(token)
        return token

    @classmethod
    def close(cls, token):
        cls.depth -= 1
        return token


def _cache_file(grammar: str, options: dict) -> str | None:
    """Lark's serialized parser: loading it is several times faster than building it. Its
    name is a digest of what Lark builds it from, so that installations of rnnspec with
    other grammars (or Lark versions) that share the cache folder keep one file each rather
    than replacing each other's on every start."""
    import hashlib

    from lark import __version__ as lark_version

    from rnnspec.resources import cache_folder

    folder = cache_folder()
    if not folder:
        return None
    built_from = [grammar, lark_version, *(f"{k}={v!r}" for k, v in sorted(options.items())
                                           if k not in ("transformer", "lexer_callbacks"))]
    digest = hashlib.sha256("\n".join(built_from).encode("utf-8")).hexdigest()[:16]
    return os.path.join(folder, f"parser-{digest}.lark.cache")


def _read_grammar() -> str:
    with open(GRAMMAR_PATH, encoding="utf-8") as handle:
        return handle.read()


@functools.cache
def parser():
    """The LALR parser, built on first use and kept for the life of the process."""
    from lark import Lark

    from rnnspec.language.lexer import ParserLexer

    grammar = _read_grammar()
    options = dict(
        parser="lalr",
        lexer=ParserLexer,
        maybe_placeholders=True,
        transformer=_build_transformer(),
        lexer_callbacks={"LPAR": _Nesting.open, "RPAR": _Nesting.close},
    )
    cache = _cache_file(grammar, options)
    if cache:
        try:
            return Lark(grammar, cache=cache, **options)
        except OSError:
            pass
    return Lark(grammar, **options)


def tokenize(text: str):
    """The tokens of `text` for the tools (`lexer.tokenize`): those the parser reads, with
    comments kept and never an error."""
    from rnnspec.language.lexer import scanner_of
    from rnnspec.language.lexer import tokenize as tokens

    return tokens(text, scanner_of(parser().lexer_conf))


# ----------------------------------------------------------------------------- syntax errors


def _span_of(token, path: str) -> Span:
    end_line = token.end_line or token.line
    end_column = token.end_column or token.column + max(1, len(token))
    return Span(path, token.line, token.column, end_line, end_column)


@functools.cache
def terminal_words() -> dict[str, str]:
    """Each terminal of the grammar in words: `let` for LET, "a name" for NAME."""
    from lark.lexer import PatternStr

    words = dict(_PATTERN_WORDS)
    for terminal in parser().terminals:
        if isinstance(terminal.pattern, PatternStr):
            words[terminal.name] = f"`{terminal.pattern.value}`"
    return words


@functools.cache
def language_words() -> frozenset[str]:
    """The grammar's keywords (`let`, `stack`, ...): fixed strings that read as names."""
    from lark.lexer import PatternStr

    return frozenset(t.pattern.value for t in parser().terminals
                     if isinstance(t.pattern, PatternStr) and t.pattern.value.isidentifier())


# The keywords that act as operators in expressions (never an operand): `rnnspec fmt`
# spaces and splits around them.
_OPERATOR_WORDS = ("IF", "ELSE", "AND", "OR", "NOT")


@functools.cache
def operator_words() -> frozenset[str]:
    """The grammar's keywords that are operators: `if`, `else`, `and`, `or`, `not`."""
    return frozenset(parser().get_terminal(name).pattern.value for name in _OPERATOR_WORDS)


def _keywords_after(prefix: str) -> tuple[str, ...]:
    """The keywords the parser accepts after `prefix`, in the grammar's order."""
    from lark.lexer import PatternStr

    state = parser().parse_interactive(prefix)
    state.exhaust_lexer()
    accepted = state.accepts()
    return tuple(t.pattern.value for t in parser().terminals if t.name in accepted
                 and isinstance(t.pattern, PatternStr) and t.pattern.value.isidentifier())


@functools.cache
def item_keywords() -> tuple[str, ...]:
    """The keywords that start a file's items: `let`, `stack`, `expect`, `cell`."""
    return _keywords_after("")


@functools.cache
def cell_keywords() -> tuple[str, ...]:
    """The keywords that start an entry of a cell's body: `state`, `param`."""
    return _keywords_after("cell c {")


def describe_expected(expected) -> str:
    names = set(expected)
    words = []
    if _VALUE_START - {"NOT"} <= names:  # `not` cannot start a comparison's operand
        words.append("a value")
        names -= _VALUE_START | {"LSQB"}  # a pair `[a, b]` is a value too
    if _OPERATORS <= names:
        words.append("an operator")
        names -= _OPERATORS
    known = terminal_words()
    words += sorted(known.get(n, f"`{n}`") for n in names)
    if len(words) == 1:
        return words[0]
    if len(words) == 2:
        return f"{words[0]} or {words[1]}"
    listed = ", ".join(words[:-1]) + f", or {words[-1]}"
    return listed if words[0].startswith("a") else "one of " + listed


def _describe_token(token) -> str:
    if token.type == "$END":
        return "end of file"
    text = str(token)
    return f"`{text if len(text) <= 40 else text[:37] + '...'}`"


def _describe_character(ch: str) -> str:
    if ch.isprintable() and not ch.isspace():
        return f"`{ch}`"
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


def _torch_call(text: str, position: int, line: int, column: int, path: str):
    """E033 at `nn.LSTM` when the unexpected `.` belongs to a PyTorch module's call."""
    from rnnspec.cells.registry import BUILTIN_CELLS

    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    source = text[start:] if end < 0 else text[start:end]
    offset = position - start
    for match in _TORCH_CALL.finditer(source):
        if match.start() <= offset < match.end(1):
            written = re.sub(r"\s+", "", match.group(0)[:match.end(1) - match.start()])
            cell = match.group(1).lower()
            first = column - (offset - match.start())
            span = Span(path, line, first, line, column + (match.end(1) - offset))
            if cell in BUILTIN_CELLS:
                prefix = written[:-len(match.group(1))]
                hint = f"write `{cell}(...)`: rnnspec's cells are lowercase, without `{prefix}`"
            else:
                hint = "rnnspec's cells are `rnn`, `lstm`, `gru` and the file's own `cell`s"
            return error("E033", f"unknown cell `{written}`", span, help=hint)
    return None


def _syntax_diagnostic(exc, text: str, path: str) -> Diagnostic:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        span = Span(path, exc.line, exc.column, exc.line, exc.column + 1)
        if ch == ".":
            torch_call = _torch_call(text, exc.pos_in_stream, exc.line, exc.column, path)
            if torch_call is not None:
                return torch_call
        message = f"unexpected character {_describe_character(ch)}"
        return error("E002", message, span, help=_CHARACTER_HELP.get(ch))
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        found = _describe_token(exc.token)
        message = f"expected {describe_expected(exc.expected)}, found {found}"
        return error("E001", message, _span_of(exc.token, path))
    expected = exc.expected if isinstance(exc, UnexpectedEOF | UnexpectedToken) else ()
    lines = text.split("\n")
    line, column = len(lines), len(lines[-1]) + 1
    span = Span(path, line, column, line, column + 1)
    return error("E001", f"expected {describe_expected(expected)}, found end of file", span)


# ----------------------------------------------------------------------------- tree to AST


def _cover(path: str, children) -> Span:
    """The span from the first positioned child to the last (tokens and AST nodes)."""
    first = last = None
    for child in children:
        if child is None:
            continue
        if first is None:
            first = child
        last = child

    def start(item):
        return (item.span.line, item.span.column) if hasattr(item, "span") else (
            item.line, item.column)

    def end(item):
        return (item.span.end_line, item.span.end_column) if hasattr(item, "span") else (
            item.end_line, item.end_column)

    return Span(path, *start(first), *end(last))


class _Context:
    """What the in-parser transformer needs to know about the file being parsed."""

    path = "<string>"
    problems: list[Diagnostic] = []


def _tok(token) -> Span:
    return _span_of(token, _Context.path)


def _cover_children(children) -> Span:
    return _cover(_Context.path, children)


# The rules' callbacks, one method per rule of the grammar, in three groups (Lark finds a
# rule's method by its name). A child that is a `str` is a token (Lark's `Token`): every
# AST node is a tuple.


class _ExpressionRules:
    """Values, operators and conditionals."""

    def integer(self, children):
        (token,) = children
        digits = token.replace("_", "")
        if len(digits) > MAX_LITERAL_DIGITS:
            message = (f"integer literal has {len(digits)} digits, "
                       f"more than {MAX_LITERAL_DIGITS}")
            _Context.problems.append(error("E004", message, _tok(token)))
            return ast.Invalid(_tok(token))
        return ast.Integer(int(digits), _tok(token))

    def float(self, children):
        (token,) = children
        value = float(token.replace("_", ""))
        if not math.isfinite(value):
            message = f"number `{token}` is too large for a float"
            _Context.problems.append(error("E004", message, _tok(token)))
            return ast.Invalid(_tok(token))
        return ast.Float(value, _tok(token))

    def true(self, children):
        return ast.Boolean(True, _tok(children[0]))

    def false(self, children):
        return ast.Boolean(False, _tok(children[0]))

    def name(self, children):
        return ast.Name(str(children[0]), _tok(children[0]))

    def negation(self, children):
        *signs, operand = children
        return ast.Negation(operand, len(signs), _cover_children(children))

    def parenthesized(self, children):
        return children[1]

    def list_value(self, children):
        items = tuple(c for c in children if c is not None and not isinstance(c, str))
        return ast.ListValue(items, _cover_children(children))

    def _chain(self, children):
        rest = tuple(
            (str(op), _tok(op), operand)
            for op, operand in zip(children[1::2], children[2::2], strict=True)
        )
        return ast.Chain(children[0], rest, _cover_children(children))

    sum = product = _chain

    def comparison(self, children):
        rest = tuple(
            (str(op), _tok(op), operand)
            for op, operand in zip(children[1::2], children[2::2], strict=True)
        )
        return ast.Comparison(children[0], rest, _cover_children(children))

    def _logic(self, children):
        return ast.Logic(str(children[1]), tuple(children[::2]), _cover_children(children))

    disjunction = conjunction = _logic

    def logical_not(self, children):
        *words, operand = children
        return ast.Not(operand, len(words), _cover_children(children))

    def conditional(self, children):
        values = children[::2]  # value, IF, condition, ELSE, value, IF, ...
        branches = tuple(zip(values[:-1:2], values[1::2], strict=True))
        return ast.Conditional(branches, values[-1], _cover_children(children))


class _StackRules:
    """Stacks, their properties and blocks, and calls."""

    def keyword_argument(self, children):
        name, _, value = children
        return ast.Argument(str(name), _tok(name), value, _cover_children(children))

    def positional_argument(self, children):
        return ast.Argument(None, None, children[0], _cover_children(children))

    def call(self, children):
        name = children[0]
        arguments = tuple(c for c in children if isinstance(c, ast.Argument))
        return ast.Call(str(name), _tok(name), arguments, _cover_children(children))

    def assignment(self, children):
        name, _, value = children
        if isinstance(value, ast.Call):  # `encoder = lstm(...)`: a named block
            return ast.Block(str(name), _tok(name), value.name, value.name_span,
                             value.arguments, _cover_children(children))
        return ast.Property(str(name), _tok(name), value, _cover_children(children))

    def stack_item(self, children):
        name = children[1]
        entries = [ast.Block(None, None, e.name, e.name_span, e.arguments, e.span)
                   if isinstance(e, ast.Call) else e for e in children[3:-1]]
        return ast.Stack(
            str(name),
            _tok(name),
            tuple(e for e in entries if isinstance(e, ast.Property)),
            tuple(e for e in entries if isinstance(e, ast.Block)),
            _cover_children(children),
        )


class _ItemRules:
    """Cells, constants, expectations and the file."""

    def cell_argument(self, children):
        name, *rest = children
        default = rest[-1] if rest else None
        return ast.CellArgument(str(name), _tok(name), default, _cover_children(children))

    def state(self, children):
        name, _, size, _ = children
        return ast.StateDeclaration(str(name), _tok(name), size, _cover_children(children))

    def state_declaration(self, children):
        return [c for c in children if isinstance(c, ast.StateDeclaration)]

    def param(self, children):
        name, (dims, dims_span), *rest = children
        init = rest[-1] if rest else None
        return ast.ParamDeclaration(str(name), _tok(name), dims, dims_span, init,
                                    _tok(name).to(init.span if init else dims_span))

    def param_declaration(self, children):
        return [c for c in children if isinstance(c, ast.ParamDeclaration)]

    def require_declaration(self, children):
        return ast.Require(children[-1], _cover_children(children))

    def statement(self, children):
        names = [c for c in children[:-1] if isinstance(c, str) and c.type == "NAME"]
        return ast.Statement(tuple((str(n), _tok(n)) for n in names), children[-1],
                             _cover_children(children))

    def cell_item(self, children):
        name = children[1]
        entries = [c for c in children[2:] if not isinstance(c, str)]
        flat = [e for entry in entries
                for e in (entry if isinstance(entry, list) else (entry,))]
        return ast.Cell(
            str(name), _tok(name),
            tuple(e for e in flat if isinstance(e, ast.CellArgument)),
            tuple(e for e in flat if isinstance(e, ast.StateDeclaration)),
            tuple(e for e in flat if isinstance(e, ast.ParamDeclaration)),
            tuple(e for e in flat if isinstance(e, ast.Statement)),
            _cover_children(children),
            tuple(e for e in flat if isinstance(e, ast.Require)),
        )

    def let_item(self, children):
        _, name, _, value = children
        return ast.Let(str(name), _tok(name), value, _cover_children(children))

    # expectations
    def selector(self, children):
        (token,) = children
        value = int(token.replace("_", "")) if token.type == "INT" else str(token)
        return ast.Selector(value, _tok(token))

    def dims(self, children):
        exprs = tuple(c for c in children if c is not None and not isinstance(c, str))
        return exprs, _cover_children(children)

    def expect_entry(self, children):
        key, _, selector, _, _, (dims, dims_span) = children
        span = _tok(key).to(dims_span)
        return ast.ExpectEntry(str(key), _tok(key), selector, dims, dims_span, span)

    def expect_item(self, children):
        name = children[1]
        entries = tuple(c for c in children if isinstance(c, ast.ExpectEntry))
        return ast.Expect(str(name), _tok(name), entries, _cover_children(children))

    def start(self, children):
        return ast.SpecFile(
            _Context.path,
            tuple(c for c in children if isinstance(c, ast.Let)),
            tuple(c for c in children if isinstance(c, ast.Stack)),
            tuple(c for c in children if isinstance(c, ast.Expect)),
            tuple(c for c in children if isinstance(c, ast.Cell)),
        )


def _build_transformer():
    """Callbacks that Lark runs as it reduces each rule, building the AST without a tree.

    Running them inside the LALR parser (rather than transforming a finished tree)
    halves the time of a large file and never recurses, however deep the input nests.
    Spans are computed from the children, which all carry positions.
    """
    from lark import Transformer

    class ToAst(_ExpressionRules, _StackRules, _ItemRules, Transformer):
        pass

    return ToAst()


def parse(text: str, path: str) -> tuple[ast.SpecFile | None, list[Diagnostic]]:
    """The AST of `text`, or None with the syntax error that stopped the parse.

    Literal problems (an integer with too many digits) come back beside the AST.
    """
    from lark.exceptions import UnexpectedInput

    _Nesting.depth = 0
    _Context.path, _Context.problems = path, []
    with collector_paused():
        try:
            spec = parser().parse(text)
        except _NestingTooDeep as exc:
            span = _span_of(exc.token, path)
            message = f"parentheses nested more than {MAX_NESTING} deep"
            return None, [error("E003", message, span, help="name a part of it with `let`")]
        except UnexpectedInput as exc:
            return None, [_syntax_diagnostic(exc, text, path)]
    return spec, _Context.problems


@contextlib.contextmanager
def collector_paused():
    """Pause Python's cyclic garbage collector (nesting is fine).

    Parsing and checking allocate many small objects and free almost none, and the AST
    holds no reference cycles: with the collector running, each of its passes rescans the
    growing heap and a large file's time grows faster than its size.
    """
    import gc

    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


__all__ = ["parse", "read_source", "decode_source", "SourceError", "parser", "language_words",
           "operator_words", "item_keywords", "cell_keywords"]
