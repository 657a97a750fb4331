"""`rnnspec lsp` end to end: a pytest-lsp client talking to the real server process over
stdio; plus the analysis functions on every prefix of typing an example, in process."""

from __future__ import annotations

import os
import random
import sys

import pytest
from conftest import ROOT, SHARED_EXAMPLES

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")

from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

from rnnspec.fmt import format_text  # noqa: E402
from rnnspec.lsp import Analysis, completions, definition, hover_text, symbols  # noqa: E402

in_server = pytest.mark.asyncio(loop_scope="module")

SEED_MISTAKE = (SHARED_EXAMPLES / "seed_mistake.rnn").read_text(encoding="utf-8")
TAGGER = (SHARED_EXAMPLES / "tagger.rnn").read_text(encoding="utf-8")


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "rnnspec", "lsp"],
        server_env=dict(os.environ, PYTHONPATH=str(ROOT)),
    ),
)
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=types.ClientCapabilities()))
    yield
    await lsp_client.shutdown_session()


_counter = iter(range(10**6))


async def _open(client: LanguageClient, text: str) -> str:
    uri = f"file:///tmp/rnnspec-lsp-test/doc{next(_counter)}.rnn"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id="rnnspec", version=1, text=text)))
    await _diagnostics_of(client, uri)
    return uri


async def _diagnostics_of(client: LanguageClient, uri: str) -> list[types.Diagnostic]:
    while True:
        params = await client.wait_for_notification("textDocument/publishDiagnostics")
        if params.uri == uri:
            return list(params.diagnostics)


def _position(text: str, needle: str, occurrence: int = 0) -> types.Position:
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index)
    return types.Position(line, index - (text.rfind("\n", 0, index) + 1))


@in_server
async def test_seed_mistake_is_underlined_then_cleared(client: LanguageClient):
    uri = f"file:///tmp/rnnspec-lsp-test/seed_mistake{next(_counter)}.rnn"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id="rnnspec", version=1, text=SEED_MISTAKE)))
    diagnostics = await _diagnostics_of(client, uri)
    assert len(diagnostics) == 1
    (diagnostic,) = diagnostics
    at = _position(SEED_MISTAKE, "30]")
    assert at.line == 9  # line 10, 1-based
    assert diagnostic.range.start == at
    assert diagnostic.range.end == types.Position(9, at.character + 2)
    assert diagnostic.severity == types.DiagnosticSeverity.Error
    assert diagnostic.code == "E044" and diagnostic.source == "rnnspec"
    assert "30" in diagnostic.message and "20" in diagnostic.message
    assert diagnostic.code_description.href.endswith("docs/diagnostics.md#e044")
    related = diagnostic.related_information
    assert related and related[0].location.uri == uri
    assert related[0].location.range.start.line == 4  # input_size = 20 is set on line 5

    # an incremental edit: 30 -> 20
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        [types.TextDocumentContentChangePartial(
            range=types.Range(at, types.Position(at.line, at.character + 2)), text="20")]))
    assert await _diagnostics_of(client, uri) == []

    # a full-text change: a syntax error is still reported, then fixed again
    broken = SEED_MISTAKE.replace("    input_size = 20", "    input_size = = 20")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(uri=uri, version=3),
        [types.TextDocumentContentChangeWholeDocument(text=broken)]))
    (syntax,) = await _diagnostics_of(client, uri)
    assert syntax.code == "E001" and syntax.range.start == _position(broken, "= 20", 1)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(uri=uri, version=4),
        [types.TextDocumentContentChangeWholeDocument(
            text=SEED_MISTAKE.replace("30]", "20]"))]))
    assert await _diagnostics_of(client, uri) == []


@in_server
async def test_hover(client: LanguageClient):
    uri = await _open(client, TAGGER)

    async def hover(needle, occurrence=0):
        result = await client.text_document_hover_async(types.HoverParams(
            types.TextDocumentIdentifier(uri), _position(TAGGER, needle, occurrence)))
        return result.contents.value if result else None

    block = await hover("encoder = lstm")
    assert "| `weight_ih_l0` | `[1024, 128]` |" in block
    assert "| `weight_ih_l1_reverse` | `[1024, 512]` |" in block
    assert "| `h0`, `h_n` | `[4, B, 256]` |" in block
    assert "| output | `[B, T, 512]` |" in block
    refine = await hover("gru(")
    assert "| `weight_ih_l0` | `[384, 512]` |" in refine  # torch: GRU(512, 128).weight_ih_l0
    assert await hover("HID", 1) == "**HID** = `256`"
    assert await hover("HID // 2") == "**HID** = `256`"
    assert await hover("h0[encoder]") == "`h0[encoder]` of `Tagger`: derived `[4, B, 256]`"
    assert await hover("h_n[refine]") == "`h_n[refine]` of `Tagger`: derived `[1, B, 128]`"
    assert "2,614,016 parameters" in await hover("Tagger")
    assert await hover("# A sequence") is None


