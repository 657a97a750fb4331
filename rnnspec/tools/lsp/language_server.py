"""The protocol half of `rnnspec lsp`: a pygls `LanguageServer` subclass that holds each
document's analysis, and one handler per feature, registered with the server's `feature`
decorator and receiving the server. Imports pygls and lsprotocol (the `lsp` extra).

Positions go through pygls' codec (`position_codec` of the workspace's documents), so the
encoding the client asked for in `general.positionEncodings` (UTF-8, UTF-16 or UTF-32) is
the one every position is read and written in.

Each version of a document is analysed at most once, on a worker thread, after a short
pause for more changes (`DEBOUNCE_S`); a request waits at most `WAIT_S` for the analysis
of the version it is about, then answers from the latest analysis there is. A request on a
document that is not open answers null (or an empty list); a handler that fails answers
its request with an InternalError response and reports the traceback on stderr.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import sys
import threading
import traceback
from collections import Counter
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.workspace import ServerTextPosition

from rnnspec.language.diagnostics import Span
from rnnspec.tools.lsp.analysis import (
    DOCS_URL,
    Analysis,
    Symbol,
    Text,
    definition,
    hover_text,
    symbols,
)
from rnnspec.tools.lsp.completion import completions

DEBOUNCE_S = 0.05  # after a change, how long more changes may come before analysing
WAIT_S = 2.0  # how long a request waits for its version's analysis before answering
LARGE_TEXT = 200_000  # characters: a document whose analysis is frozen out of gc passes


class Reported(JsonRpcInternalError):
    """A handler's failure, already reported: pygls answers the request with it."""


def _settle_heap() -> None:
    """Collect what earlier versions left, then freeze what is alive (`gc.freeze`): the
    analysis just kept, millions of objects for a large document, is then no longer walked
    by the cyclic collector each time a request's allocations start a full pass (on a
    5 MB document those passes were three quarters of a `documentSymbol` request). The next
    large analysis unfreezes first, so a version's cyclic garbage is collected then."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _in_thread(function, *args):
    """`function(*args)` on a daemon thread (one that never holds up the exit), awaited."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result, error):
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def run():
        try:
            result, error = function(*args), None
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting task
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop has ended: nobody waits
            pass

    threading.Thread(target=run, name="rnnspec-lsp-analysis", daemon=True).start()
    return future


