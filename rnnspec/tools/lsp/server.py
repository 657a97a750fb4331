"""`rnnspec lsp`: a Language Server Protocol server over stdio (pygls 2.x, lsprotocol).

Diagnostics on open and on every change; hover (a block's shapes, a constant's value, an
`expect` key's derived shape, a stack's summary, a user cell's symbolic shapes and
equations, a cell statement's sizes); go to definition (constants, cells, stacks, block
selectors, names in a cell body); the outline; completion; formatting with `rnnspec fmt`'s
layout. User cells have their own module, `lsp_cells`.

The analysis half of this module (positions, hover text, symbols, completion items as
plain data) needs neither pygls nor lsprotocol; `serve` imports them. Every handler
catches its own exceptions: a bug answers one request with nothing, it never ends the
server.
"""

from __future__ import annotations

import functools
import re
import sys
import traceback
from typing import NamedTuple

from rnnspec.language.diagnostics import Span

# Where each code is documented: docs/diagnostics.md of the project, one anchor per code.
DOCS_URL = "https://github.com/rnnspec/rnnspec/blob/main/docs/diagnostics.md"
SYNTAX_CODES = frozenset({"E001", "E002", "E003", "E005", "E006"})  # no syntax tree
MAX_HOVER_ROWS = 40  # parameters listed in a block's hover before "... and N more"

_WORD = re.compile(r"\w+")


# ----------------------------------------------------------------------------- positions


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class Document:
    """A document's text with rnnspec (1-based, characters) <-> LSP (0-based, UTF-16)
    position conversions."""

    def __init__(self, text: str, path: str):
        self.text = text
        self.path = path
        self.lines = text.split("\n")

    def line(self, number: int) -> str:
        return self.lines[number] if 0 <= number < len(self.lines) else ""

    def to_lsp(self, line: int, column: int) -> tuple[int, int]:
        """rnnspec's 1-based line and character column -> LSP's 0-based line and UTF-16."""
        text = self.line(line - 1)
        return max(0, line - 1), _utf16(text[:max(0, column - 1)])

    def from_lsp(self, line: int, character: int) -> tuple[int, int]:
        """LSP position -> rnnspec's 1-based line and character column."""
        text = self.line(line)
        units = 0
        for index, ch in enumerate(text):
            if units >= character:
                return line + 1, index + 1
            units += 2 if ord(ch) > 0xFFFF else 1
        return line + 1, len(text) + 1

    def span_range(self, span: Span) -> tuple[tuple[int, int], tuple[int, int]]:
        return self.to_lsp(span.line, span.column), self.to_lsp(span.end_line, span.end_column)

    def offset(self, line: int, column: int) -> int:
        """Character offset of a 1-based line and column."""
        return sum(len(t) + 1 for t in self.lines[:line - 1]) + column - 1

    def word_at(self, line: int, column: int) -> tuple[str, Span] | None:
        """The word (name or number) under or just before the 1-based position."""
        text = self.line(line - 1)
        for match in _WORD.finditer(text):
            if match.start() + 1 <= column <= match.end() + 1:
                return match.group(), Span(self.path, line, match.start() + 1, line,
                                           match.end() + 1)
        return None


def _contains(span: Span | None, line: int, column: int) -> bool:
    if span is None:
        return False
    return (span.line, span.column) <= (line, column) <= (span.end_line, span.end_column)


# ----------------------------------------------------------------------------- analysis


class Analysis:
    """One version of a document: the checked file, and (on demand) its AST and constants."""

    def __init__(self, text: str, path: str):
        from rnnspec.check.checker import check_text

        self.doc = Document(text, path)
        self.result = check_text(text, path)
        self._semantic = None

    @property
    def stacks(self):
        return {s.name: s for s in self.result.stacks}

    @property
    def parsed(self) -> bool:
        """Whether the text parsed (no syntax or lexical error was reported)."""
        return not any(d.code in SYNTAX_CODES for d in self.result.diagnostics)

    def semantic(self):
        """(AST or None, constant values): parsed again only when a request needs them."""
        if self._semantic is None:
            from rnnspec.language.parse import parse

            spec, _ = parse(self.doc.text, self.doc.path)
            self._semantic = (spec, _constant_values(spec) if spec is not None else {})
        return self._semantic


