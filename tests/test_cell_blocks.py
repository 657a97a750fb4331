"""Blocks of declared cells: their arguments are checked like a built-in block's, even
when the cell's own body has an error (that is a separate mistake)."""

from __future__ import annotations

from rnnspec import check_source

BROKEN = """cell Mine {
    state h[hidden_size]
    param weight_ih[3 * hidden_size, input_size]
    param weight_hh[3 * hidden_size, hidden_size]
    r, z = chunk(weight_ih @ x + weight_hh @ h, 3)
    h = (1 - z) * h + z * tanh(r)
}

stack S {
    input_size = 10
    Mine(hidden_size = 8, bias = false)
    Mine(16, 8)
}
"""


def _errors(text):
    return [(d.code, d.span.line, d.span.column, d.help)
            for d in check_source(text, "blocks.rnn").diagnostics if d.is_error]


def test_a_broken_cell_and_its_blocks_wrong_arguments_are_separate_errors():
    errors = _errors(BROKEN)
    assert [e[:3] for e in errors] == [("E073", 5, 49), ("E034", 11, 27), ("E038", 12, 10),
                                       ("E038", 12, 14)]


def test_positional_arguments_of_a_declared_cell_get_pytorchs_names():
    fixed = BROKEN.replace("r, z = chunk(weight_ih @ x + weight_hh @ h, 3)",
                           "r, z = chunk(weight_ih @ x + weight_hh @ h, 2)")
    fixed = fixed.replace("[3 * hidden_size", "[2 * hidden_size")
    errors = _errors(fixed)
    assert [e[0] for e in errors] == ["E034", "E038", "E038"]
    assert "`input_size = 16`" in errors[1][3] and "`hidden_size = 8`" in errors[2][3]


def test_a_cell_may_not_take_a_built_in_name_in_any_case():
    text = "cell LSTM {\n    state h[hidden_size]\n    h = tanh(h)\n}\n"
    assert [e[0] for e in _errors(text)] == ["E012"]


def test_two_matrices_and_a_parameter_as_eps_are_named_as_such():
    text = ("cell C {\n    state h[hidden_size]\n"
            "    param W[hidden_size, hidden_size], V[hidden_size, input_size], g[hidden_size]\n"
            "    h = layer_norm(W @ V @ x, g, g, g)\n}\n")
    errors = _errors(text)
    assert [(e[0], e[1], e[2]) for e in errors] == [("E072", 4, 22), ("E074", 4, 37)]
    assert "`W @ (V @ v)`" in errors[0][3]
