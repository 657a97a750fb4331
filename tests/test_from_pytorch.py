"""Specs written from PyTorch code (issue 13): calls copied as they are, a forgotten
`batch_first`, expectations that say what they bound."""

from __future__ import annotations

import pytest

from rnnspec.check.checker import check_text


def _diagnostics(text: str):
    return check_text(text, "spec.rnn").diagnostics


def _stack(line: str) -> str:
    return f"stack Net {{\n    input_size = 3\n    {line}\n}}\n"


@pytest.mark.parametrize(("call", "written", "rewrite", "prefix"), [
    ("nn.LSTM(3, 8)", "nn.LSTM", "lstm(3, 8)", "nn."),
    ("torch.nn.GRU(3, 8, 2)", "torch.nn.GRU", "gru(3, 8, 2)", "torch.nn."),
    ("encoder = nn.RNN(3, 8)", "nn.RNN", "encoder = rnn(3, 8)", "nn."),
    ("nn . LSTM (3, 8)", "nn.LSTM", "lstm(3, 8)", "nn."),
])
def test_a_torch_call_names_the_cell_to_write(call, written, rewrite, prefix):
    (diagnostic,) = _diagnostics(_stack(call))
    assert diagnostic.code == "E033"
    assert diagnostic.message == f"unknown cell `{written}`"
    assert diagnostic.help == (f"write `{rewrite}`: rnnspec's cells are lowercase, "
                               f"without `{prefix}`")
    line = f"    {call}"
    assert diagnostic.span.line == 3
    # the caret is under the whole `nn.LSTM` as written, and nothing else
    assert line[diagnostic.span.column - 1:diagnostic.span.end_column - 1].replace(" ", "") \
        == written


# PyTorch calls as models write them, keyword arguments, Python's booleans and strings, a
# call over several lines, `self.` before the name
PASTED = [
    "self.rnn = nn.LSTM(input_size=3, hidden_size=8, num_layers=2, batch_first=True)",
    "self.gru = torch.nn.GRU(\n        input_size=3, hidden_size=16,\n        num_layers=2,"
    "\n        dropout=0.4, bidirectional=True)",
    "encoder = nn.RNN(3, 8, 1, 'relu', bias=False)",
    "nn.LSTM(3, 12, proj_size=5)",
]


@pytest.mark.parametrize("pasted", PASTED)
def test_the_help_writes_the_pasted_call_in_rnnspec(pasted):
    """The call in the help, put in place of the pasted one, checks clean and has the
    parameters of the torch module that the pasted call builds."""
    import re

    torch = pytest.importorskip("torch")
    text = _stack(pasted)
    if "batch_first=True" in pasted:  # the stack agrees, as the guide says to write it
        text = text.replace("    input_size = 3\n", "    input_size = 3\n    batch_first = true\n")
    (diagnostic,) = _diagnostics(text)
    assert diagnostic.code == "E033"
    rewrite = re.fullmatch(r"write `([^`]+)`: .*", diagnostic.help).group(1)
    result = check_text(text.replace(pasted, rewrite), "spec.rnn")
    assert result.diagnostics == []
    (block,) = result.stacks[0].blocks
    call = pasted.split("=", 1)[1] if pasted.split("(")[0].count("=") else pasted
    module = eval(call.strip(), {"nn": torch.nn, "torch": torch})  # noqa: S307 - our text
    assert [(p.name, p.shape) for p in block.parameters] == [
        (name, tuple(value.shape)) for name, value in module.named_parameters()]


def test_lowercasing_the_copied_call_gives_a_working_spec():
    text = _stack("nn.LSTM(3, 8, 2)")
    assert _diagnostics(text)[0].code == "E033"
    assert _diagnostics(text.replace("nn.LSTM", "lstm")) == []


def test_other_torch_modules_are_unknown_cells_without_a_cell_to_write():
    (diagnostic,) = _diagnostics(_stack("nn.Linear(3, 8)"))
    assert diagnostic.code == "E033" and "`nn.Linear`" in diagnostic.message
    assert "write" not in diagnostic.help


@pytest.mark.parametrize("text", ["let x = 3 .5\n", "let x = nn.size\n", "let x = 2.\n"])
def test_other_points_stay_unexpected_characters(text):
    (diagnostic,) = _diagnostics(text)
    assert diagnostic.code == "E002" and "`.`" in diagnostic.message


# ----------------------------------------------------------------------------- batch_first

def _expect(stack_lines: str, expect_lines: str) -> str:
    return (f"stack Net {{\n    input_size = 60\n{stack_lines}\n}}\n"
            f"expect Net {{\n{expect_lines}\n}}\n")


LSTM = "    lstm(hidden_size = 128, num_layers = 2, bidirectional = true)"


def test_a_forgotten_batch_first_is_named_with_the_output_that_mirrors_it():
    text = _expect(LSTM, "    input = [32, 589, 60]\n    output = [32, 589, 256]\n"
                         "    h_n = [4, 32, 128]")
    (diagnostic,) = _diagnostics(text)
    assert diagnostic.code == "E044"
    assert "looks batch-first" in diagnostic.help
    assert "set `batch_first = true` in stack `Net`" in diagnostic.help
    (note,) = diagnostic.notes
    assert note.message == "`output` is written batch-first too" and note.span.line == 7