def _constant_values(spec) -> dict:
    """Every constant's value (as the checker evaluates them), by name."""
    from rnnspec.check.evaluate import POISON, Evaluator
    from rnnspec.language.diagnostics import Sink

    lets: dict = {}
    for let in spec.lets:
        lets.setdefault(let.name, let)
    values = Evaluator(lets, Sink()).values
    return {k: v for k, v in values.items() if v is not None and v is not POISON}


def _format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _shape(dims) -> str:
    from rnnspec.cells.shapes import format_shape

    return format_shape(dims)


# ----------------------------------------------------------------------------- hover


def hover_text(analysis: Analysis, line: int, column: int) -> tuple[str, Span] | None:
    """Markdown for what is at the 1-based position, with the span it is about."""
    doc = analysis.doc
    spec, constants = analysis.semantic()
    word = doc.word_at(line, column)
    if spec is not None and word is not None and word[0] in constants and not _is_key(
            spec, line, column):
        name, span = word
        let = next((c for c in spec.lets if c.name == name), None)
        written = ""
        if let is not None:
            text = _source(doc, let.value.span)
            if text.strip() != _format_value(constants[name]):
                written = f" (`{text}`)"
        return f"**{name}** = `{_format_value(constants[name])}`{written}", span
    if spec is not None:
        from rnnspec.tools.lsp import cells as lsp_cells

        found = lsp_cells.hover(analysis, spec, line, column)
        if found is not None:
            return found
        for expect in spec.expects:
            for entry in expect.entries:
                key_span = entry.key_span if entry.selector is None else entry.key_span.to(
                    entry.selector.span)
                if _contains(key_span, line, column):
                    return _expect_key_hover(analysis, expect.stack, entry), entry.span
        for stack_ast in spec.stacks + tuple(spec.expects):
            name_span = getattr(stack_ast, "name_span", None) or stack_ast.stack_span
            name = getattr(stack_ast, "name", None) or stack_ast.stack
            if _contains(name_span, line, column) and name in analysis.stacks:
                return _stack_hover(analysis.stacks[name]), name_span
    for stack_ast in spec.stacks if spec is not None else ():
        stack = analysis.stacks.get(stack_ast.name)
        if stack is None or len(stack.blocks) != len(stack_ast.blocks):
            continue
        for block, block_ast in zip(stack.blocks, stack_ast.blocks):
            if _contains(block_ast.span, line, column):
                return block_hover(block, stack), block_ast.span
    return None


def _is_key(spec, line: int, column: int) -> bool:
    return any(_contains(e.key_span, line, column) for x in spec.expects for e in x.entries)


def _source(doc: Document, span: Span) -> str:
    start = doc.offset(span.line, span.column)
    end = doc.offset(span.end_line, span.end_column)
    return doc.text[start:end]


def block_hover(block, stack) -> str:
    rows = [f"**{block.name}**: `{block.cell}`, {block.summary}", "",
            "| tensor | shape |", "| --- | --- |"]
    parameters = list(block.parameters)
    for parameter in parameters[:MAX_HOVER_ROWS]:
        rows.append(f"| `{parameter.name}` | `{_shape(parameter.shape)}` |")
    if len(parameters) > MAX_HOVER_ROWS:
        rows.append(f"| ... and {len(parameters) - MAX_HOVER_ROWS} more | |")
    from rnnspec.cells.registry import state_keys

    for state in block.state_names:
        initial, final = state_keys(state)
        rows.append(f"| `{initial}`, `{final}` | `{_shape(block.states[initial])}` |")
    rows.append(f"| output | `{_shape(block.output)}` |")
    rows += ["", f"{block.parameter_count:,} parameters"
             f" ({'batch first' if stack.batch_first else 'time first'}; "
             "`T` time, `B` batch)"]
    return "\n".join(rows)


