"""The protocol half of `rnnspec lsp`: a pygls `LanguageServer` subclass that holds each
document's analysis, and one handler per feature, registered with the server's `feature`
decorator and receiving the server. Imports pygls and lsprotocol (the `lsp` extra).

Positions go through pygls' codec (`position_codec` of the workspace's documents), so the
encoding the client asked for in `general.positionEncodings` (UTF-8, UTF-16 or UTF-32) is
the one every position is read and written in. Every handler catches its own exceptions:
a bug answers one request with nothing, it never ends the server.
"""

from __future__ import annotations

import functools
import sys
import traceback

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.workspace import ServerTextPosition

from rnnspec.language.diagnostics import Span
from rnnspec.tools.lsp.analysis import DOCS_URL, Analysis, Symbol, definition, hover_text, symbols
from rnnspec.tools.lsp.completion import completions

_SYMBOL_KINDS = {"constant": types.SymbolKind.Constant, "stack": types.SymbolKind.Class,
                 "block": types.SymbolKind.Field, "expect": types.SymbolKind.Event,
                 "key": types.SymbolKind.Property, "cell": types.SymbolKind.Struct,
                 "state": types.SymbolKind.Variable, "param": types.SymbolKind.Field}
_COMPLETION_KINDS = {"argument": types.CompletionItemKind.Property,
                     "cell": types.CompletionItemKind.Class,
                     "constant": types.CompletionItemKind.Constant,
                     "key": types.CompletionItemKind.Field,
                     "keyword": types.CompletionItemKind.Keyword,
                     "property": types.CompletionItemKind.Property,
                     "value": types.CompletionItemKind.Value,
                     "function": types.CompletionItemKind.Function,
                     "name": types.CompletionItemKind.Variable}


def _path_of(uri: str) -> str:
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(uri).path)
    return uri


class RnnspecServer(LanguageServer):
    """The server's state: each open document's latest analysis and its last version that
    parsed (for completing in a half-typed file)."""

    def __init__(self):
        from rnnspec import __version__

        super().__init__("rnnspec", __version__,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.cache: dict[str, tuple[int | None, str, Analysis]] = {}
        self.parsed: dict[str, Analysis] = {}
        for method, options, handler in _FEATURES:
            self.feature(method, options)(_guard(handler))

    def report_failure(self, message: str) -> None:
        sys.stderr.write(message + "\n")
        self.window_log_message(types.LogMessageParams(types.MessageType.Error, message))

    def analysis_of(self, uri: str) -> Analysis:
        document = self.workspace.get_text_document(uri)
        text = document.source
        cached = self.cache.get(uri)
        if cached is not None and cached[0] == document.version and cached[1] == text:
            return cached[2]
        analysis = Analysis(text, _path_of(uri))
        self.cache[uri] = (document.version, text, analysis)
        if analysis.parsed:
            self.parsed[uri] = analysis
        return analysis

    def forget(self, uri: str) -> None:
        self.cache.pop(uri, None)
        self.parsed.pop(uri, None)

    # positions: rnnspec's 1-based character columns <-> the client's units, by pygls' codec

    def position(self, analysis: Analysis, position: types.Position) -> tuple[int, int]:
        """The client's position -> rnnspec's 1-based line and character column."""
        codec = self.workspace.position_codec
        line = analysis.line(position.line)
        character = min(position.character, codec.client_num_units(line))
        found = codec.position_from_client_units(
            [line], types.Position(0, character)) if line else ServerTextPosition(0, 0)
        return position.line + 1, found.character + 1

    def lsp_position(self, analysis: Analysis, line: int, column: int) -> types.Position:
        text = analysis.line(line - 1)
        before = text[:max(0, column - 1)]
        return types.Position(max(0, line - 1),
                              self.workspace.position_codec.client_num_units(before))

    def lsp_range(self, analysis: Analysis, span: Span) -> types.Range:
        return types.Range(self.lsp_position(analysis, span.line, span.column),
                           self.lsp_position(analysis, span.end_line, span.end_column))

    def lsp_diagnostic(self, uri: str, analysis: Analysis, d) -> types.Diagnostic:
        span = d.span or Span(analysis.path, 1, 1, 1, 1)
        related = [types.DiagnosticRelatedInformation(
            types.Location(uri, self.lsp_range(analysis, n.span)), n.message)
            for n in d.notes if n.span is not None]
        message = d.message
        unplaced = [n.message for n in d.notes if n.span is None]
        if unplaced:
            message += "".join(f"\nnote: {m}" for m in unplaced)
        if d.help:
            message += f"\nhelp: {d.help}"
        return types.Diagnostic(
            range=self.lsp_range(analysis, span), message=message, code=d.code,
            source="rnnspec",
            severity=(types.DiagnosticSeverity.Error if d.is_error
                      else types.DiagnosticSeverity.Warning),
            code_description=types.CodeDescription(href=f"{DOCS_URL}#{d.code.lower()}"),
            related_information=related or None)

    def lsp_symbol(self, analysis: Analysis, symbol: Symbol) -> types.DocumentSymbol:
        return types.DocumentSymbol(
            name=symbol.name, kind=_SYMBOL_KINDS[symbol.kind], detail=symbol.detail or None,
            range=self.lsp_range(analysis, symbol.span),
            selection_range=self.lsp_range(analysis, symbol.selection),
            children=[self.lsp_symbol(analysis, c) for c in symbol.children] or None)

    def publish(self, uri: str) -> None:
        try:
            analysis = self.analysis_of(uri)
            diagnostics = [self.lsp_diagnostic(uri, analysis, d)
                           for d in analysis.result.diagnostics]
        except Exception:  # noqa: BLE001
            self.report_failure("rnnspec lsp: diagnostics failed\n" + traceback.format_exc())
            diagnostics = []
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics))


