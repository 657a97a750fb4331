"""The one table of recurrent cells and their arguments: what the checker validates,
what it derives shapes from, and what the code generator names.

Everything here mirrors `torch.nn.RNNBase`: gate counts, argument names, defaults, rules.
"""

from __future__ import annotations

from typing import NamedTuple


class Cell(NamedTuple):
    name: str  # as written in a spec: `lstm`
    torch_class: str  # `LSTM`
    gates: int  # rows of weight_ih per hidden unit: rnn 1, gru 3, lstm 4
    has_cell_state: bool


CELLS: dict[str, Cell] = {
    "rnn": Cell("rnn", "RNN", 1, False),
    "lstm": Cell("lstm", "LSTM", 4, True),  # gates i, f, g, o, in PyTorch's order
    "gru": Cell("gru", "GRU", 3, False),  # gates r, z, n
}


# Every layer's parameters are listed one by one, so the layer count is bounded (far above
# any real network): a spec cannot make the checker enumerate 10**100 layers.
MAX_LAYERS = 10_000


class ArgumentRule(NamedTuple):
    name: str
    kind: str  # "int", "float", "bool" or "word"
    default: object
    required: bool = False
    minimum: int | float | None = None
    maximum: int | float | None = None
    cells: tuple[str, ...] = tuple(CELLS)
    choices: tuple[str, ...] = ()
    meaning: str = ""


BLOCK_ARGUMENTS: dict[str, ArgumentRule] = {
    rule.name: rule
    for rule in (
        ArgumentRule("hidden_size", "int", None, required=True, minimum=1,
                     meaning="features in the hidden state"),
        ArgumentRule("num_layers", "int", 1, minimum=1, maximum=MAX_LAYERS,
                     meaning="recurrent layers stacked in the block"),
        ArgumentRule("bias", "bool", True, meaning="whether the layers have bias_ih and bias_hh"),
        ArgumentRule("bidirectional", "bool", False, meaning="run a second direction backwards"),
        ArgumentRule("dropout", "float", 0.0, minimum=0.0, maximum=1.0,
                     meaning="dropout on the outputs of every layer but the last"),
        ArgumentRule("nonlinearity", "word", "tanh", cells=("rnn",), choices=("tanh", "relu"),
                     meaning="the activation of a plain RNN"),
        ArgumentRule("proj_size", "int", 0, minimum=0, cells=("lstm",),
                     meaning="project h to this size (0: no projection)"),
        ArgumentRule("input_size", "int", None, minimum=1,
                     meaning="features in; inferred from the previous block when omitted"),
    )
}

class PropertyRule(NamedTuple):
    name: str
    kind: str
    default: object
    required: bool = False
    minimum: int | None = None


STACK_PROPERTIES: dict[str, PropertyRule] = {
    "input_size": PropertyRule("input_size", "int", None, required=True, minimum=1),
    "batch_first": PropertyRule("batch_first", "bool", False),
}

# The keys of an `expect` block: which tensors they describe.
EXPECT_KEYS = ("input", "output", "h0", "c0", "h_n", "c_n")
STATE_KEYS = ("h0", "c0", "h_n", "c_n")
CELL_STATE_KEYS = ("c0", "c_n")
