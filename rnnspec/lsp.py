"""`rnnspec lsp`: a Language Server Protocol server over stdio (pygls 2.x, lsprotocol).

Diagnostics on open and on every change; hover (a block's shapes, a constant's value, an
`expect` key's derived shape, a stack's summary); go to definition (constants, stacks,
block selectors); the outline; completion; formatting with `rnnspec fmt`'s layout.

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

from .diagnostics import Span

# Where each code is documented: docs/diagnostics.md of the project, one anchor per code.
DOCS_URL = "https://github.com/rnnspec/rnnspec/blob/main/docs/diagnostics.md"
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
        from .check import check_text

        self.doc = Document(text, path)
        self.result = check_text(text, path)
        self._semantic = None

    @property
    def stacks(self):
        return {s.name: s for s in self.result.stacks}

    def semantic(self):
        """(AST or None, constant values): parsed again only when a request needs them."""
        if self._semantic is None:
            from .parse import parse

            spec, _ = parse(self.doc.text, self.doc.path)
            self._semantic = (spec, _constant_values(spec) if spec is not None else {})
        return self._semantic


def _constant_values(spec) -> dict:
    """Every constant's value (what the checker evaluated), by name."""
    try:
        from .check import Checker

        values = Checker(spec).values.values
        return {k: v for k, v in values.items() if v is not None and not repr(v) == "POISON"}
    except Exception:  # noqa: BLE001 - the checker's internals may change; hover degrades
        return {}


def argument_names(cell: str) -> list[tuple[str, str]]:
    """(name, meaning) of every argument a block of `cell` takes.

    The one place that knows where block arguments are listed (the lead replaces the
    table with the cell registry)."""
    from .registry import BUILTIN_CELLS, COMMON_ARGUMENTS

    rules = BUILTIN_CELLS[cell].arguments if cell in BUILTIN_CELLS else COMMON_ARGUMENTS
    return [(r.name, r.meaning) for r in rules]


def cell_names() -> list[str]:
    from .registry import BUILTIN_CELLS

    return list(BUILTIN_CELLS)


def _format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _shape(dims) -> str:
    from .shapes import format_shape

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
    for key, shape in block.states.items():
        rows.append(f"| `{key}`, `{key[0]}_n` | `{_shape(shape)}` |")
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
    state = {"h0": "h0", "h_n": "h0", "c0": "c0", "c_n": "c0"}.get(key)
    return block.states.get(state) if state else None


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
    kind: str  # constant, stack, block, expect, key
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
    return sorted(out, key=lambda s: (s.span.line, s.span.column))


# ----------------------------------------------------------------------------- completion


class Completion(NamedTuple):
    label: str
    kind: str  # argument, cell, constant, key, keyword, property, value
    detail: str = ""
    insert: str | None = None


def _context(text: str) -> tuple[str, str | None]:
    """Where the end of `text` is: ("call", cell), ("stack"|"expect"|..., name) or
    ("top", None)."""
    from .fmt import tokenize

    tokens = [t for t in tokenize(text) if t.kind != "comment"]
    openers: list[tuple[str, str | None, str | None]] = []
    for index, token in enumerate(tokens):
        if token.text in ("(", "[", "{"):
            before = tokens[index - 1].text if index else None
            keyword = tokens[index - 2].text if index > 1 else None
            openers.append((token.text, before, keyword))
        elif token.text in (")", "]", "}") and openers:
            openers.pop()
    for char, before, keyword in reversed(openers):
        if char == "(":
            return "call", before
        if char == "[":
            return "dims", None
        return (keyword or "block"), before
    return "top", None


def completions(analysis: Analysis | None, text: str, offset: int) -> list[Completion]:
    where, name = _context(text[:offset])
    constants = analysis.semantic()[1] if analysis is not None else {}
    values = [Completion(c, "constant", _format_value(v)) for c, v in sorted(constants.items())]
    if where == "call":
        return [Completion(a, "argument", meaning, f"{a} = ")
                for a, meaning in argument_names(name or "")] + values + [
            Completion("true", "value"), Completion("false", "value")]
    if where == "stack":
        from .registry import STACK_PROPERTIES

        return ([Completion(c, "cell", "recurrent cell", f"{c}(hidden_size = )")
                 for c in cell_names()]
                + [Completion(p, "property", "stack property", f"{p} = ")
                   for p in STACK_PROPERTIES] + values)
    if where == "expect":
        from .registry import BUILTIN_CELLS, state_keys

        keys = ["input", "output"] + list(dict.fromkeys(
            key for cell in BUILTIN_CELLS.values() for s in cell.states
            for key in state_keys(s.name)))
        items = [Completion(k, "key", "expectation", f"{k} = ") for k in keys]
        stack = analysis.stacks.get(name) if analysis is not None else None
        if stack is not None and len(stack.blocks) > 1:
            items += [Completion(f"{k}[{b.name}]", "key", "expectation", f"{k}[{b.name}] = ")
                      for b in stack.blocks for s in b.state_names for k in state_keys(s)]
        return items + values
    if where == "dims":
        return values + [Completion("_", "value", "any size")]
    return [Completion(k, "keyword", "") for k in ("let", "stack", "expect")] + values


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

    from . import __version__

    server = LanguageServer("rnnspec", __version__,
                            text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
    cache: dict[str, tuple[int | None, str, Analysis]] = {}

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
             "key": types.SymbolKind.Property}

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
                        "value": types.CompletionItemKind.Value}

    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=["(", ",", "["]))
    @_guard
    def completion(params: types.CompletionParams):
        analysis = analysis_of(params.text_document.uri)
        line, column = position(analysis, params.position)
        offset = analysis.doc.offset(line, column)
        items = completions(analysis, analysis.doc.text, offset)
        return types.CompletionList(is_incomplete=False, items=[
            types.CompletionItem(label=c.label, kind=completion_kinds[c.kind],
                                 detail=c.detail or None, insert_text=c.insert)
            for c in items])

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    @_guard
    def formatting(params: types.DocumentFormattingParams):
        from .fmt import FormatRefused, format_source

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
