"""The built-in cells' steps as equations of the cell language (docs/reference.md,
section 8), with the variants PyTorch has: biases or none, an LSTM's `proj_size`
(`weight_hr`), an RNN's `nonlinearity`, and GRU's `r * (W_hn h + b_hn)`.

Each variant is one text, checked once by the cell checker on first use (never by
`rnnspec check`: nothing on the check path imports this module) into the same `Step` a
user cell has. Parameters are declared in `torch.nn.RNNBase`'s order, so a step's
`params` are PyTorch's and state-dict keys stay PyTorch's.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from rnnspec.cells.registry import Cell
from rnnspec.records import Record

_BIASES = "    param bias_ih[{rows}], bias_hh[{rows}]\n"


def _rnn(bias: bool, nonlinearity: str) -> str:
    biases = " + bias_ih" if bias else "", " + bias_hh" if bias else ""
    return (
        "cell rnn {\n"
        "    state h[hidden_size]\n"
        "    param weight_ih[hidden_size, input_size], weight_hh[hidden_size, hidden_size]\n"
        + (_BIASES.format(rows="hidden_size") if bias else "")
        + f"    h = {nonlinearity}(weight_ih @ x{biases[0]} + weight_hh @ h{biases[1]})\n"
        "}\n")


def _lstm(bias: bool, projected: bool) -> str:
    out = "proj_size" if projected else "hidden_size"
    b_ih, b_hh = (" + bias_ih", " + bias_hh") if bias else ("", "")
    h = "weight_hr @ (sigmoid(go) * tanh(c))" if projected else "sigmoid(go) * tanh(c)"
    return (
        f"cell lstm{'(proj_size)' if projected else ''} {{\n"
        f"    state h[{out}], c[hidden_size]\n"
        "    param weight_ih[4 * hidden_size, input_size]\n"
        f"    param weight_hh[4 * hidden_size, {out}]\n"
        + (_BIASES.format(rows="4 * hidden_size") if bias else "")
        + ("    param weight_hr[proj_size, hidden_size]\n" if projected else "")
        + f"    gi, gf, gg, go = chunk(weight_ih @ x{b_ih} + weight_hh @ h{b_hh}, 4)\n"
        "    c = sigmoid(gf) * c + sigmoid(gi) * tanh(gg)\n"
        f"    h = {h}\n"
        "}\n")


def _gru(bias: bool) -> str:
    b_ih, b_hh = (" + bias_ih", " + bias_hh") if bias else ("", "")
    return (
        "cell gru {\n"
        "    state h[hidden_size]\n"
        "    param weight_ih[3 * hidden_size, input_size]\n"
        "    param weight_hh[3 * hidden_size, hidden_size]\n"
        + (_BIASES.format(rows="3 * hidden_size") if bias else "")
        + f"    xr, xz, xn = chunk(weight_ih @ x{b_ih}, 3)\n"
        f"    hr, hz, hn = chunk(weight_hh @ h{b_hh}, 3)\n"
        "    r = sigmoid(xr + hr)\n"
        "    z = sigmoid(xz + hz)\n"
        "    n = tanh(xn + r * hn)\n"
        "    h = (1 - z) * n + z * h\n"
        "}\n")


def _biases(bias: bool) -> str:
    return "with biases" if bias else "no biases"


class _Builtin(Record):
    """One built-in cell's equations: which block arguments choose its variant (the flags,
    after `bias`), the text of a variant, and a variant in words for its step class."""

    flags: Callable[[dict], tuple]
    text: Callable[..., str]
    words: Callable[..., str]


_BUILTINS = {
    "rnn": _Builtin(lambda a: (a.get("nonlinearity", "tanh"),), _rnn,
                    lambda bias, nonlinearity: f"{_biases(bias)}, {nonlinearity}"),
    "lstm": _Builtin(lambda a: (bool(a.get("proj_size")),), _lstm,
                     lambda bias, projected: _biases(bias) + (", proj_size" if projected else "")),
    "gru": _Builtin(lambda a: (), _gru,
                    lambda bias: f"{_biases(bias)}, r applied after the recurrent projection"),
}


def variant(cell: Cell, arguments: dict) -> tuple:
    """The arguments of a block that choose its built-in cell's step, as a hashable key."""
    if cell.name not in _BUILTINS:
        raise KeyError(f"`{cell.name}` is not a built-in cell")
    return (cell.name, bool(arguments.get("bias", True)), *_BUILTINS[cell.name].flags(arguments))


def describe(key: tuple) -> str:
    """A variant (a `variant` key) in words: `with biases, proj_size`."""
    name, *flags = key
    return _BUILTINS[name].words(*flags)


def text(key: tuple) -> str:
    """The equations of one variant (a `variant` key), as a `cell` item."""
    name, *flags = key
    return _BUILTINS[name].text(*flags)


@cache
def checked(key: tuple) -> Cell:
    """One variant checked by the cell checker: a user cell's record, `step` included."""
    from rnnspec.cells.equations import check_cell
    from rnnspec.check.evaluate import Evaluator
    from rnnspec.language.diagnostics import Sink
    from rnnspec.language.parse import parse

    source = text(key)
    spec, problems = parse(source, f"<{key[0]} step>")
    sink = Sink()
    cell = None
    if spec is not None and not problems:
        cell, _ = check_cell(spec.cells[0], Evaluator({}, sink), sink)
    if cell is None or list(sink):
        found = [*problems, *sink]
        raise ValueError(f"the step of `{key[0]}` does not check: "
                         + "; ".join(d.message for d in found))
    return cell


def step(cell: Cell, arguments: dict):
    """The checked `Step` of a built-in cell for a block's argument values."""
    return checked(variant(cell, arguments)).step
