"""`rnnspec fmt`: one canonical layout for .rnn files.

The formatter works on the token stream, not on the AST: the language's lexer
(`language.lexer`, built from the grammar's terminals, comments kept), and a layout pass
that tracks brace and bracket depth. It never needs to know which items the grammar has,
so it keeps working as the language grows (cells, conditional expressions, new block
arguments); the parser is only asked whether a file parses before the CLI rewrites it.

The layout (docs/editors.md has the user-facing version):

- 4 spaces of indentation per open `{`; one item per line; `{` ends its line, `}` stands
  on its own line;
- one space around `=` and binary operators, after `,`, none inside `()` and `[]`, none
  before a call's `(` or an index's `[`, none after a unary minus; a call's arguments stay
  on its line (`name(arg = v, ...)`) unless the source broke the line after one of its
  commas: that break stays, the next line indented one level deeper than the call's
  line; a trailing comma before `)` or `]` is dropped;
- `=` aligned over consecutive entries of an `expect` block, and over consecutive
  properties and consecutive named blocks of a `stack`; trailing comments aligned over
  consecutive lines that have one;
- exactly one blank line between top-level items (consecutive `let` lines may stay
  together); inside a block, at most one blank line where there was at least one;
- comments stay where they were: an own-line comment on its own line, a trailing comment
  after the token it followed (forcing a line break there if the line would continue).
"""

from __future__ import annotations

import functools

from rnnspec.records import Record

INDENT = "    "

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = frozenset(_OPENERS.values())
_TIGHT_BEFORE = frozenset({",", ")", "]", ".", ":", ";"})  # no space before these


@functools.cache
def _operator_words() -> frozenset[str]:
    """Words that act as operators (`if`, `and`, ...): never an operand, so never the end or
    start of an item. The grammar's."""
    from rnnspec.language.parse import operator_words

    return operator_words()


class Token(Record):
    kind: str  # comment, float, int, name, op, other
    text: str
    newlines: int  # newlines between the previous token (or comment) and this one


def tokenize(text: str) -> list[Token]:
    """Every token and comment of `text`, with the newlines before each (the language's
    lexer, `language.lexer`; comments without their trailing spaces)."""
    from rnnspec.language.parse import tokenize as lex

    return [Token(t.kind, t.text.rstrip() if t.kind == "comment" else t.text, t.newlines)
            for t in lex(text.replace("\r\n", "\n").replace("\r", "\n"))]


# ----------------------------------------------------------------------------- layout


class _Line:
    __slots__ = ("depth", "indent", "kind", "blank", "context", "item", "tokens", "parts",
                 "comment", "opens")

    def __init__(self, depth: int, indent: int, kind: str, blank: bool, context, item):
        self.depth = depth  # block braces open around the line
        self.indent = indent  # in levels of INDENT
        self.kind = kind  # item (starts one), close (`}`), comment (own line), more (the rest)
        self.blank = blank  # the source had a blank line before it
        self.context = context  # the keyword of the enclosing block: stack, expect, cell...
        self.item = item  # the first word of the item the line starts
        self.tokens: list[Token] = []
        self.parts: list[str] = []  # one per token, with the space before it
        self.comment: str | None = None  # a trailing comment
        self.opens = False  # the line ends with a block's `{`

    def code(self) -> str:
        return "".join(self.parts)

    def equal(self) -> int | None:
        """Where the line's first `=` outside brackets is (an item's assignment)."""
        depth = 0
        for index, token in enumerate(self.tokens):
            if token.text in ("(", "["):
                depth += 1
            elif token.text in (")", "]"):
                depth -= 1
            elif token.text == "=" and depth == 0:
                return index
        return None


def _is_operand_end(token: Token | None, keyword: bool) -> bool:
    if token is None or keyword:
        return False
    if token.kind in ("int", "float"):
        return True
    if token.kind == "name":
        return token.text not in _operator_words()
    return token.text in (")", "]")