def _stack_hover(stack) -> str:
    rows = [f"**stack {stack.name}**: {len(stack.blocks)} "
            f"block{'s' if len(stack.blocks) != 1 else ''}, "
            f"{stack.parameter_count:,} parameters", "",
            "| block | cell | output |", "| --- | --- | --- |"]
    for block in stack.blocks:
        rows.append(f"| `{block.name}` | `{block.cell}` | `{_shape(block.output)}` |")
    rows += ["", f"input `{_shape(stack.input)}`, output `{_shape(stack.output)}`"]
    return "\n".join(rows)


def _expect_key_hover(analysis: Analysis, stack_name: str, entry) -> str:
    written = entry.key + (f"[{entry.selector.value}]" if entry.selector else "")
    stack = analysis.stacks.get(stack_name)
    if stack is None:
        return f"`{written}`: stack `{stack_name}` has no derived shapes"
    shape = derived_shape(stack, entry.key, entry.selector.value if entry.selector else None)
    if shape is None:
        return f"`{written}`: no derived shape"
    return f"`{written}` of `{stack.name}`: derived `{_shape(shape)}`"


def derived_shape(stack, key: str, selector=None):
    """The shape an expect key is compared with (T and B symbolic), or None."""
    if key == "input":
        return stack.input
    block = None
    if isinstance(selector, int) and 0 <= selector < len(stack.blocks):
        block = stack.blocks[selector]
    elif isinstance(selector, str):
        block = next((b for b in stack.blocks if b.name == selector), None)
    elif selector is None and (key == "output" or len(stack.blocks) == 1):
        block = stack.blocks[-1] if key == "output" else stack.blocks[0]
    if block is None:
        return None
    if key == "output":
        return block.output
    from rnnspec.cells.registry import state_keys

    for state in block.state_names:
        initial, final = state_keys(state)
        if key in (initial, final):
            return block.states.get(initial)
    return None


# ----------------------------------------------------------------------------- definitions


def definition(analysis: Analysis, line: int, column: int) -> Span | None:
    spec, _ = analysis.semantic()
    if spec is None:
        return None
    stacks = {s.name: s for s in spec.stacks}
    for expect in spec.expects:
        if _contains(expect.stack_span, line, column) and expect.stack in stacks:
            return stacks[expect.stack].name_span
        for entry in expect.entries:
            if entry.selector is not None and _contains(entry.selector.span, line, column):
                return _block_definition(stacks.get(expect.stack), entry.selector.value,
                                         analysis.stacks.get(expect.stack))
    word = analysis.doc.word_at(line, column)
    if word is None:
        return None
    from rnnspec.tools.lsp import cells as lsp_cells

    found = lsp_cells.definition(spec, word[0], line, column)
    if found is not None:
        return found
    for let in spec.lets:
        if let.name == word[0]:
            return let.name_span
    if word[0] in stacks:
        return stacks[word[0]].name_span
    return None


def _block_definition(stack_ast, selector, stack) -> Span | None:
    if stack_ast is None:
        return None
    if isinstance(selector, int):
        if 0 <= selector < len(stack_ast.blocks):
            block = stack_ast.blocks[selector]
            return block.name_span or block.cell_span
        return None
    for index, block in enumerate(stack_ast.blocks):
        name = block.name or (stack.blocks[index].name if stack is not None
                              and index < len(stack.blocks) else None)
        if name == selector:
            return block.name_span or block.cell_span
    return None


# ----------------------------------------------------------------------------- symbols


class Symbol(NamedTuple):
    name: str
    kind: str  # constant, stack, block, expect, key, cell, state, param
    detail: str
    span: Span
    selection: Span
    children: tuple = ()