def test_the_batch_first_hint_holds_for_every_state_and_needs_no_output():
    text = _expect(LSTM, "    input = [32, 589, 60]\n    c_n = [4, 32, 128]")
    (diagnostic,) = _diagnostics(text)
    assert "looks batch-first" in diagnostic.help and not diagnostic.notes


def test_a_time_first_input_in_a_batch_first_stack_is_named():
    text = _expect("    batch_first = true\n    gru(hidden_size = 8)",
                   "    input = [589, 32, 60]\n    h_n = [1, 32, 8]")
    (diagnostic,) = _diagnostics(text)
    assert "looks time-first" in diagnostic.help and "[B, T, features]" in diagnostic.help


@pytest.mark.parametrize("expect", [
    # the batch is neither input dimension: another mistake, not the layout
    "    input = [32, 589, 60]\n    h_n = [4, 7, 128]",
    # both input dimensions are equal: nothing to tell them apart
    "    input = [32, 32, 60]\n    h_n = [4, 16, 128]",
])
def test_no_layout_hint_without_evidence(expect):
    (diagnostic,) = _diagnostics(_expect(LSTM, expect))
    assert diagnostic.code == "E044"
    assert "batch-first" not in (diagnostic.help or "")


# ----------------------------------------------------------------------------- bindings


def test_expectations_say_what_they_bound():
    from rnnspec.check.report import json_document, text_report
    from rnnspec.language.diagnostics import Style

    text = _expect(LSTM, "    input = [100, 32, 60]") + "expect Net {\n    input = [_, 60]\n}\n" \
        + "expect Net {\n    input = [3, 60, 60]\n    h_n = [1, 60, 128]\n}\n"
    result = check_text(text, "spec.rnn")
    report = text_report([result], Style(False))
    assert "spec.rnn:5: Net: ok (T = 100, B = 32)" in report
    assert "spec.rnn:8: Net: ok (T = _)" in report
    assert "spec.rnn:11: Net: FAILED (T = 3, B = 60)" in report
    entries = json_document([result])["expectations"]
    assert [e["bindings"] for e in entries] == [{"T": 100, "B": 32}, {"T": None},
                                                {"T": 3, "B": 60}]


def test_an_expectation_that_binds_nothing_shows_no_bindings():
    from rnnspec.check.report import json_document, text_report
    from rnnspec.language.diagnostics import Style

    # four dimensions: which of them is T or B is unknown
    result = check_text(_expect(LSTM, "    input = [100, 32, 1, 60]"), "spec.rnn")
    assert [d.code for d in result.diagnostics] == ["E043"]
    assert "spec.rnn:5: Net: FAILED\n" in text_report([result], Style(False))
    assert json_document([result])["expectations"][0]["bindings"] == {}


def test_wrong_features_still_bind_time_and_batch():
    from rnnspec.check.report import json_document

    result = check_text(_expect(LSTM, "    input = [100, 32, 61]"), "spec.rnn")
    assert [d.code for d in result.diagnostics] == ["E044"]
    assert json_document([result])["expectations"][0]["bindings"] == {"T": 100, "B": 32}


# ----------------------------------------------------------------------------- the guide


def _guide_specs(title: str) -> list[str]:
    from conftest import ROOT

    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    chapter = text.split(f"\n{title}\n", 1)[1].split("\n## ", 1)[0]
    blocks = chapter.split("```")[1::2]
    return [b.lstrip("\n") for b in blocks if not b.startswith("python") and "stack" in b]


@pytest.mark.parametrize("title", ["## From PyTorch code to a spec", "### Conditions"])
def test_the_guides_specs_check_clean(title):
    specs = _guide_specs(title)
    assert specs
    for text in specs:
        result = check_text(text, "guide.rnn")
        assert result.ok and not result.diagnostics, (text, result.diagnostics)


def test_the_guides_side_by_side_calls_build_what_the_specs_describe():
    """Each PyTorch call of the chapter's table, built with torch, has the parameters of
    the spec beside it."""
    torch = pytest.importorskip("torch")
    from conftest import ROOT

    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    chapter = text.split("\n## From PyTorch code to a spec\n", 1)[1].split("\n## ", 1)[0]
    calls = [b[len("python"):] for b in chapter.split("```")[1::2] if b.startswith("python")]
    specs = _guide_specs("## From PyTorch code to a spec")
    assert len(calls) == len(specs) == 3
    for call, spec in zip(calls, specs, strict=True):
        namespace = {"nn": torch.nn, "torch": torch}
        lines = [line for line in call.strip().splitlines() if not line.startswith("#")]
        source = "\n".join(lines).replace("self.", "")
        exec(source, namespace)  # noqa: S102 - the guide's own example
        built = [v for k, v in namespace.items() if k not in ("nn", "torch", "n")][-1]
        modules = built if isinstance(built, list) else [built]
        (stack,) = check_text(spec, "guide.rnn").stacks
        for module, block in zip(modules, stack.blocks, strict=True):
            assert [(p.name, p.shape) for p in block.parameters] == [
                (name, tuple(value.shape)) for name, value in module.named_parameters()]
