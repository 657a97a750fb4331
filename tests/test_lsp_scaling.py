"""The language server's work, counted (issue 19; no wall-clock times here: those are
benchmarks/editor.py's `lsp_scaling`): each version of a document analysed once however
many requests come, the checked stacks built once per analysis, symbols linear, and
completion lexing only the item the cursor is in (and the cells' headers)."""

from __future__ import annotations

import gc
import io
import json
from pathlib import Path

import pytest
from conftest import ROOT, SHARED_EXAMPLES

pytest.importorskip("pygls")

from rnnspec.language.parse import tokenize  # noqa: E402
from rnnspec.tools.lsp import completion as lsp_completion  # noqa: E402
from rnnspec.tools.lsp import language_server  # noqa: E402
from rnnspec.tools.lsp.analysis import Analysis, definition, hover_text, symbols  # noqa: E402
from rnnspec.tools.lsp.completion import completions, declared_cells, item_start  # noqa: E402
from rnnspec.tools.lsp.stream import Framer  # noqa: E402

URI = "file:///a.rnn"
SPEC = "let H = 4\nstack S {\n    input_size = 4\n    lstm(hidden_size = H)\n}\n"


def frame(message) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def request(number: int, method: str, line: int = 3, character: int = 10) -> bytes:
    params = {"textDocument": {"uri": URI}}
    if method != "textDocument/documentSymbol":
        params["position"] = {"line": line, "character": character}
    return frame({"jsonrpc": "2.0", "id": number, "method": method, "params": params})


METHODS = ["textDocument/hover", "textDocument/definition", "textDocument/documentSymbol",
           "textDocument/completion"]
START = (frame({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"capabilities": {}}})
         + frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
OPEN = frame({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
    "textDocument": {"uri": URI, "languageId": "rnnspec", "version": 1, "text": SPEC}}})
CHANGE = frame({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
    "textDocument": {"uri": URI, "version": 2},
    "contentChanges": [{"range": {"start": {"line": 0, "character": 8},
                                  "end": {"line": 0, "character": 9}}, "text": "6"}]}})
END = (frame({"jsonrpc": "2.0", "id": 9999, "method": "shutdown"})
       + frame({"jsonrpc": "2.0", "method": "exit"}))


class _Output(io.BytesIO):
    def close(self):  # pygls closes its stdout on exit; keep what was written
        self.data = self.getvalue()


class _Staged:
    """The server's stdin in stages: each stage once `ready(out)` says the client may go
    on (its requests so far answered), as a client that waits for its answers sends."""

    def __init__(self, stages, out: _Output):
        self.stages, self.out = list(stages), out

    def read1(self, size: int) -> bytes:
        import time

        if not self.stages:
            return b""
        data, ready = self.stages.pop(0)
        deadline = time.monotonic() + 60
        while not ready(self.out.getvalue()) and time.monotonic() < deadline:
            time.sleep(0.01)
        return data


def _answered(number: int):
    import re

    return lambda written: re.search(rb'"id": ?%d\b' % number, written) is not None


def test_requests_on_one_version_trigger_one_analysis_and_a_change_one_more(monkeypatch):
    made = []

    class Counted(Analysis):
        def __init__(self, text, path, version=None):
            made.append(version)
            super().__init__(text, path, version)

    monkeypatch.setattr(language_server, "Analysis", Counted)
    settled = []
    real_settle = language_server._settle_heap
    monkeypatch.setattr(language_server, "_settle_heap",
                        lambda: settled.append(gc.get_freeze_count()) or real_settle())
    monkeypatch.setattr(language_server, "LARGE_TEXT", len(SPEC))  # this one counts as large
    burst = lambda first: b"".join(  # noqa: E731
        request(first + n, METHODS[n % len(METHODS)]) for n in range(40))
    server = language_server.RnnspecServer(stderr=io.StringIO())
    out = _Output()
    stages = [(START + OPEN + burst(100), lambda _: True), (CHANGE + burst(200), _answered(139)),
              (END, _answered(239))]
    server.start_io(_Staged(stages, out), out)
    answered = {m["id"]: m for m in Framer().feed(out.data) if "id" in m and "method" not in m}
    assert set(range(100, 140)) | set(range(200, 240)) <= set(answered)
    assert not [m for m in answered.values() if "error" in m]
    assert made == [1, 2]  # one analysis per version, whatever the number of requests
    assert server.analysed == {(URI, 1): 1, (URI, 2): 1}
    assert len(settled) == 2 and settled[1] > 0  # each analysis frozen out of gc passes
    assert gc.get_freeze_count() == 0  # and thawed when the server ends
    hovered = answered[200]["result"]["contents"]["value"]  # version 2: `let H = 6`
    assert "**lstm0**" in hovered and "[24, 4]" in hovered, hovered


def _spec(stacks: int) -> str:
    out = ["let H = 8", ""]
    for index in range(stacks):
        out += [f"stack S{index} {{", "    input_size = 3", "    lstm(hidden_size = H)", "}",
                f"expect S{index} {{", "    output = [T, B, H]", "}", ""]
    return "\n".join(out)