def symbols(analysis: Analysis) -> list[Symbol]:
    spec, constants = analysis.semantic()
    if spec is None:
        return []
    out: list[Symbol] = []
    for let in spec.lets:
        value = constants.get(let.name)
        out.append(Symbol(let.name, "constant", "" if value is None else _format_value(value),
                          let.span, let.name_span))
    for stack in spec.stacks:
        checked = analysis.stacks.get(stack.name)
        children = []
        for index, block in enumerate(stack.blocks):
            name = block.name or (checked.blocks[index].name if checked else block.cell)
            children.append(Symbol(name, "block", block.cell, block.span,
                                   block.name_span or block.cell_span))
        detail = f"{checked.parameter_count:,} parameters" if checked else ""
        out.append(Symbol(stack.name, "stack", detail, stack.span, stack.name_span,
                          tuple(children)))
    for expect in spec.expects:
        children = [Symbol(e.key + (f"[{e.selector.value}]" if e.selector else ""), "key", "",
                           e.span, e.key_span) for e in expect.entries]
        out.append(Symbol(f"expect {expect.stack}", "expect", "", expect.span,
                          expect.stack_span, tuple(children)))
    from rnnspec.tools.lsp import cells as lsp_cells

    out += lsp_cells.symbols(spec, analysis, Symbol)
    return sorted(out, key=lambda s: (s.span.line, s.span.column))


# ----------------------------------------------------------------------------- completion


class Completion(NamedTuple):
    label: str
    kind: str  # argument, cell, constant, key, keyword, property, value, function, name
    detail: str = ""
    insert: str | None = None


class Context(NamedTuple):
    """Where a position is: `where` is top, stack, expect, cell (a cell body), call (a
    block's arguments), function (inside a call in a cell body), header (a cell's size
    arguments), dims (inside `[...]`) or selector (`h0[` in an expect); `name` is the call's
    cell or function, the key of a selector; `block` and `block_name` the enclosing item."""

    where: str
    name: str | None = None
    block: str | None = None
    block_name: str | None = None


def _header(tokens, index: int) -> tuple[str | None, str | None]:
    """The keyword and name of the item whose `{` is `tokens[index]`: `cell Gated(k) {`."""
    at = index - 1
    if at >= 0 and tokens[at].text == ")":
        depth = 0
        while at >= 0:
            depth += {")": 1, "(": -1}.get(tokens[at].text, 0)
            if depth == 0:
                break
            at -= 1
        at -= 1
    name = tokens[at].text if at >= 0 else None
    keyword = tokens[at - 1].text if at >= 1 else None
    return keyword, name


def _context(tokens) -> Context:
    """The context at the end of `tokens` (code tokens, no comments)."""
    openers: list[tuple[str, str | None, str | None]] = []
    for index, token in enumerate(tokens):
        if token.text == "{":
            openers.append(("{", *_header(tokens, index)))
        elif token.text in ("(", "["):
            before = tokens[index - 1].text if index else None
            keyword = tokens[index - 2].text if index > 1 else None
            openers.append((token.text, keyword, before))
        elif token.text in (")", "]", "}") and openers:
            openers.pop()
    if not openers:
        return Context("top")
    last_block = max((i for i, o in enumerate(openers) if o[0] == "{"), default=-1)
    block = openers[last_block][1:] if last_block >= 0 else (None, None)
    char, keyword, name = openers[-1]
    if char == "{":
        return Context(keyword or "block", None, keyword, name)
    if char == "(":
        if block[0] == "cell":
            return Context("function", name, *block)
        if keyword == "cell":
            return Context("header", name, "cell", name)
        # the block's call, however deep the cursor is in its arguments' parentheses
        return Context("call", openers[last_block + 1][2], *block)
    if block[0] == "expect" and name is not None and name not in ("=", ","):
        return Context("selector", name, *block)
    return Context("dims", None, *block)


