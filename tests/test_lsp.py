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

from rnnspec.tools.fmt import format_text  # noqa: E402
from rnnspec.tools.lsp.server import Analysis, completions, definition, hover_text, symbols  # noqa: E402

in_server = pytest.mark.asyncio(loop_scope="module")

SEED_MISTAKE = (SHARED_EXAMPLES / "seed_mistake.rnn").read_text(encoding="utf-8")
TAGGER = (SHARED_EXAMPLES / "tagger.rnn").read_text(encoding="utf-8")
CELLS = (SHARED_EXAMPLES / "cells.rnn").read_text(encoding="utf-8")
# A user cell with a size argument and a third state, a conditional constant, and a stack
# with section 9's arguments.
GATED = """\
let DEEP = 2
let DROP = 0.1 if DEEP > 1 else 0

# a cell with a size argument and a third state
cell Gated(k = 2) {
    state h[hidden_size], c[hidden_size], m[k]
    param w[4 * hidden_size, input_size], u[4 * hidden_size, hidden_size]
    param b[4 * hidden_size] = zeros
    param v[k, hidden_size]

    pre = w @ x + b
    i, f, g, o = chunk(pre + u @ h, 4)
    c = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h = sigmoid(o) * tanh(c)
    m = tanh(v @ h)
}

stack Net {
    input_size = 8
    bi  = gru(hidden_size = 8, bidirectional = true, merge = sum)
    enc = Gated(hidden_size = 8, k = 3, num_layers = DEEP, dropout = DROP, residual = true)
}

expect Net {
    input   = [5, 2, 8]
    m0[enc] = [2, 2, 3]
    output  = [5, 2, 8]
}
"""


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
    assert {"num_layers", "proj_size", "dropout"} <= set(in_lstm)
    # after a keyword argument only names go here: no value by position, no true/false
    assert not {"EMB", "HID", "true", "false", "hidden_size"} & set(in_lstm)
    assert "nonlinearity" not in in_lstm  # rnn only
    in_gru = await labels("hidden_size = HID // 2")
    assert "proj_size" not in in_gru and "hidden_size" in in_gru
    assert await labels("HID // 2") == ["EMB", "HID"]  # after `=` only values go
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


async def _requests(client: LanguageClient, text: str):
    """Hover, definition and completion at the first character of a needle of `text`."""
    uri = await _open(client, text)
    document = types.TextDocumentIdentifier(uri)

    async def hover(needle, occurrence=0):
        result = await client.text_document_hover_async(
            types.HoverParams(document, _position(text, needle, occurrence)))
        return result.contents.value if result else None

    async def definition_of(needle, occurrence=0):
        result = await client.text_document_definition_async(
            types.DefinitionParams(document, _position(text, needle, occurrence)))
        return result.range.start if result else None

    async def labels(needle, occurrence=0, after=0):
        at = _position(text, needle, occurrence)
        result = await client.text_document_completion_async(types.CompletionParams(
            document, types.Position(at.line, at.character + after)))
        return [item.label for item in result.items]

    return uri, hover, definition_of, labels


