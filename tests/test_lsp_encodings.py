"""`rnnspec lsp` positions in the encoding the client negotiated (pygls' codec): a client
that lists UTF-8 first gets UTF-8 offsets, one that asks for UTF-16 gets UTF-16, on a spec
with non-ASCII names and comments (`é`, and the astral `𝔥`, two UTF-16 units and four
UTF-8 bytes) before the positions that matter on the same line."""

from __future__ import annotations

import os
import sys

import pytest
from conftest import ROOT

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")

from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

in_server = pytest.mark.asyncio(loop_scope="module")

TEXT = """\
let é𝔥 = 20 let N = 20  # é and 𝔥
stack S { input_size = é𝔥 lstm(hidden_size = N) }
expect S { input = [5, 3, é𝔥] output = [5, 3, 30] }
"""
ENCODINGS = {"utf-8": types.PositionEncodingKind.Utf8,
             "utf-16": types.PositionEncodingKind.Utf16}


def _units(text: str, encoding: str) -> int:
    return len(text.encode("utf-8")) if encoding == "utf-8" else len(
        text.encode("utf-16-le")) // 2


def _position(needle: str, encoding: str, occurrence: int = 0) -> types.Position:
    index = -1
    for _ in range(occurrence + 1):
        index = TEXT.index(needle, index + 1)
    line = TEXT.count("\n", 0, index)
    start = TEXT.rfind("\n", 0, index) + 1
    return types.Position(line, _units(TEXT[start:index], encoding))


CONFIG = ClientServerConfig(server_command=[sys.executable, "-m", "rnnspec", "lsp"],
                            server_env=dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest_lsp.fixture(scope="module", params=list(ENCODINGS), config=CONFIG)
async def client(request, lsp_client: LanguageClient):
    encodings = [ENCODINGS[request.param]] + [e for n, e in ENCODINGS.items()
                                              if n != request.param]
    result = await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(
            general=types.GeneralClientCapabilities(position_encodings=encodings))))
    assert result.capabilities.position_encoding == ENCODINGS[request.param]
    lsp_client.encoding = request.param
    yield
    await lsp_client.shutdown_session()


async def _open(client: LanguageClient) -> str:
    uri = f"file:///tmp/rnnspec-lsp-test/encoding-{client.encoding}.rnn"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id="rnnspec", version=1, text=TEXT)))
    while True:
        params = await client.wait_for_notification("textDocument/publishDiagnostics")
        if params.uri == uri:
            return uri, list(params.diagnostics)


@in_server
async def test_diagnostics_hover_and_definition_in_the_negotiated_encoding(
        client: LanguageClient):
    encoding = client.encoding
    uri, diagnostics = await _open(client)
    by_code = {d.code: d for d in diagnostics}
    assert set(by_code) == {"E012", "E044"}
    start = _position("é𝔥", encoding)
    assert by_code["E012"].range == types.Range(
        start, types.Position(0, start.character + _units("é𝔥", encoding)))
    mistake = _position("30]", encoding)
    assert by_code["E044"].range == types.Range(
        mistake, types.Position(2, mistake.character + 2))

    document = types.TextDocumentIdentifier(uri)
    hovered = await client.text_document_hover_async(
        types.HoverParams(document, _position("N = 20", encoding)))
    assert hovered.contents.value == "**N** = `20`"
    assert hovered.range.start == _position("N = 20", encoding)
    found = await client.text_document_definition_async(
        types.DefinitionParams(document, _position("N)", encoding)))
    assert found.range.start == _position("N = 20", encoding)
    # a position inside the astral character's units still finds the name it belongs to
    inside = _position("é𝔥] output", encoding)
    found = await client.text_document_definition_async(types.DefinitionParams(
        document, types.Position(2, inside.character + _units("é", encoding) + 1)))
    assert found.range.start == start