def _is_operand_start(token: Token) -> bool:
    if token.kind in ("int", "float"):
        return True
    return token.kind == "name" and token.text not in _operator_words()


class _Layout:
    """One walk over the tokens, cutting them into lines; `_render` spaces and aligns them.

    An item starts at the beginning, after a block's `{` or `}`, and wherever a token that
    can end an operand (a name, a number, `)`, `]`) is followed, outside brackets, by one
    that can start one (a name or a number): `20 lstm(...)` is two items. A name at the
    start of an item followed by another name is the item's keyword (`let X`, `state h`).
    """

    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.lines: list[_Line] = []
        self.line: _Line | None = None  # the line being filled
        self.last: _Line | None = None  # the line that took the last code token
        self.openers: list[tuple[str, bool, str | None]] = []  # (char, is a block, context)
        self.prev: Token | None = None
        self.prev_keyword = False
        self.prev_unary = False
        self.at_item_start = True
        self.item_first: Token | None = None
        self.top_item: str | None = None
        self.pending: list[Token] = []  # own-line comments waiting for the next token

    @property
    def block_depth(self) -> int:
        return sum(1 for _, block, _ in self.openers if block)

    @property
    def inline_depth(self) -> int:
        depth = 0
        for _, block, _ in reversed(self.openers):
            if block:
                break
            depth += 1
        return depth

    def _context(self) -> str | None:
        for _, block, context in reversed(self.openers):
            if block:
                return context
        return None

    def _new_line(self, kind: str, blank: bool, indent: int | None = None, item=None) -> _Line:
        depth = self.block_depth
        line = _Line(depth, depth if indent is None else indent, kind, blank, self._context(),
                     item)
        self.lines.append(line)
        return line

    def run(self) -> list[_Line]:
        tokens = self.tokens
        for index, token in enumerate(tokens):
            if token.kind == "comment":
                if token.newlines == 0 and self.last is not None and self.last.comment is None \
                        and not self.pending:
                    self.last.comment = token.text
                    self.line = None  # whatever follows goes on a new line
                else:
                    self.pending.append(token)
                continue
            after = tokens[index + 1] if index + 1 < len(tokens) else None
            if token.text == "," and after is not None and after.text in (")", "]"):
                continue  # a trailing comma: dropped
            following = next((t for t in tokens[index + 1:] if t.kind != "comment"), None)
            self._token(token, following)
        self._flush_comments(True)
        return self.lines

    def _flush_comments(self, item_start: bool) -> None:
        for comment in self.pending:
            if item_start:
                line = self._new_line("comment", comment.newlines >= 2)
            else:
                line = self._new_line("more", False, self._continuation_indent())
            line.parts.append(comment.text)
        if self.pending:
            self.line = None
            self.pending = []

    def _continuation_indent(self) -> int:
        return self.block_depth + max(1, self.inline_depth)

    def _starts_item(self, token: Token) -> bool:
        if self.inline_depth:
            return False
        if self.at_item_start:
            return True
        return _is_operand_end(self.prev, self.prev_keyword) and _is_operand_start(token)

    def _token(self, token: Token, following: Token | None) -> None:
        text = token.text
        closes_block = text == "}" and bool(self.openers) and self.openers[-1][1]
        starts = closes_block or self._starts_item(token)
        self._flush_comments(starts)
        if closes_block:
            self.openers.pop()
            self.line = self._new_line("close", False)
            self._append(token, "}")
            self.prev, self.prev_keyword, self.prev_unary = token, False, False
            self.line, self.at_item_start = None, True
            return
        if starts:
            self.item_first = token
            if self.block_depth == 0:
                self.top_item = text
            self.line = self._new_line("item", token.newlines >= 2, item=text)
        elif self.line is None or (token.newlines and self.inline_depth
                                   and self.prev is not None and self.prev.text == ","):
            # a line break the author put after a comma inside brackets stays: a long call
            # keeps its arguments on the lines they were written on
            self.line = self._new_line("more", False, self._continuation_indent())
        self._append(token, (self._space(token) if self.line.parts else "") + text)
        keyword = (starts and token.kind == "name" and following is not None
                   and following.kind == "name" and following.text not in _operator_words())
        unary = text == "-" and not _is_operand_end(self.prev, self.prev_keyword)
        self.prev, self.prev_keyword, self.prev_unary = token, keyword, unary
        self.at_item_start = False
        if text in _OPENERS:
            block = text == "{" and self.inline_depth == 0
            context = None
            if block and self.item_first is not None and self.item_first.kind == "name":
                context = self.item_first.text
            self.openers.append((text, block, context))
            if block:
                self.line.opens = True
                self.line, self.at_item_start = None, True
        elif text in _CLOSERS and self.openers and not self.openers[-1][1]:
            self.openers.pop()

    def _append(self, token: Token, part: str) -> None:
        self.line.tokens.append(token)
        self.line.parts.append(part)
        self.last = self.line

    def _space(self, token: Token) -> str:
        prev, text = self.prev, token.text
        if prev is None or self.prev_unary or prev.text in ("(", "[", "."):
            return ""
        if text in _TIGHT_BEFORE:
            return ""
        if text in ("(", "[") and (prev.text in (")", "]") or (
                prev.kind == "name" and prev.text not in _operator_words())):
            return ""  # a call or an index
        return " "


