"""After a syntax error the parse goes on at the next top-level definition (issue 19): every
other definition is checked and its errors reported; the dropped one is known by name (no
"unknown" error about it); fmt still refuses the file; the language server still answers
on the definitions that parsed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from rnnspec.check.checker import check_text
from rnnspec.language import ast
from rnnspec.language.parse import MAX_SYNTAX_ERRORS, parse, parse_recovering
from rnnspec.tools.fmt import FormatRefused, format_source

EXAMPLES = sorted((ROOT / "examples").glob("*.rnn"))
PASTED = "    self.rnn = nn.LSTM(input_size=80, hidden_size=256, batch_first=True)"

TWO_STACKS = """\
stack Broken {
    input_size = 80
PASTED
}

stack Fine {
    input_size = 4
    gru(hidden_size = 0)
}

expect Broken {
    input = [5, 2, 80]
}
""".replace("PASTED", PASTED)


def _items(spec: ast.SpecFile) -> list:
    return [*spec.lets, *spec.stacks, *spec.expects, *spec.cells]


def test_other_stacks_are_checked_and_the_dropped_one_is_not_unknown():
    result = check_text(TWO_STACKS, "spec.rnn")
    codes = [(d.code, d.span.line) for d in result.diagnostics]
    assert codes == [("E033", 3), ("E021", 8)]  # no E040 for `expect Broken`
    assert result.tree.unparsed == (ast.Unparsed("stack", "Broken", result.tree.unparsed[0]
                                                 .name_span),)
    assert [s.name for s in result.tree.stacks] == ["Fine"]
    (expectation,) = result.expectations
    assert not expectation.ok


def test_the_cli_reports_every_stack(tmp_path):
    spec = tmp_path / "spec.rnn"
    spec.write_text(TWO_STACKS.replace("hidden_size = 0", "hidden_size = 3"), encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "rnnspec", "check", str(spec)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 1
    assert "1 stack checked" in run.stdout and "Traceback" not in run.stderr


def test_a_dropped_constant_and_cell_are_not_reported_unknown():
    text = ("let width = (8 +)\n"
            "cell Odd {\n    state h[hidden_size]\n    h = h +\n}\n"
            "stack S {\n    input_size = width\n    Odd(hidden_size = width)\n}\n")
    result = check_text(text, "spec.rnn")
    assert [d.code for d in result.diagnostics] == ["E001", "E001"]
    assert {(u.keyword, u.name) for u in result.tree.unparsed} == {("let", "width"),
                                                                   ("cell", "Odd")}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_one_broken_definition_leaves_every_other_exactly_as_parsed(path):
    """Replace one line inside each definition in turn by a pasted PyTorch line (the same
    number of lines, so every position stays): the other definitions parse exactly as
    before, spans included, and the broken one is named as dropped."""
    text = path.read_text(encoding="utf-8")
    whole, problems = parse(text, path.name)
    assert whole is not None and not problems
    lines = text.split("\n")
    for item in _items(whole):
        if item.span.end_line == item.span.line:
            continue  # a one-line definition: no line inside it to replace
        broken = list(lines)
        broken[item.span.line] = PASTED  # the line after the header
        spec, found = parse_recovering("\n".join(broken), path.name)
        assert found and found[0].span.line == item.span.line + 1
        named = (item.stack, item.stack_span) if isinstance(item, ast.Expect) else (
            item.name, item.name_span)
        assert [(u.name, u.name_span) for u in spec.unparsed] == [named]
        assert sorted(_items(spec), key=repr) == sorted(
            (other for other in _items(whole) if other is not item), key=repr)
        assert parse("\n".join(broken), path.name)[0] is None


def test_a_complete_definition_before_stray_text_is_kept():
    text = "stack A {\n    input_size = 3\n    lstm(hidden_size = 4)\n}\nimport torch\n" \
           "let b = 2\n"
    spec, problems = parse_recovering(text, "spec.rnn")
    assert [s.name for s in spec.stacks] == ["A"] and [let.name for let in spec.lets] == ["b"]
    (problem,) = problems
    assert (problem.code, problem.span.line, problem.span.column) == ("E001", 5, 1)
    assert spec.unparsed == (ast.Unparsed("", "", None),)


def test_definitions_on_one_line_recover_after_a_brace():
    text = "stack A { input_size = 3 lstm(hidden_size = 4) } stack B { input_size = ; } let c = 1"
    spec, problems = parse_recovering(text, "spec.rnn")
    assert [p.code for p in problems] == ["E002"]
    assert [s.name for s in spec.stacks] == ["A"] and [let.name for let in spec.lets] == ["c"]
    assert [u.name for u in spec.unparsed] == ["B"]


def test_a_file_of_errors_stops_at_the_limit_quickly():
    text = "stack S {\n    input_size = ;\n}\n" * (3 * MAX_SYNTAX_ERRORS)
    started = time.perf_counter()
    spec, problems = parse_recovering(text, "spec.rnn")
    assert time.perf_counter() - started < 20
    assert len(problems) == MAX_SYNTAX_ERRORS and not spec.stacks
    assert [p.span.line for p in problems[:3]] == [2, 5, 8]


# ----------------------------------------------------------------------------- fmt and LSP


def test_fmt_refuses_a_file_with_a_recovered_error(tmp_path):
    with pytest.raises(FormatRefused) as refused:
        format_source(TWO_STACKS, "spec.rnn")
    assert [d.code for d in refused.value.diagnostics] == ["E033"]
    spec = tmp_path / "spec.rnn"
    spec.write_text(TWO_STACKS, encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "rnnspec", "fmt", str(spec)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 1 and "E033" in run.stdout + run.stderr
    assert spec.read_text(encoding="utf-8") == TWO_STACKS


def test_the_language_server_answers_on_what_parsed():
    pytest.importorskip("pygls")
    from rnnspec.tools.lsp.analysis import Analysis, definition, hover_text, symbols

    text = TWO_STACKS.replace("hidden_size = 0", "hidden_size = 3")
    analysis = Analysis(text, "spec.rnn")
    assert not analysis.parsed  # completion keeps the last version that parsed whole
    assert [s.name for s in symbols(analysis)] == ["Fine", "expect Broken"]
    line = text.split("\n").index("    gru(hidden_size = 3)") + 1
    found = hover_text(analysis, line, 6)
    assert found is not None and "gru" in found[0]
    # `expect Broken` names a stack that did not parse: no definition, no exception
    assert definition(analysis, text.split("\n").index("expect Broken {") + 1, 9) is None


def test_examples_still_parse_whole():
    for path in EXAMPLES:
        spec, problems = parse(Path(path).read_text(encoding="utf-8"), path.name)
        assert spec is not None and not spec.unparsed and not problems


def test_a_pasted_python_class_is_one_error_and_the_stacks_after_it_are_checked():
    text = ("import torch.nn as nn\n\nclass Encoder(nn.Module):\n    def __init__(self):\n"
            "        super().__init__()\n        self.rnn = nn.LSTM(80, 256)\n\n"
            "stack Tagger {\n    input_size = 100\n    lstm(hidden_size = 0)\n}\n")
    result = check_text(text, "spec.rnn")
    first, second = result.diagnostics
    assert (first.code, first.span.line, first.span.column) == ("E001", 1, 1)
    assert first.help.startswith("this line is Python: a spec holds `let`, `stack`")
    assert (second.code, second.span.line) == ("E021", 10)