@in_server
async def test_hover_on_user_cells(client: LanguageClient):
    _, hover, _, _ = await _requests(client, GATED)
    cell = await hover("Gated(k")
    assert cell.startswith("**cell Gated**(k = 2): 3 states, 4 parameters per layer and "
                           "direction\n")
    assert "| state | `m` (`m0`, `m_n`) | `[k]` |" in cell
    assert "| param | `w` | `[4 * hidden_size, input_size]` |" in cell
    assert "| param | `b` = `zeros` | `[4 * hidden_size]` |" in cell
    assert "```\npre = w @ x + b\ni, f, g, o = chunk(pre + u @ h, 4)\n" in cell
    assert await hover("Gated(hidden") == cell  # the cell's name in a block
    assert await hover("m[k]") == ("state `m` of `Gated`: `[k]` per sequence; in `expect`: "
                                   "`m0`, `m_n`")
    assert await hover("u[4") == ("param `u` of `Gated`: `[4 * hidden_size, hidden_size]`, "
                                  "initialised `uniform`")
    chunk = await hover("f, g, o")
    assert chunk.startswith("`i, f, g, o = chunk(pre + u @ h, 4)`\n")
    assert "| `g` | `[hidden_size]` |" in chunk
    assert chunk.endswith("computed in the time loop (reads a state)")
    pre = await hover("w @ x")
    assert "| `pre` | `[4 * hidden_size]` |" in pre
    assert pre.endswith("before the loop (reads no state)")
    assert "| `c` (state) | `[hidden_size]` |" in await hover("c = sigmoid")
    assert "| `m` (state) | `[k]` |" in await hover("m = tanh")
    # blocks of user cells: every state, with its own keys
    block = await hover("enc =")
    assert "| `m0`, `m_n` | `[2, B, 3]` |" in block and "| `v_l1` | `[3, 8]` |" in block
    assert await hover("m0[enc]") == "`m0[enc]` of `Net`: derived `[2, B, 3]`"
    assert await hover("DROP, res") == "**DROP** = `0.1` (`0.1 if DEEP > 1 else 0`)"

    _, hover, _, _ = await _requests(client, CELLS)
    assert "| `c0`, `c_n` | `[4, B, 256]` |" in await hover("encoder =")
    assert "peep_o" in await hover("PeepholeLSTM {")


@in_server
async def test_definition_and_symbols_of_user_cells(client: LanguageClient):
    uri, _, definition_of, _ = await _requests(client, GATED)
    assert await definition_of("Gated(hidden") == _position(GATED, "Gated(k")
    assert await definition_of("v @ h") == _position(GATED, "v[k")
    assert await definition_of("k, hidden") == _position(GATED, "k = 2")
    assert await definition_of("pre + u") == _position(GATED, "pre =")
    assert await definition_of("f) * c") == _position(GATED, "f, g, o")
    assert await definition_of("DEEP, dropout") == _position(GATED, "DEEP")

    found = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(types.TextDocumentIdentifier(uri)))
    outline = [(s.name, [c.name for c in s.children or []]) for s in found]
    assert outline == [("DEEP", []), ("DROP", []),
                       ("Gated", ["h", "c", "m", "w", "u", "b", "v"]),
                       ("Net", ["bi", "enc"]), ("expect Net", ["input", "m0[enc]", "output"])]
    gated = found[2]
    assert gated.kind == types.SymbolKind.Struct and gated.detail == "3 states, 4 parameters"
    assert [(c.kind, c.detail) for c in gated.children[2:4]] == [
        (types.SymbolKind.Variable, "[k]"),
        (types.SymbolKind.Field, "[4 * hidden_size, input_size]")]