def _guard(handler):
    """Answer a failing request with nothing rather than end the server."""

    @functools.wraps(handler)
    def guarded(ls: RnnspecServer, params):
        try:
            return handler(ls, params)
        except Exception:  # noqa: BLE001 - any bug: log it, keep serving
            ls.report_failure(f"rnnspec lsp: {handler.__name__} failed\n"
                              + traceback.format_exc())
            return None

    return guarded


# ----------------------------------------------------------------------------- handlers


def did_open(ls: RnnspecServer, params: types.DidOpenTextDocumentParams):
    ls.publish(params.text_document.uri)


def did_change(ls: RnnspecServer, params: types.DidChangeTextDocumentParams):
    ls.publish(params.text_document.uri)


def did_close(ls: RnnspecServer, params: types.DidCloseTextDocumentParams):
    ls.forget(params.text_document.uri)
    ls.text_document_publish_diagnostics(
        types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))


def hover(ls: RnnspecServer, params: types.HoverParams):
    analysis = ls.analysis_of(params.text_document.uri)
    found = hover_text(analysis, *ls.position(analysis, params.position))
    if found is None:
        return None
    text, span = found
    return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, text),
                       ls.lsp_range(analysis, span))


def goto_definition(ls: RnnspecServer, params: types.DefinitionParams):
    analysis = ls.analysis_of(params.text_document.uri)
    span = definition(analysis, *ls.position(analysis, params.position))
    if span is None:
        return None
    return types.Location(params.text_document.uri, ls.lsp_range(analysis, span))


def document_symbol(ls: RnnspecServer, params: types.DocumentSymbolParams):
    analysis = ls.analysis_of(params.text_document.uri)
    return [ls.lsp_symbol(analysis, s) for s in symbols(analysis)]


def completion(ls: RnnspecServer, params: types.CompletionParams):
    analysis = ls.analysis_of(params.text_document.uri)
    line, column = ls.position(analysis, params.position)
    items = completions(analysis, analysis.text, analysis.offset(line, column),
                        ls.parsed.get(params.text_document.uri))
    return types.CompletionList(is_incomplete=False, items=[
        types.CompletionItem(label=c.label, kind=_COMPLETION_KINDS[c.kind],
                             detail=c.detail or None, insert_text=c.insert)
        for c in items])


def formatting(ls: RnnspecServer, params: types.DocumentFormattingParams):
    from rnnspec.tools.fmt import FormatRefused, format_source

    analysis = ls.analysis_of(params.text_document.uri)
    try:
        formatted = format_source(analysis.text, analysis.path)
    except FormatRefused:
        return None
    if formatted == analysis.text:
        return []
    end = ls.lsp_position(analysis, len(analysis.lines), len(analysis.lines[-1]) + 1)
    return [types.TextEdit(types.Range(types.Position(0, 0), end), formatted)]


_FEATURES = (
    (types.TEXT_DOCUMENT_DID_OPEN, None, did_open),
    (types.TEXT_DOCUMENT_DID_CHANGE, None, did_change),
    (types.TEXT_DOCUMENT_DID_CLOSE, None, did_close),
    (types.TEXT_DOCUMENT_HOVER, None, hover),
    (types.TEXT_DOCUMENT_DEFINITION, None, goto_definition),
    (types.TEXT_DOCUMENT_DOCUMENT_SYMBOL, None, document_symbol),
    (types.TEXT_DOCUMENT_COMPLETION,
     types.CompletionOptions(trigger_characters=["(", ",", "["]), completion),
    (types.TEXT_DOCUMENT_FORMATTING, None, formatting),
)