def test_the_checked_stacks_are_built_once_per_analysis(monkeypatch):
    from rnnspec.check import checker

    checks = []
    real = checker.check_text
    monkeypatch.setattr(checker, "check_text", lambda *a, **k: checks.append(1) or real(*a, **k))
    analysis = Analysis(_spec(30), "s.rnn")
    stacks = analysis.stacks
    assert len(stacks) == 30 and checks == [1]
    last = max(i for i, line in enumerate(analysis.lines) if "lstm(" in line) + 1
    for _ in range(5):
        symbols(analysis)
        assert hover_text(analysis, last, 6) is not None
        assert definition(analysis, last, 24) is not None  # `H`
        completions(analysis, analysis.text, analysis.offset(last, 10))
    assert analysis.stacks is stacks and checks == [1]


def test_symbols_read_each_stack_once(monkeypatch):
    from rnnspec.tools.lsp import analysis as lsp_analysis

    reads = []
    real = lsp_analysis.entry_items
    monkeypatch.setattr(lsp_analysis, "entry_items", lambda s: reads.append(1) or real(s))
    for stacks in (10, 100):
        reads.clear()
        found = symbols(Analysis(_spec(stacks), "s.rnn"))
        assert len([s for s in found if s.kind == "stack"]) == stacks
        assert len(reads) == stacks  # linear: no per-stack pass over every stack


def test_completion_lexes_the_cursors_item_only(monkeypatch):
    from rnnspec.language import parse

    lexed = []
    real = parse.tokenize
    monkeypatch.setattr(parse, "tokenize", lambda text: lexed.append(len(text)) or real(text))
    cell = "cell G(k) {\n    state h[hidden_size]\n    h = tanh(x + h)\n}\n\n"
    read = {}
    for stacks in (10, 1000):
        text = cell + _spec(stacks)
        offset = text.rindex("hidden_size = H") + len("hidden_size = ")
        analysis = Analysis(text, "s.rnn")
        lexed.clear()
        labels = [c.label for c in completions(analysis, text, offset)]
        assert "H" in labels
        read[stacks] = list(lexed)
        lexed.clear()
        stack_offset = text.rindex("input_size")  # in a stack: the file's cells offered
        assert "G" in [c.label for c in completions(None, text, stack_offset)]
    # the same characters, however long the document: the item (`S999` is 2 longer than
    # `S9`) and the cell's header
    assert sum(read[1000]) - sum(read[10]) == 2 and len(read[10]) == len(read[1000])
    assert sum(read[10]) < 100


def test_a_half_typed_item_does_not_swallow_the_next():
    text = "stack A {\n    input_size = 4\n    lstm(hid\n\nstack B {\n    \n}\n"
    offset = text.rindex("    \n}") + 4
    assert item_start(text, offset) == text.index("stack B")
    labels = [c.label for c in completions(None, text, offset)]
    assert "lstm" in labels and "input_size" in labels  # a stack's body, not A's call


def _examples() -> list[Path]:
    return sorted((ROOT / "examples").glob("*.rnn")) + sorted(SHARED_EXAMPLES.glob("*.rnn"))


@pytest.mark.parametrize("path", _examples(), ids=lambda p: p.stem)
def test_the_cursors_item_reads_as_the_whole_prefix_does(path):
    """At offsets all through each example (and where `lstm(hid` is being typed into it),
    the tokens of the cursor's item are the whole prefix's last tokens, and the context,
    the arguments written and the cell's scope read from them are the whole prefix's; the
    cells found from their headers are those found from every token."""
    text = path.read_text(encoding="utf-8")
    everything = [t for t in tokenize(text) if t.kind != "comment"]
    assert declared_cells(text) == lsp_completion._declared_cells(everything)
    middle = text.index("\n", len(text) // 2) + 1
    typing = text[:middle] + "lstm(hid" + text[middle:]
    offsets = [(text, o) for o in range(0, len(text) + 1, max(1, len(text) // 150))]
    offsets.append((typing, middle + len("lstm(hid")))
    for variant, offset in offsets:
        whole = [t for t in tokenize(variant[:offset]) if t.kind != "comment"]
        start = item_start(variant, offset)
        item = [t._replace(start=t.start + start)
                for t in tokenize(variant[start:offset]) if t.kind != "comment"]
        if item and start:
            item[0] = item[0]._replace(newlines=whole[len(whole) - len(item)].newlines)
        assert whole[len(whole) - len(item):] == item, offset
        context = lsp_completion._context(item)
        assert context == lsp_completion._context(whole), offset
        assert lsp_completion._written_arguments(item) == \
            lsp_completion._written_arguments(whole), offset
        if context.block == "cell":  # where completion reads a cell's scope
            assert lsp_completion._cell_scope(item) == \
                lsp_completion._cell_scope(whole), offset
