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

# After a syntax error the parse resumes at the next top-level definition: at most this many
# syntax errors are reported (each costs a parse of the text up to the next one).
MAX_SYNTAX_ERRORS = 100


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
    return Span(path, *_Context.shift(token.line, token.column),
                *_Context.shift(end_line, end_column))


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


def _syntax_diagnostic(exc, text: str, path: str, at: int, inside_stack: bool,
                       ) -> Diagnostic:
    """The diagnostic of a syntax error at offset `at` of `text` (the whole file; the
    exception's own positions are the region's, shifted by `_Context`)."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    from rnnspec.language.pasted import python_help, torch_call

    at_end = at >= len(text)
    if not at_end and isinstance(exc, UnexpectedCharacters | UnexpectedToken):
        pasted = torch_call(text, at, path, inside_stack)  # `nn.LSTM(` copied from PyTorch
        if pasted is not None:
            return pasted
    if isinstance(exc, UnexpectedCharacters):
        ch = text[at] if not at_end else ""
        line, column = _Context.shift(exc.line, exc.column)
        span = Span(path, line, column, line, column + 1)
        message = f"unexpected character {_describe_character(ch)}"
        return error("E002", message, span,
                     help=python_help(text, at) or _CHARACTER_HELP.get(ch))
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        found = _describe_token(exc.token)
        message = f"expected {describe_expected(exc.expected)}, found {found}"
        return error("E001", message, _span_of(exc.token, path), help=python_help(text, at))
    expected = exc.expected if isinstance(exc, UnexpectedEOF | UnexpectedToken) else ()
    line = text.count("\n") + 1
    column = len(text) - (text.rfind("\n") + 1) + 1
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
            _Context.shift(item.line, item.column))

    def end(item):
        return (item.span.end_line, item.span.end_column) if hasattr(item, "span") else (
            _Context.shift(item.end_line, item.end_column))

    return Span(path, *start(first), *end(last))


class _Context:
    """What the in-parser transformer needs to know about the file being parsed: its
    path, the diagnostics of literals, the top-level items finished so far (offset of
    their first token, item), and where the region being parsed starts in the file (a
    parse after a syntax error reads the rest of the file only)."""

    path = "<string>"
    problems: list[Diagnostic] = []
    finished: list[tuple[int, object]] = []
    start = 0  # the region's offset in the file
    lines = 0  # lines of the file before the region
    columns = 0  # columns of its first line before the region

    @classmethod
    def shift(cls, line: int, column: int) -> tuple[int, int]:
        """A position of the region (1-based) as a position of the file."""
        return line + cls.lines, column + (cls.columns if line == 1 else 0)

    @classmethod
    def finish(cls, keyword, item):
        cls.finished.append((cls.start + keyword.start_pos, item))
        return item


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
        return _Context.finish(children[0], ast.Stack(
            str(name),
            _tok(name),
            tuple(e for e in entries if isinstance(e, ast.Property)),
            tuple(e for e in entries if isinstance(e, ast.Block)),
            _cover_children(children),
        ))


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
        return _Context.finish(children[0], ast.Cell(
            str(name), _tok(name),
            tuple(e for e in flat if isinstance(e, ast.CellArgument)),
            tuple(e for e in flat if isinstance(e, ast.StateDeclaration)),
            tuple(e for e in flat if isinstance(e, ast.ParamDeclaration)),
            tuple(e for e in flat if isinstance(e, ast.Statement)),
            _cover_children(children),
            tuple(e for e in flat if isinstance(e, ast.Require)),
        ))

    def let_item(self, children):
        keyword, name, _, value = children
        return _Context.finish(keyword, ast.Let(str(name), _tok(name), value,
                                                _cover_children(children)))

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
        return _Context.finish(children[0], ast.Expect(str(name), _tok(name), entries,
                                                       _cover_children(children)))

    def start(self, children):
        return _spec_file(_Context.path, children)


def _spec_file(path: str, items, unparsed=()) -> ast.SpecFile:
    return ast.SpecFile(
        path,
        tuple(c for c in items if isinstance(c, ast.Let)),
        tuple(c for c in items if isinstance(c, ast.Stack)),
        tuple(c for c in items if isinstance(c, ast.Expect)),
        tuple(c for c in items if isinstance(c, ast.Cell)),
        tuple(unparsed),
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
    """The AST of `text`, or None after a syntax error; and the diagnostics of its syntax
    (every one: see `parse_recovering`) and literals."""
    spec, problems = parse_recovering(text, path)
    return (None if spec.unparsed else spec), problems


def parse_recovering(text: str, path: str) -> tuple[ast.SpecFile, list[Diagnostic]]:
    """The AST of `text` and the diagnostics of its syntax and literals.

    After a syntax error the parse resumes at the next top-level definition (`let`,
    `stack`, `expect`, `cell` first on a line or after a `}`): the AST holds every item
    that parsed, and `SpecFile.unparsed` one entry per dropped part (naming the definition
    when its header says), so that the checker reports each other item's errors and
    nothing about the missing ones.
    """
    with collector_paused():
        _Context.path, _Context.problems, _Context.finished = path, [], []
        _Context.start = _Context.lines = _Context.columns = 0
        spec, failure = _parse_region(text)
        if failure is None:
            return spec, _Context.problems
        return _recover(text, path)


def _parse_region(text: str):
    """(the AST, None) of `text`, or (None, the exception that stopped the parse)."""
    from lark.exceptions import UnexpectedInput

    _Nesting.depth = 0
    try:
        return parser().parse(text), None
    except (_NestingTooDeep, UnexpectedInput) as exc:
        return None, exc


def _error_offset(exc, length: int) -> int:
    """Where in a region of `length` characters a parse stopped (`length` at its end)."""
    token = getattr(exc, "token", None)
    if token is not None and token.type != "$END" and token.start_pos is not None:
        return token.start_pos
    position = getattr(exc, "pos_in_stream", None)
    return length if position is None or token is not None else position


def _region(text: str, start: int, end: int):
    """Parses `text[start:end]` as a region of the file: (items, exception or None)."""
    _Context.start = start
    _Context.lines = text.count("\n", 0, start)
    _Context.columns = start - (text.rfind("\n", 0, start) + 1)
    _Context.finished = []
    _, failure = _parse_region(text[start:end])
    return _Context.finished, failure


def _recover(text: str, path: str) -> tuple[ast.SpecFile, list[Diagnostic]]:
    """Parses `text` region by region: each syntax error drops the definition it is in and
    the parse goes on at the next one (see `parse`)."""
    import bisect

    from rnnspec.language.regions import item_starts, unparsed_part

    starts = item_starts(text, item_keywords())
    items, unparsed, problems = [], [], []
    _Context.problems = problems
    position = 0
    for _ in range(MAX_SYNTAX_ERRORS):
        finished, failure = _region(text, position, len(text))
        items += finished
        if failure is None:
            break
        at = position + _error_offset(failure, len(text) - position)
        index = bisect.bisect_right(starts, at) - 1
        if starts[index] == at and starts[index] > position:
            index -= 1  # the keyword of the next definition: this one did not end
        begin = starts[index]
        problems.append(_region_error(failure, text, path, at, begin))
        # a whole definition followed by something else: keep the definition
        line = text.rfind("\n", 0, at) + 1
        kept = []
        if line > begin:
            shown = len(problems)
            kept, rest = _region(text, begin, line)
            del problems[shown:]  # its literals are reported already
            seen = {offset for offset, _ in items}
            kept = [item for item in kept if item[0] not in seen] if rest is None else []
        items += kept  # else the definition is dropped, named when its header says
        unparsed.append(ast.Unparsed("", "", None) if kept
                        else unparsed_part(text, path, begin, item_keywords()))
        if index + 1 >= len(starts):
            break
        position = starts[index + 1]
    items.sort(key=lambda item: item[0])
    unique = {(d.code, d.span, d.message): d for d in problems}  # literals seen twice
    return _spec_file(path, [item for _, item in items], unparsed), list(unique.values())


def _region_error(failure, text: str, path: str, at: int, begin: int) -> Diagnostic:
    if isinstance(failure, _NestingTooDeep):
        span = _span_of(failure.token, path)
        message = f"parentheses nested more than {MAX_NESTING} deep"
        return error("E003", message, span, help="name a part of it with `let`")
    before = re.sub(r"#[^\n]*", "", text[begin:at])
    inside = before.lstrip().startswith("stack") and before.count("{") > before.count("}")
    return _syntax_diagnostic(failure, text, path, at, inside)


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


__all__ = ["parse", "parse_recovering", "parser", "language_words", "operator_words",
           "item_keywords", "cell_keywords"]