class Protocol(LanguageServerProtocol):
    """pygls' protocol, counting the client's requests it was handed and has not answered
    yet (`unanswered`, by id); `answered` is set at each response. pygls writes the
    response of an async handler from a done callback of the handler's task, a loop step
    after the handler returns: the drain before `shutdown` and `exit` waits for the
    responses, not for the tasks (`exit` ends the loop, so a task that had finished but
    not yet answered lost its answer)."""

    def __init__(self, server, converter):
        super().__init__(server, converter)
        self.unanswered: Counter = Counter()
        self.answered: asyncio.Event | None = None  # made by the drain, in its loop

    def _handle_request(self, msg_id, method_name, params):
        self.unanswered[msg_id] += 1
        super()._handle_request(msg_id, method_name, params)

    def _send_response(self, msg_id, result=None, error=None):
        try:
            super()._send_response(msg_id, result, error)
        finally:
            if self.unanswered[msg_id] > 1:
                self.unanswered[msg_id] -= 1
            else:
                self.unanswered.pop(msg_id, None)
            if self.answered is not None:
                self.answered.set()


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
    """The server's state: each open document's latest analysis, its last version that
    parsed (for completing in a half-typed file), and how often each (uri, version) was
    analysed (`analysed`: at most once)."""

    def __init__(self, stderr=None):
        from rnnspec import __version__

        super().__init__("rnnspec", __version__, protocol_cls=Protocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.stderr = stderr or sys.stderr
        self.latest: dict[str, Analysis] = {}
        self.parsed: dict[str, Analysis] = {}
        self.attempted: dict[str, tuple] = {}  # uri -> (version, text) last analysed
        self.analysed: Counter = Counter()
        self.texts: dict[str, tuple] = {}  # uri -> (version, Text): completion's line index
        self.workers: dict[str, asyncio.Future] = {}
        self.debounce_s, self.wait_s = DEBOUNCE_S, WAIT_S
        self._updated: asyncio.Event | None = None
        self._one_at_a_time: asyncio.Lock | None = None
        for method, options, handler in _FEATURES:
            self.feature(method, options)(_guard(handler))

    # ----------------------------------------------------------------- input and output

    def start_io(self, stdin=None, stdout=None):
        """Serve over stdio (or the given binary streams) until `exit` or the end of input;
        rnnspec's reader (`serving.Reader`) in place of pygls'."""
        from rnnspec.tools.lsp.serving import OneLine, Reader

        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        reader = Reader(self, stdin or sys.stdin.buffer)
        pygls_log = logging.getLogger("pygls")
        handler = OneLine(self.stderr, Reported)
        pygls_log.addHandler(handler)
        propagate, pygls_log.propagate = pygls_log.propagate, False
        try:
            asyncio.run(reader.run(self._stop_event))
        except BrokenPipeError:
            self.stderr.write("rnnspec lsp: the client closed the connection\n")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            pygls_log.removeHandler(handler)
            pygls_log.propagate = propagate
            gc.unfreeze()
            self.shutdown()

    async def drain(self) -> None:
        """Before `shutdown` and `exit`, and at the end of input: until every request
        handed to pygls has its response written (`Protocol.unanswered`)."""
        protocol = self.protocol
        while protocol.unanswered:
            protocol.answered = asyncio.Event()
            await protocol.answered.wait()

    def report_failure(self, message: str) -> None:
        self.stderr.write(message + "\n")
        self.stderr.flush()
        self.window_log_message(types.LogMessageParams(types.MessageType.Error, message))

    def report_problem(self, message: str) -> None:
        """A problem of the client's input: one line on stderr and in the client's log."""
        self.stderr.write(message + "\n")
        self.stderr.flush()
        if self.protocol.writer is not None:
            self.window_log_message(types.LogMessageParams(types.MessageType.Warning,
                                                           message))

    def report_server_error(self, error, source) -> None:
        """pygls' report of a failure outside a request (a change to a document that is
        not open, say): one line, not a pop-up."""
        self.report_problem(f"rnnspec lsp: {error}")

    # ----------------------------------------------------------------- analyses

    def open_document(self, uri: str):
        """The open document at `uri`, or None (never read from disk)."""
        return self.workspace.text_documents.get(unquote(uri))

    def schedule(self, uri: str) -> None:
        worker = self.workers.get(uri)
        if worker is None or worker.done():
            self.workers[uri] = asyncio.ensure_future(self._work(uri))

    def _current(self, uri: str, document) -> bool:
        attempted = self.attempted.get(uri)
        return attempted is not None and attempted[0] == document.version and (
            attempted[1] is document.source or attempted[1] == document.source)

    async def _work(self, uri: str) -> None:
        """Analyse the document's newest version until it is the one analysed."""
        if self._one_at_a_time is None:
            self._one_at_a_time = asyncio.Lock()
        while True:
            await asyncio.sleep(self.debounce_s)
            document = self.open_document(uri)
            if document is None or self._current(uri, document):
                return
            version, text = document.version, document.source
            async with self._one_at_a_time:
                try:
                    analysis = await _in_thread(Analysis, text, _path_of(uri), version)
                except Exception:  # noqa: BLE001 - a bug of the checker's: reported
                    self.report_failure("rnnspec lsp: analysis failed\n"
                                        + traceback.format_exc())
                    analysis = None
            self.analysed[(uri, version)] += 1
            self.attempted[uri] = (version, text)
            if self.open_document(uri) is None:
                return
            if analysis is not None:
                self.latest[uri] = analysis
                if analysis.parsed:
                    self.parsed[uri] = analysis
                if len(text) >= LARGE_TEXT:
                    _settle_heap()
                self.publish(uri, analysis)
            self._wake()

    def _wake(self) -> None:
        if self._updated is not None:
            self._updated.set()
        self._updated = asyncio.Event()

    async def analysis_for(self, uri: str) -> Analysis | None:
        """The analysis of the open document's current version, waiting up to `wait_s`
        for it; else the latest there is (None: none yet, or the document is not open)."""
        document = self.open_document(uri)
        if document is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while not self._current(uri, document):
            self.schedule(uri)
            if self._updated is None:
                self._updated = asyncio.Event()
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._updated.wait(), remaining)
            except asyncio.TimeoutError:
                break
            document = self.open_document(uri)
            if document is None:
                return None
        return self.latest.get(uri)

    def forget(self, uri: str) -> None:
        for table in (self.latest, self.parsed, self.attempted, self.texts):
            table.pop(uri, None)

    def current_text(self, uri: str, document) -> Text:
        """The open document's text as it is now, by lines (its line index built once per
        version): completion answers from it, as the analysis may lag behind."""
        kept = self.texts.get(uri)
        source = document.source
        if kept is not None and kept[0] == document.version and (
                kept[1].text is source or kept[1].text == source):
            return kept[1]
        text = Text(source)
        self.texts[uri] = (document.version, text)
        return text

    # positions: rnnspec's 1-based character columns <-> the client's units, by pygls' codec

    def position(self, analysis: Analysis, position: types.Position) -> tuple[int, int]:
        """The client's position -> rnnspec's 1-based line and character column."""
        line = analysis.line(position.line)
        if line.isascii():  # one code unit per character in every encoding: no codec
            return position.line + 1, min(position.character, len(line)) + 1
        codec = self.workspace.position_codec
        character = min(position.character, codec.client_num_units(line))
        found = codec.position_from_client_units(
            [line], types.Position(0, character)) if line else ServerTextPosition(0, 0)
        return position.line + 1, found.character + 1

    def lsp_position(self, analysis: Analysis, line: int, column: int) -> types.Position:
        text = analysis.line(line - 1)
        before = text[:max(0, column - 1)]
        units = len(before) if before.isascii() else \
            self.workspace.position_codec.client_num_units(before)  # pygls: per character
        return types.Position(max(0, line - 1), units)

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

    def publish(self, uri: str, analysis: Analysis) -> None:
        try:
            diagnostics = [self.lsp_diagnostic(uri, analysis, d)
                           for d in analysis.result.diagnostics]
        except Exception:  # noqa: BLE001
            self.report_failure("rnnspec lsp: diagnostics failed\n" + traceback.format_exc())
            diagnostics = []
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=uri, diagnostics=diagnostics, version=analysis.version))