def _declared_cells(tokens) -> dict[str, tuple[str, ...]]:
    """Each `cell NAME(args)` of the text with its size arguments, read from the tokens,
    so that a file being typed (which does not parse) still completes its cells."""
    found: dict[str, tuple[str, ...]] = {}
    depth = 0
    for index, token in enumerate(tokens):
        if token.text in ("{", "(", "["):
            depth += 1
        elif token.text in ("}", ")", "]"):
            depth = max(0, depth - 1)
        elif token.text == "cell" and depth == 0 and index + 1 < len(tokens) \
                and tokens[index + 1].kind == "name":
            arguments, at = [], index + 2
            if at < len(tokens) and tokens[at].text == "(":
                level, at = 1, at + 1
                while at < len(tokens) and level:
                    text = tokens[at].text
                    level += {"(": 1, ")": -1}.get(text, 0)
                    if level == 1 and tokens[at].kind == "name" and tokens[at - 1].text in (
                            "(", ","):
                        arguments.append(text)
                    at += 1
            found[tokens[index + 1].text] = tuple(arguments)
    return found


def _cell_scope(tokens) -> list[tuple[str, str]]:
    """(name, what) of the names a statement at the end of `tokens` (inside a cell body)
    can read: sizes, the step's input, states, parameters and the locals assigned so far."""
    start = max((i for i, t in enumerate(tokens) if t.text == "cell"), default=None)
    if start is None:
        return []
    body = tokens[start:]
    names = [("x", "the step's input"), ("input_size", "size"), ("hidden_size", "size")]
    if len(body) > 1:
        names += [(n, "size argument") for n in _declared_cells(body).get(body[1].text, ())]
    depth, declaring = 0, None
    for index, token in enumerate(body):
        text = token.text
        if text in ("(", "[", "{"):
            depth += 1
        elif text in (")", "]", "}"):
            depth -= 1
        if depth != 1:
            continue
        if text in ("state", "param"):
            declaring = text
        elif token.kind == "name" and declaring and index + 1 < len(body) \
                and body[index + 1].text == "[":
            names.append((text, declaring))
        elif text == "=":
            declaring = None
            at, targets = index - 1, []
            while at >= 0 and body[at].kind == "name":
                targets.insert(0, (body[at].text, "local"))
                if at == 0 or body[at - 1].text != ",":
                    break
                at -= 2
            names += targets
    return list(dict.fromkeys(names))


def _records(analysis, previous) -> dict:
    """The file's checked user cells by name: this version's, else those of the last
    version that parsed (`previous`), so that typing inside a call still completes."""
    for source in (analysis, previous):
        if source is not None and source.result.cells:
            return {c.name: c for c in source.result.cells}
    return {}


def _stacks(analysis, previous) -> dict:
    """The checked stacks by name, this version's or the last parsed version's."""
    for source in (analysis, previous):
        if source is not None and source.stacks:
            return source.stacks
    return {}


def _argument_rules(cell: str | None, records: dict, declared: dict) -> tuple:
    """The rules of every argument a block of `cell` takes: from the registry record
    (built-in, or the file's checked cell), else every block's arguments plus the sizes
    the cell's header names."""
    from rnnspec.cells.registry import BUILTIN_CELLS, COMMON_ARGUMENTS, ArgumentRule

    record = BUILTIN_CELLS.get(cell or "") or records.get(cell or "")
    if record is not None:
        return record.arguments
    return (*COMMON_ARGUMENTS, *(ArgumentRule(n, "int", None, meaning="size argument of "
                                              f"cell `{cell}`")
                                 for n in declared.get(cell or "", ())))


_VALUE_OF = re.compile(r"(\w+)\s*=\s*\w*$")