# ----------------------------------------------------------------------------- rendering


def _alignment_class(line: _Line) -> str | None:
    """Which run of lines the line's `=` is aligned with, if any."""
    if line.kind != "item" or line.equal() is None:
        return None
    if line.context == "expect":
        return "entry"
    if line.context == "stack":
        index = line.equal()
        rest = line.tokens[index + 1:index + 3]
        if len(rest) == 2 and rest[0].kind == "name" and rest[1].text == "(":
            return "block"
        return "property"
    return None


def _decide_blank_lines(lines: list[_Line]) -> None:
    for index, line in enumerate(lines):
        prev = lines[index - 1] if index else None
        if prev is None or line.kind in ("close", "more") or prev.opens:
            line.blank = False
        elif line.depth == 0:
            if prev.kind == "comment" and prev.depth == 0:
                continue  # after a comment: as the source had it
            lets = prev_top_item(lines, index) == "let" and (
                line.kind == "comment" or line.item == "let")
            if not lets:
                line.blank = True


def prev_top_item(lines: list[_Line], index: int) -> str | None:
    """The first word of the top-level item that the line before `index` belongs to."""
    for line in reversed(lines[:index]):
        if line.depth == 0 and line.kind == "item":
            return line.item
    return None


def _align_equals(lines: list[_Line]) -> None:
    run: list[_Line] = []
    key = None

    def flush():
        if len(run) > 1:
            width = max(len("".join(line.parts[:line.equal()])) for line in run)
            for line in run:
                index = line.equal()
                pad = width - len("".join(line.parts[:index]))
                line.parts[index] = " " * pad + line.parts[index]
        run.clear()

    for line in lines:
        if line.kind == "more" or (line.kind == "comment" and not line.blank and run
                                   and line.depth == run[0].depth):
            continue
        klass = _alignment_class(line)
        if klass is None or line.blank or (line.depth, klass) != key:
            flush()
        key = (line.depth, klass)
        if klass is not None:
            run.append(line)
    flush()


def _align_comments(lines: list[_Line]) -> list[str]:
    texts = [INDENT * line.indent + line.code() for line in lines]
    out = list(texts)
    index = 0
    while index < len(lines):
        if lines[index].comment is None or lines[index].kind == "comment":
            index += 1
            continue
        end = index + 1
        while (end < len(lines) and lines[end].comment is not None
               and lines[end].kind != "comment" and not lines[end].blank
               and lines[end].indent == lines[index].indent):
            end += 1
        column = max(len(texts[i]) for i in range(index, end)) + 2
        for i in range(index, end):
            out[i] = texts[i].ljust(column) + lines[i].comment
        index = end
    return out


