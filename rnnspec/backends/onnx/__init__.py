"""The ONNX backend and its facts: which ONNX operator runs a built-in cell.

Nothing here imports onnx or numpy; `export` (and the modules it uses) do, when used.
"""

from __future__ import annotations

from rnnspec.backends.base import ONNX, Backend
from rnnspec.records import Record

BACKENDS = (
    Backend("onnx", ONNX, "write an ONNX model of a stack",
            "rnnspec.backends.onnx.export:export"),
)


class OnnxOp(Record):
    """How ONNX's own recurrent operator (`LSTM`, `GRU`, `RNN`) runs a block of a cell."""

    op: str
    gate_order: tuple[int, ...]  # ONNX's k-th gate block of rows is this cell's gate_order[k]
    attributes: tuple[tuple[str, object], ...] = ()  # fixed attributes of the operator
    activation: str | None = None  # the argument naming the activation (`nonlinearity`)
    activations: tuple[tuple[str, str], ...] = ()  # that argument's values -> ONNX's names
    unsupported: tuple[str, ...] = ()  # arguments the operator cannot express when set


# Keyed by the built-in cell's name (rnnspec.cells.registry.BUILTIN_CELLS).
ONNX_OPS: dict[str, OnnxOp] = {
    "rnn": OnnxOp("RNN", (0,), activation="nonlinearity",
                  activations=(("tanh", "Tanh"), ("relu", "Relu"))),
    "lstm": OnnxOp("LSTM", (0, 3, 1, 2), unsupported=("proj_size",)),
    "gru": OnnxOp("GRU", (1, 0, 2), attributes=(("linear_before_reset", 1),)),
}


def onnx_op(cell) -> OnnxOp | None:
    """ONNX's operator for a built-in cell (a `Cell` record); None for declared cells,
    which always run as a `Scan` of their step."""
    return ONNX_OPS.get(cell.name) if cell.positional else None