def _guard(handler):
    """A failing handler answers its request with an InternalError response (and reports
    the traceback) rather than end the server."""
    if not asyncio.iscoroutinefunction(handler):
        @functools.wraps(handler)
        def guarded_notification(ls: RnnspecServer, params):
            try:
                return handler(ls, params)
            except Exception:  # noqa: BLE001 - any bug: log it, keep serving
                ls.report_failure(f"rnnspec lsp: {handler.__name__} failed\n"
                                  + traceback.format_exc())
                return None

        return guarded_notification

    @functools.wraps(handler)
    async def guarded(ls: RnnspecServer, params):
        try:
            return await handler(ls, params)
        except Exception as exc:  # noqa: BLE001 - any bug: answered and reported
            ls.report_failure(f"rnnspec lsp: {handler.__name__} failed\n"
                              + traceback.format_exc())
            raise Reported(f"rnnspec lsp: {handler.__name__} failed: "
                           f"{type(exc).__name__}: {exc}") from None

    return guarded


# ----------------------------------------------------------------------------- handlers


def did_open(ls: RnnspecServer, params: types.DidOpenTextDocumentParams):
    ls.schedule(params.text_document.uri)


def did_change(ls: RnnspecServer, params: types.DidChangeTextDocumentParams):
    ls.schedule(params.text_document.uri)


def did_close(ls: RnnspecServer, params: types.DidCloseTextDocumentParams):
    ls.forget(params.text_document.uri)
    ls.text_document_publish_diagnostics(
        types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))


async def hover(ls: RnnspecServer, params: types.HoverParams):
    analysis = await ls.analysis_for(params.text_document.uri)
    if analysis is None:
        return None
    found = hover_text(analysis, *ls.position(analysis, params.position))
    if found is None:
        return None
    text, span = found
    return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, text),
                       ls.lsp_range(analysis, span))


async def goto_definition(ls: RnnspecServer, params: types.DefinitionParams):
    analysis = await ls.analysis_for(params.text_document.uri)
    if analysis is None:
        return None
    span = definition(analysis, *ls.position(analysis, params.position))
    if span is None:
        return None
    return types.Location(params.text_document.uri, ls.lsp_range(analysis, span))


async def document_symbol(ls: RnnspecServer, params: types.DocumentSymbolParams):
    analysis = await ls.analysis_for(params.text_document.uri)
    if analysis is None:
        return []
    return [ls.lsp_symbol(analysis, s) for s in symbols(analysis)]


async def completion(ls: RnnspecServer, params: types.CompletionParams):
    uri = params.text_document.uri
    document = ls.open_document(uri)
    if document is None:
        return types.CompletionList(is_incomplete=False, items=[])
    analysis = await ls.analysis_for(uri)
    document = ls.open_document(uri)
    if document is None:
        return types.CompletionList(is_incomplete=False, items=[])
    current = ls.current_text(uri, document)  # now: the analysis may be older
    line, column = ls.position(current, params.position)
    items = completions(analysis, current.text, current.offset(line, column),
                        ls.parsed.get(uri))
    return types.CompletionList(is_incomplete=False, items=[
        types.CompletionItem(label=c.label, kind=_COMPLETION_KINDS[c.kind],
                             detail=c.detail or None, insert_text=c.insert)
        for c in items])


async def formatting(ls: RnnspecServer, params: types.DocumentFormattingParams):
    from rnnspec.tools.fmt import FormatRefused, format_source

    document = ls.open_document(params.text_document.uri)
    if document is None:
        return None
    current = Text(document.source, _path_of(params.text_document.uri))
    try:
        formatted = format_source(current.text, current.path)
    except FormatRefused:
        return None
    if formatted == current.text:
        return []
    end = ls.lsp_position(current, len(current.lines), len(current.lines[-1]) + 1)
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
