"""Numbers in a cell's equations are checked at `check` (issue 19): a whole number beyond
int64 or any number beyond float32, and `/` by a zero number, are located errors; every
number check accepts runs in both torch backends."""

from __future__ import annotations

import pytest
from user_cells import built

from rnnspec import check_source

CELL = """cell Num {{
    state h[hidden_size]
    param w[hidden_size, input_size]
    h = tanh(w @ x + {0})
}}
stack S {{
    input_size = 3
    Num(hidden_size = 4)
}}
"""


@pytest.mark.parametrize("expr, code", [
    ("h * 99999999999999999999", "E023"), ("h * 1" + "0" * 400, "E023"), ("h * 1e39", "E023"),
    ("h * (4000000000 * 4000000000)", "E023"), ("h / 0", "E022"), ("h * (1 / 0)", "E022"),
    ("h / (2 - 2.0)", "E022")])
def test_numbers_torch_cannot_use_are_errors(expr, code):
    result = check_source(CELL.format(expr), "n.rnn")
    assert [(d.code, d.span.line) for d in result.diagnostics] == [(code, 4)]


@pytest.mark.parametrize("expr", ["h * 9223372036854775807", "h * 3e38", "h / 0.5",
                                  "h * 4000000000 * 4000000000"])
@pytest.mark.parametrize("backend", ["fused", "explicit"])
def test_numbers_check_accepts_run(expr, backend):
    torch = pytest.importorskip("torch")
    module, _ = built(CELL.format(expr), backend, "cpu", "S", "n.rnn")
    output = module(torch.randn(5, 2, 3))[0]
    assert output.shape == (5, 2, 4)