@in_server
async def test_definition_and_symbols(client: LanguageClient):
    uri = await _open(client, TAGGER)

    async def definition_of(needle, occurrence=0):
        result = await client.text_document_definition_async(types.DefinitionParams(
            types.TextDocumentIdentifier(uri), _position(TAGGER, needle, occurrence)))
        return (result.uri, result.range.start) if result else None

    assert await definition_of("HID", 1) == (uri, _position(TAGGER, "HID"))
    assert await definition_of("EMB", 1) == (uri, _position(TAGGER, "EMB"))
    assert await definition_of("Tagger", 1) == (uri, _position(TAGGER, "Tagger"))
    assert await definition_of("encoder]") == (uri, _position(TAGGER, "encoder ="))
    assert await definition_of("refine]") == (uri, _position(TAGGER, "refine  ="))

    found = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(types.TextDocumentIdentifier(uri)))
    outline = [(s.name, [c.name for c in s.children or []]) for s in found]
    assert outline == [("EMB", []), ("HID", []), ("Tagger", ["encoder", "refine"]),
                       ("expect Tagger", ["input", "h0[encoder]", "output", "h_n[refine]"])]
    assert found[2].kind == types.SymbolKind.Class


@in_server
async def test_completion(client: LanguageClient):
    uri = await _open(client, TAGGER)

    async def labels(needle, occurrence=0):
        result = await client.text_document_completion_async(types.CompletionParams(
            types.TextDocumentIdentifier(uri), _position(TAGGER, needle, occurrence)))
        return [item.label for item in result.items]

    in_lstm = await labels("num_layers")
    assert {"hidden_size", "num_layers", "proj_size", "dropout", "EMB", "HID"} <= set(in_lstm)
    assert "nonlinearity" not in in_lstm  # rnn only
    in_gru = await labels("HID // 2")
    assert "proj_size" not in in_gru and "hidden_size" in in_gru
    in_stack = await labels("refine  =")
    assert {"rnn", "lstm", "gru", "input_size", "batch_first"} <= set(in_stack)
    in_expect = await labels("output    ")
    assert {"input", "output", "h0[encoder]", "c0[encoder]", "h_n[refine]"} <= set(in_expect)
    assert "c0[refine]" not in in_expect  # a gru has no cell state


@in_server
async def test_formatting(client: LanguageClient):
    messy = "stack S{input_size=20\nlstm(hidden_size=50)}\n"
    uri = await _open(client, messy)
    edits = await client.text_document_formatting_async(types.DocumentFormattingParams(
        types.TextDocumentIdentifier(uri), types.FormattingOptions(tab_size=4,
                                                                   insert_spaces=True)))
    assert len(edits) == 1
    assert edits[0].range == types.Range(types.Position(0, 0), types.Position(2, 0))
    assert edits[0].new_text == format_text(messy)

    tidy = await _open(client, format_text(messy))
    assert await client.text_document_formatting_async(types.DocumentFormattingParams(
        types.TextDocumentIdentifier(tidy), types.FormattingOptions(4, True))) in ([], ())
    broken = await _open(client, "stack S {\n")
    assert await client.text_document_formatting_async(types.DocumentFormattingParams(
        types.TextDocumentIdentifier(broken), types.FormattingOptions(4, True))) is None


async def _every_request(client: LanguageClient, uri: str, text: str) -> None:
    lines = text.split("\n")
    position = types.Position(len(lines) - 1, len(lines[-1]))
    middle = types.Position(len(lines) // 2, 3)
    document = types.TextDocumentIdentifier(uri)
    for where in (position, middle, types.Position(0, 0)):
        await client.text_document_hover_async(types.HoverParams(document, where))
        await client.text_document_definition_async(types.DefinitionParams(document, where))
        await client.text_document_completion_async(types.CompletionParams(document, where))
    await client.text_document_document_symbol_async(types.DocumentSymbolParams(document))
    await client.text_document_formatting_async(types.DocumentFormattingParams(
        document, types.FormattingOptions(4, True)))


@in_server
async def test_random_bytes_and_typing_never_crash_the_server(client: LanguageClient):
    rng = random.Random(12)
    for _ in range(5):
        garbage = bytes(rng.randrange(256) for _ in range(300)).decode("utf-8", "replace")
        uri = await _open(client, garbage)
        await _every_request(client, uri, garbage)

    uri = await _open(client, "")
    prefixes = sorted(set(range(0, len(TAGGER), 7)) | set(range(len(TAGGER) - 40,
                                                                len(TAGGER) + 1)))
    for version, end in enumerate(prefixes, start=2):
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            [types.TextDocumentContentChangeWholeDocument(text=TAGGER[:end])]))
        if version % 10 == 0:
            await _every_request(client, uri, TAGGER[:end])
    await _every_request(client, uri, TAGGER)
    # still alive, and the finished text checks clean
    hovered = await client.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(uri), _position(TAGGER, "HID", 1)))
    assert hovered.contents.value == "**HID** = `256`"
    assert list(client.diagnostics[uri]) == []
    failures = [m.message for m in client.log_messages if "failed" in m.message]
    assert not failures, failures[0]


def test_every_prefix_in_process():
    """Each analysis function on every prefix of typing two examples: no exception."""
    for text in (TAGGER, SEED_MISTAKE, "let A = (((1\nstack S { lstm(hidden_size = A"):
        for end in range(len(text) + 1):
            prefix = text[:end]
            analysis = Analysis(prefix, "typing.rnn")
            lines = prefix.split("\n")
            line, column = len(lines), len(lines[-1]) + 1
            hover_text(analysis, line, column)
            hover_text(analysis, 1, 1)
            definition(analysis, line, max(1, column - 1))
            symbols(analysis)
            assert isinstance(completions(analysis, prefix, end), list)