def completions(analysis: Analysis | None, text: str, offset: int,
                previous: Analysis | None = None) -> list[Completion]:
    """What may be typed at `offset` of `text`. `previous`: the document's last version
    that parsed, for what the current one (half typed) cannot say: its cells and stacks."""
    from rnnspec.language.lexer import tokenize
    from rnnspec.language.parse import cell_keywords, item_keywords

    tokens = [t for t in tokenize(text[:offset]) if t.kind != "comment"]
    context = _context(tokens)
    where = context.where
    constants = analysis.semantic()[1] if analysis is not None else {}
    values = [Completion(c, "constant", _format_value(v)) for c, v in sorted(constants.items())]
    everything = tokens + [t for t in tokenize(text[offset:]) if t.kind != "comment"]
    declared = _declared_cells(everything)
    records = _records(analysis, previous)
    stacks = _stacks(analysis, previous)
    if where == "call":
        rules = _argument_rules(context.name, records, declared)
        value = _VALUE_OF.search(text[max(0, offset - 200):offset])
        by_name = {r.name: r for r in rules}
        rule = by_name.get(value.group(1)) if value is not None else None
        if rule is not None and (rule.choices or rule.kind == "bool"):  # `merge = ` -> sum...
            choices = list(rule.choices) or ["true", "false"]
            return [Completion(c, "value", rule.meaning) for c in choices] + values
        return [Completion(r.name, "argument", r.meaning, f"{r.name} = ")
                for r in rules] + values + [
            Completion("true", "value"), Completion("false", "value")]
    if where == "stack":
        from rnnspec.cells.registry import BUILTIN_CELLS, STACK_PROPERTIES

        cells = [Completion(c, "cell", "recurrent cell", f"{c}(hidden_size = )")
                 for c in BUILTIN_CELLS]
        cells += [Completion(c, "cell", "declared cell", f"{c}(hidden_size = )")
                  for c in declared if c not in BUILTIN_CELLS]
        return (cells + [Completion(p, "property", "stack property", f"{p} = ")
                         for p in STACK_PROPERTIES] + values)
    if where == "expect":
        return _expect_keys(stacks.get(context.block_name), records, declared) + values
    if where == "selector":
        stack = stacks.get(context.block_name)
        names = [b.name for b in stack.blocks] if stack is not None else []
        return [Completion(n, "name", "block") for n in names] + [
            Completion(str(i), "value", "block position") for i in range(len(names))]
    if where in ("cell", "function"):
        from rnnspec.cells.equations import FUNCTIONS, INITIALISERS

        line = text[text.rfind("\n", 0, offset) + 1:offset].lstrip()
        if where == "cell" and line.startswith("param") and "=" in line:
            return [Completion(i, "function", "initialiser") for i in INITIALISERS]
        items = [Completion(f, "function", "function", f"{f}(") for f in FUNCTIONS]
        items += [Completion(n, "name", what) for n, what in _cell_scope(tokens)]
        if where == "cell" and (not tokens or tokens[-1].text in ("{", "}", ")", "]")
                                or tokens[-1].kind in ("name", "int", "float")):
            items = [Completion(k, "keyword", "") for k in cell_keywords()] + items
        return items + values
    if where == "dims" and context.block == "cell":
        sizes = [n for n, what in _cell_scope(tokens)
                 if what in ("size", "size argument")]
        return [Completion(n, "name", "size") for n in sizes] + values
    if where in ("dims", "header"):
        return values + ([Completion("_", "value", "any size")] if where == "dims" else [])
    return [Completion(k, "keyword", "") for k in item_keywords()] + values