def format_tokens(tokens: list[Token]) -> str:
    lines = _Layout(tokens).run()
    if not lines:
        return ""
    _decide_blank_lines(lines)
    _align_equals(lines)
    texts = _align_comments(lines)
    out: list[str] = []
    for line, text in zip(lines, texts):
        if line.blank and out:
            out.append("")
        out.append(text.rstrip())
    return "\n".join(out) + "\n"


def format_text(text: str) -> str:
    """The canonical layout of `text`, whether or not the parser accepts it."""
    return format_tokens(tokenize(text))


# ----------------------------------------------------------------------------- files


class FormatRefused(Exception):
    """The text does not parse: `diagnostics` says why."""

    def __init__(self, diagnostics):
        super().__init__(diagnostics[0].message if diagnostics else "does not parse")
        self.diagnostics = diagnostics


def format_source(text: str, path: str = "<string>") -> str:
    """The canonical layout of a spec that parses; raises `FormatRefused` otherwise."""
    from rnnspec.language.parse import parse

    spec, problems = parse(text, path)
    if spec is None:
        raise FormatRefused(problems)
    return format_text(text)


def write_atomically(path: str, text: str) -> None:
    """Write `text` to `path` atomically, keeping an existing file's permission bits;
    raises `rnnspec.tools.files.OutputError` (a folder, FIFO or device is never replaced;
    a symbolic link is followed)."""
    from rnnspec.tools.files import replace_atomically

    replace_atomically(path, text, keep_mode=True)


def _not_a_file(path: str) -> str | None:
    """Why `path` cannot be formatted in place before it is even read: a FIFO, device or
    socket (reading a FIFO would wait for a writer), found with `stat` alone."""
    from rnnspec.tools.files import special_kind

    kind = special_kind(path)
    return f"refusing to format `{path}`: it is {kind}, not a regular file" if kind else None


def run_fmt(args, style) -> int:
    """`rnnspec fmt FILE... [--check] [--diff]`: 0, 1 (would change or does not parse), 2."""
    import difflib
    import sys

    from rnnspec.language.diagnostics import render
    from rnnspec.language.source import SourceError, decode_source, read_source
    from rnnspec.tools.files import OutputError

    status = 0
    for path in args.files:
        refused = None if path == "-" else _not_a_file(path)
        if refused:
            sys.stderr.write(f"{style.error('error')}: {refused}\n")
            status = max(status, 2)
            continue
        try:
            text = decode_source(sys.stdin.buffer.read(), "<stdin>") if path == "-" \
                else read_source(path)
        except SourceError as exc:
            sources = {exc.diagnostic.span.path: exc.text.split("\n")} \
                if exc.diagnostic.span else {}
            sys.stderr.write(render(exc.diagnostic, sources, style) + "\n\n")
            status = max(status, 2)
            continue
        shown = "<stdin>" if path == "-" else path
        try:
            formatted = format_source(text, shown)
        except FormatRefused as exc:
            for diagnostic in exc.diagnostics:
                sys.stderr.write(render(diagnostic, {shown: text.split("\n")}, style) + "\n\n")
            status = max(status, 1)
            continue
        if path == "-" and not (args.check or args.diff):
            sys.stdout.write(formatted)
            continue
        if formatted == text:
            continue
        if args.diff:
            sys.stdout.writelines(difflib.unified_diff(
                text.splitlines(keepends=True), formatted.splitlines(keepends=True),
                f"{shown}", f"{shown} (formatted)"))
        if args.check:
            sys.stderr.write(f"would reformat {shown}\n")
            status = max(status, 1)
        elif not args.diff:
            try:
                write_atomically(path, formatted)
            except OutputError as exc:
                sys.stderr.write(f"{style.error('error')}: {exc}\n")
                status = max(status, 2)
                continue
            sys.stderr.write(f"reformatted {shown}\n")
    return status