@in_server
async def test_completion_in_and_of_user_cells(client: LanguageClient):
    uri, _, _, labels = await _requests(client, GATED)
    in_block = await labels("hidden_size = 8, k")
    assert {"hidden_size", "k", "merge", "residual", "zoneout"} <= set(in_block)
    assert not {"DEEP", "true", "false"} & set(in_block)  # a user cell takes no positions
    assert "proj_size" not in in_block and "nonlinearity" not in in_block
    assert await labels("sum)") == ["concat", "sum", "mean", "mul", "DEEP", "DROP"]
    assert (await labels("true)"))[:2] == ["true", "false"]
    in_stack = await labels("enc =")
    assert {"rnn", "lstm", "gru", "Gated", "input_size"} <= set(in_stack)
    in_expect = await labels("output  =")
    assert {"m0[enc]", "m_n[enc]", "c0[enc]", "h0[bi]", "m0", "input"} <= set(in_expect)
    assert "c0[bi]" not in in_expect
    assert await labels("enc] =") == ["bi", "enc", "0", "1"]  # a selector: the blocks
    in_body = await labels("c = sigmoid")
    assert {"sigmoid", "tanh", "relu", "layer_norm", "concat", "chunk"} <= set(in_body)
    assert {"x", "h", "c", "m", "w", "u", "b", "v", "pre", "i", "o", "k", "hidden_size",
            "state", "param"} <= set(in_body)
    assert "DROP" in in_body and "lstm" not in in_body and "merge" not in in_body
    in_call = await labels("pre + u")
    assert "tanh" in in_call and "pre" in in_call and "state" not in in_call
    assert await labels("k, hidden") == ["input_size", "hidden_size", "k", "DEEP", "DROP"]
    assert await labels("zeros") == ["uniform", "zeros", "ones", "normal"]

    # typing a new block: the document does not parse, the cell's record still answers
    typing = GATED.replace("residual = true)", "residual = true)\n    Gated(hidden_size = 8, ")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        [types.TextDocumentContentChangeWholeDocument(text=typing)]))
    (syntax,) = await _diagnostics_of(client, uri)
    assert syntax.code == "E001"
    at = _position(typing, "8, \n")
    result = await client.text_document_completion_async(types.CompletionParams(
        types.TextDocumentIdentifier(uri), types.Position(at.line, at.character + 3)))
    offered = {item.label for item in result.items}
    assert {"k", "residual"} <= offered and "hidden_size" not in offered  # given already
    at = _position(typing, "m0[")
    result = await client.text_document_completion_async(types.CompletionParams(
        types.TextDocumentIdentifier(uri), types.Position(at.line, at.character + 3)))
    assert [item.label for item in result.items][:2] == ["bi", "enc"]


def test_diagnostic_links_resolve():
    """`codeDescription` points at docs/diagnostics.md#<code>: the page has that anchor
    for every code, explicitly (not left to a renderer's heading slugs)."""
    from rnnspec.language.diagnostics import CODES
    from rnnspec.tools.lsp.server import DOCS_URL

    page = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    assert DOCS_URL.endswith("/docs/diagnostics.md")
    for code in CODES:
        assert f'<a id="{code.lower()}"></a>\n\n## {code}: ' in page, code


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

    for text in (GATED, TAGGER):  # a user cell, conditionals and merge; then the tagger
        uri = await _open(client, "")
        prefixes = sorted(set(range(0, len(text), 7)) | set(range(len(text) - 40,
                                                                  len(text) + 1)))
        for version, end in enumerate(prefixes, start=2):
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                [types.TextDocumentContentChangeWholeDocument(text=text[:end])]))
            if version % 10 == 0:
                await _every_request(client, uri, text[:end])
        await _every_request(client, uri, text)
    # still alive, and the finished text checks clean
    hovered = await client.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(uri), _position(TAGGER, "HID", 1)))
    assert hovered.contents.value == "**HID** = `256`"
    assert list(client.diagnostics[uri]) == []
    failures = [m.message for m in client.log_messages if "failed" in m.message]
    assert not failures, failures[0]


def test_every_prefix_in_process():
    """Each analysis function on every prefix of typing two examples: no exception."""
    for text in (TAGGER, SEED_MISTAKE, GATED,
                 "let A = (((1\nstack S { lstm(hidden_size = A"):
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


# ----------------------------------------------------------------------------- section 10

DEEPSPEECH2 = (ROOT / "examples" / "deepspeech2.rnn").read_text(encoding="utf-8")
UNMIX = (ROOT / "examples" / "unmix.rnn").read_text(encoding="utf-8")
SENTIMENT = (ROOT / "examples" / "sentiment.rnn").read_text(encoding="utf-8")
WIRED = """\
stack Wired {
    input_size = 40
    speaker = input(64, over = sequence)
    noise   = input(8)
    conv = conv1d(32, 11, stride = 2)
    fc   = linear(32, from = concat(input, noise))
    sub  = subsample(2, from = conv)
    lstm = lstm(hidden_size = 16)
    out  = linear(16, from = sum(lstm, lstm))
}
"""