def _expect_keys(stack, records, declared) -> list[Completion]:
    """`input`, `output` and the `s0` / `s_n` keys of the states of the stack's cells
    (`h0[block]` forms when the stack has several blocks)."""
    from rnnspec.cells.registry import BUILTIN_CELLS, state_keys

    if stack is not None:
        states = [s for b in stack.blocks for s in b.state_names]
    else:
        cells = list(BUILTIN_CELLS.values()) + [records[n] for n in declared if n in records]
        states = [s.name for cell in cells for s in cell.states]
    keys = ["input", "output"] + list(dict.fromkeys(
        key for s in states for key in state_keys(s)))
    items = [Completion(k, "key", "expectation", f"{k} = ") for k in keys]
    if stack is not None and len(stack.blocks) > 1:
        items += [Completion(f"{k}[{b.name}]", "key", "expectation", f"{k}[{b.name}] = ")
                  for b in stack.blocks for s in b.state_names for k in state_keys(s)]
    return items


# ----------------------------------------------------------------------------- the server


def _log_to_stderr(message: str) -> None:
    sys.stderr.write(message + "\n")


_report_failure = _log_to_stderr  # the server also sends it to the client's log


def _guard(function):
    """Answer a failing request with nothing rather than end the server."""

    @functools.wraps(function)
    def guarded(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception:  # noqa: BLE001 - any bug: log it, keep serving
            _report_failure(f"rnnspec lsp: {function.__name__} failed\n"
                            + traceback.format_exc())
            return None

    return guarded


def make_server():
    """The pygls server with every feature registered (imports pygls and lsprotocol)."""
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    from rnnspec import __version__

    server = LanguageServer("rnnspec", __version__,
                            text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
    cache: dict[str, tuple[int | None, str, Analysis]] = {}
    parsed: dict[str, Analysis] = {}  # each document's last version that parsed

    def report_failure(message: str) -> None:
        _log_to_stderr(message)
        server.window_log_message(types.LogMessageParams(types.MessageType.Error, message))

    global _report_failure
    _report_failure = report_failure

    def path_of(uri: str) -> str:
        if uri.startswith("file://"):
            from urllib.parse import unquote, urlparse

            return unquote(urlparse(uri).path)
        return uri

    def analysis_of(uri: str) -> Analysis:
        document = server.workspace.get_text_document(uri)
        text = document.source
        cached = cache.get(uri)
        if cached is not None and cached[0] == document.version and cached[1] == text:
            return cached[2]
        analysis = Analysis(text, path_of(uri))
        cache[uri] = (document.version, text, analysis)
        if analysis.parsed:
            parsed[uri] = analysis
        return analysis

    def lsp_range(doc: Document, span: Span) -> types.Range:
        (sl, sc), (el, ec) = doc.span_range(span)
        return types.Range(types.Position(sl, sc), types.Position(el, ec))

    def lsp_diagnostic(uri: str, doc: Document, d) -> types.Diagnostic:
        span = d.span or Span(doc.path, 1, 1, 1, 1)
        related = [types.DiagnosticRelatedInformation(
            types.Location(uri, lsp_range(doc, n.span)), n.message)
            for n in d.notes if n.span is not None]
        message = d.message
        unplaced = [n.message for n in d.notes if n.span is None]
        if unplaced:
            message += "".join(f"\nnote: {m}" for m in unplaced)
        if d.help:
            message += f"\nhelp: {d.help}"
        return types.Diagnostic(
            range=lsp_range(doc, span), message=message, code=d.code, source="rnnspec",
            severity=(types.DiagnosticSeverity.Error if d.is_error
                      else types.DiagnosticSeverity.Warning),
            code_description=types.CodeDescription(href=f"{DOCS_URL}#{d.code.lower()}"),
            related_information=related or None)

    def publish(uri: str) -> None:
        try:
            analysis = analysis_of(uri)
            diagnostics = [lsp_diagnostic(uri, analysis.doc, d)
                           for d in analysis.result.diagnostics]
        except Exception:  # noqa: BLE001
            report_failure("rnnspec lsp: diagnostics failed\n" + traceback.format_exc())
            diagnostics = []
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics))

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    @_guard
    def did_open(params: types.DidOpenTextDocumentParams):
        publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    @_guard
    def did_change(params: types.DidChangeTextDocumentParams):
        publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    @_guard
    def did_close(params: types.DidCloseTextDocumentParams):
        cache.pop(params.text_document.uri, None)
        parsed.pop(params.text_document.uri, None)
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))

    def position(analysis: Analysis, pos: types.Position) -> tuple[int, int]:
        return analysis.doc.from_lsp(pos.line, pos.character)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    @_guard
    def hover(params: types.HoverParams):
        analysis = analysis_of(params.text_document.uri)
        found = hover_text(analysis, *position(analysis, params.position))
        if found is None:
            return None
        text, span = found
        return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, text),
                           lsp_range(analysis.doc, span))

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    @_guard
    def goto_definition(params: types.DefinitionParams):
        analysis = analysis_of(params.text_document.uri)
        span = definition(analysis, *position(analysis, params.position))
        if span is None:
            return None
        return types.Location(params.text_document.uri, lsp_range(analysis.doc, span))

    kinds = {"constant": types.SymbolKind.Constant, "stack": types.SymbolKind.Class,
             "block": types.SymbolKind.Field, "expect": types.SymbolKind.Event,
             "key": types.SymbolKind.Property, "cell": types.SymbolKind.Struct,
             "state": types.SymbolKind.Variable, "param": types.SymbolKind.Field}

    def lsp_symbol(doc: Document, symbol: Symbol) -> types.DocumentSymbol:
        return types.DocumentSymbol(
            name=symbol.name, kind=kinds[symbol.kind], detail=symbol.detail or None,
            range=lsp_range(doc, symbol.span), selection_range=lsp_range(doc, symbol.selection),
            children=[lsp_symbol(doc, c) for c in symbol.children] or None)

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @_guard
    def document_symbol(params: types.DocumentSymbolParams):
        analysis = analysis_of(params.text_document.uri)
        return [lsp_symbol(analysis.doc, s) for s in symbols(analysis)]

    completion_kinds = {"argument": types.CompletionItemKind.Property,
                        "cell": types.CompletionItemKind.Class,
                        "constant": types.CompletionItemKind.Constant,
                        "key": types.CompletionItemKind.Field,
                        "keyword": types.CompletionItemKind.Keyword,
                        "property": types.CompletionItemKind.Property,
                        "value": types.CompletionItemKind.Value,
                        "function": types.CompletionItemKind.Function,
                        "name": types.CompletionItemKind.Variable}

    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=["(", ",", "["]))
    @_guard
    def completion(params: types.CompletionParams):
        analysis = analysis_of(params.text_document.uri)
        line, column = position(analysis, params.position)
        offset = analysis.doc.offset(line, column)
        items = completions(analysis, analysis.doc.text, offset,
                            parsed.get(params.text_document.uri))
        return types.CompletionList(is_incomplete=False, items=[
            types.CompletionItem(label=c.label, kind=completion_kinds[c.kind],
                                 detail=c.detail or None, insert_text=c.insert)
            for c in items])

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    @_guard
    def formatting(params: types.DocumentFormattingParams):
        from rnnspec.tools.fmt import FormatRefused, format_source

        analysis = analysis_of(params.text_document.uri)
        text = analysis.doc.text
        try:
            formatted = format_source(text, analysis.doc.path)
        except FormatRefused:
            return None
        if formatted == text:
            return []
        end = types.Position(len(analysis.doc.lines) - 1, _utf16(analysis.doc.lines[-1]))
        return [types.TextEdit(types.Range(types.Position(0, 0), end), formatted)]

    return server


def serve() -> int:
    """`rnnspec lsp`: serve over stdio until the client says exit."""
    try:
        server = make_server()
    except ImportError as exc:
        sys.stderr.write(f"error: `rnnspec lsp` needs pygls and lsprotocol ({exc}): "
                         "pip install 'rnnspec[lsp]'\n")
        return 2
    server.start_io()
    return 0
