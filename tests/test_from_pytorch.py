"""Specs written from PyTorch code (issue 13): calls copied as they are, a forgotten
`batch_first`, expectations that say what they bound."""

from __future__ import annotations

import pytest

from rnnspec.check import check_text


def _diagnostics(text: str):
    return check_text(text, "spec.rnn").diagnostics


def _stack(line: str) -> str:
    return f"stack Net {{\n    input_size = 3\n    {line}\n}}\n"


@pytest.mark.parametrize(("call", "written", "cell", "prefix"), [
    ("nn.LSTM(3, 8)", "nn.LSTM", "lstm", "nn."),
    ("torch.nn.GRU(3, 8, 2)", "torch.nn.GRU", "gru", "torch.nn."),
    ("encoder = nn.RNN(3, 8)", "nn.RNN", "rnn", "nn."),
    ("nn . LSTM (3, 8)", "nn.LSTM", "lstm", "nn."),
])
def test_a_torch_call_names_the_cell_to_write(call, written, cell, prefix):
    (diagnostic,) = _diagnostics(_stack(call))
    assert diagnostic.code == "E033"
    assert diagnostic.message == f"unknown cell `{written}`"
    assert diagnostic.help == (f"write `{cell}(...)`: rnnspec's cells are lowercase, "
                               f"without `{prefix}`")
    line = f"    {call}"
    assert diagnostic.span.line == 3
    # the caret is under the whole `nn.LSTM` as written, and nothing else
    assert line[diagnostic.span.column - 1:diagnostic.span.end_column - 1].replace(" ", "") \
        == written


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