def _hover_in_process(text: str, needle: str, occurrence: int = 0) -> str | None:
    at = _position(text, needle, occurrence)
    found = hover_text(Analysis(text, "spec.rnn"), at.line + 1, at.character + 1)
    return found[0] if found else None


def _labels_in_process(text: str, needle: str, after: int = 0) -> list[str]:
    offset = text.index(needle) + after
    return [c.label for c in completions(Analysis(text, "spec.rnn"), text, offset)]


@in_server
async def test_hover_and_completion_of_layers(client: LanguageClient):
    _, hover, _, labels = await _requests(client, DEEPSPEECH2)
    conv2 = await hover("conv2 =")
    assert conv2.startswith("**conv2**: `conv2d`, 2592 → 1312 (32 channels × 41 bins)\n")
    assert "time `(T - 1) // 2 + 1` (reads `(T - 1) // 2 + 1`)" not in conv2  # same time
    assert "| output | `[(T - 1) // 2 + 1, B, 32, 41]` |" in conv2
    assert "| `conv2.weight` | `[32, 32, 21, 11]` |" in conv2
    conv1 = await hover("conv1 =")
    assert "time `(T - 1) // 2 + 1` (reads `T`)" in conv1
    bn = await hover("bn1")
    assert "| `bn1.running_mean` (buffer) | `[32]` |" in bn
    assert "| `bn1.num_batches_tracked` (buffer) | `[]` |" in bn
    rnn = await hover("rnn1")
    assert rnn.startswith("**rnn1**: `lstm`, 1312 -> 1024") and "time `(T - 1) // 2 + 1`" in rnn
    assert "| output | `[(T - 1) // 2 + 1, B, 1024]` |" in rnn
    stack = await hover("DeepSpeech2 {")
    assert stack.startswith("**stack DeepSpeech2**: 5 blocks, 13 layers, ")
    assert "| `conv2` | `conv2d` | `[(T - 1) // 2 + 1, B, 32, 41]` |" in stack
    assert "needs T" not in stack  # min_input_time is 1
    assert await hover("output[conv2]") == (
        "`output[conv2]` of `DeepSpeech2`: derived `[(T - 1) // 2 + 1, B, 32, 41]`")
    in_stack = await labels("rnn1 ")
    from rnnspec.layers.kinds import LAYER_KINDS

    assert set(LAYER_KINDS) | {"lstm", "gru", "rnn", "input", "input_size"} <= set(in_stack)
    in_conv = await labels("32, [21", after=4)
    # `32` is out_channels by position: not offered again
    assert ["kernel_size", "stride", "padding", "dilation", "groups", "bias",
            "layout", "from"] == [x for x in in_conv if x in (
                "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                "bias", "layout", "from")]
    assert "hidden_size" not in in_conv
    in_lstm = await labels("hidden_size = H, bidirectional")
    assert "hidden_size" in in_lstm and "out_channels" not in in_lstm


def test_layer_hover_in_process():
    conv = _hover_in_process(WIRED, "conv =")
    assert conv.startswith("**conv**: `conv1d`, 40 → 32\n")
    assert "time `(T - 11) // 2 + 1` (reads `T`)" in conv
    assert "| `conv.weight` | `[32, 40, 11]` |" in conv
    sub = _hover_in_process(WIRED, "sub ")
    assert "time `(T - 11) // 2 // 2 + 1` (reads `(T - 11) // 2 + 1`)" in sub
    assert "reads `conv`" in sub
    assert "reads `concat(input, noise)`" in _hover_in_process(WIRED, "fc ")
    assert "reads `sum(lstm, lstm)`" in _hover_in_process(WIRED, "out ")
    stack = _hover_in_process(WIRED, "Wired")
    assert stack.endswith("needs T >= 11")
    assert "side input `speaker` `[B, 64]` (one per sequence)" in stack
    assert "side input `noise` `[T, B, 8]`" in stack
    assert _hover_in_process(WIRED, "speaker").startswith("**speaker**: side input `[B, 64]`")
    head = _hover_in_process(SENTIMENT, "pool(final)")
    assert head.startswith("**pool3**: `pool`, 512 → 512") and "ends time" in head
    assert "| output | `[64, 1]` |" not in head and "| output | `[B, 512]` |" in head
    assert "no time axis" in _hover_in_process(SENTIMENT, "fc      =")
    skip = _hover_in_process(UNMIX, "fc2  =")
    assert "reads `concat(skip, lstm)`" in skip and "| `fc2.weight` | `[512, 1024]` |" in skip
    # a stack of blocks only keeps its hover
    assert "needs T" not in _hover_in_process(TAGGER, "Tagger")


def test_layer_completion_in_process():
    in_pool = "stack S {\n    input_size = 4\n    lstm(hidden_size = 4)\n    pool(mode = )\n}\n"
    assert _labels_in_process(in_pool, "= )", 2)[:5] == ["last", "first", "mean", "max",
                                                         "final"]
    assert "mode" in _labels_in_process(in_pool, "mode")
    assert _labels_in_process(WIRED, "concat(input", 7)[:3] == ["concat", "sum", "input"]
    names = _labels_in_process(WIRED, "concat(input", 7)
    assert {"speaker", "noise", "conv", "fc"} <= set(names)
    assert "conv" in _labels_in_process(WIRED, "from = conv", 7)
    assert _labels_in_process(WIRED, "over = sequence", 7)[:2] == ["time", "sequence"]
    assert "factor" in _labels_in_process(WIRED, "subsample(2", 10)
    # a layer being typed completes its arguments from the record, before it parses
    typing = "stack S {\n    input_size = 4\n    max_pool1d("
    assert {"kernel_size", "stride", "padding", "ceil_mode", "from"} <= set(
        _labels_in_process(typing, "max_pool1d(", 11))


def test_symbols_and_definitions_with_layers():
    analysis = Analysis(WIRED, "spec.rnn")
    (stack,) = symbols(analysis)
    assert [c.name for c in stack.children] == ["conv", "fc", "sub", "lstm", "out"]
    text = DEEPSPEECH2
    at = _position(text, "conv2]")
    found = definition(Analysis(text, "spec.rnn"), at.line + 1, at.character + 1)
    assert (found.line, found.column) == (_position(text, "conv2 =").line + 1, 5)
    unnamed = Analysis(SENTIMENT, "spec.rnn")
    assert [c.name for c in symbols(unnamed)[0].children] == [
        "embedding", "dropout1", "rnn", "pool3", "dropout", "fc"]


def test_every_prefix_of_the_layer_examples_in_process():
    for text in (UNMIX, SENTIMENT, WIRED):
        for end in range(0, len(text) + 1, 3):
            prefix = text[:end]
            analysis = Analysis(prefix, "typing.rnn")
            lines = prefix.split("\n")
            line, column = len(lines), len(lines[-1]) + 1
            hover_text(analysis, line, column)
            definition(analysis, line, max(1, column - 1))
            symbols(analysis)
            assert isinstance(completions(analysis, prefix, end), list)


SQUARE = """cell Highway(clip = 1.0) {
    require input_size == hidden_size
    state h[hidden_size]
    param w[2 * hidden_size, hidden_size]

    a, b = chunk(w, 2)
    h = clamp(a @ h + (1.0 - sigmoid(b @ x)) * x, -clip, clip)
}

stack S {
    input_size = 4
    Highway(hidden_size = 4)
}
"""


def test_hover_shows_a_require_in_force_and_rows_of_a_matrix():
    cell = _hover_in_process(SQUARE, "Highway(clip")
    assert "requires (in force for every block): `input_size == hidden_size`" in cell
    assert cell.startswith("**cell Highway**(clip = 1.0)")
    require = _hover_in_process(SQUARE, "require")
    assert require.startswith("`require input_size == hidden_size` of `Highway`: checked for "
                              "every block and every layer")
    pieces = _hover_in_process(SQUARE, "a, b =")
    assert "| `a` | a matrix `[hidden_size, hidden_size]` |" in pieces
