"""The checked model: every stack with its blocks, parameters, states and output.

The report and the code generator read only this; shapes are derived once, in `check`.
A dimension is an int, or the symbol "T" (time) or "B" (batch).
"""

from __future__ import annotations

from typing import NamedTuple

from .diagnostics import Diagnostic, Span

Dim = int | str
Shape = tuple[Dim, ...]


def format_shape(dims) -> str:
    """`[T, B, 20]`; a dimension that may be anything (None) prints as `_`."""
    return "[" + ", ".join("_" if d is None else str(d) for d in dims) + "]"


class Parameter(NamedTuple):
    name: str  # PyTorch's: weight_ih_l0_reverse
    role: str  # weight_ih, weight_hh, bias_ih, bias_hh or weight_hr
    layer: int
    reverse: bool
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


class Block(NamedTuple):
    name: str
    cell: str  # rnn, lstm or gru
    torch_class: str  # RNN, LSTM or GRU
    position: int  # among all blocks of the stack
    span: Span
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    bias: bool
    dropout: float
    proj_size: int
    nonlinearity: str | None  # rnn only
    gates: int
    num_directions: int
    state_size: int  # the width of h: proj_size if projecting, else hidden_size
    output_size: int  # num_directions * state_size
    parameters: tuple[Parameter, ...]
    states: dict[str, Shape]  # h0 (and c0 for lstm); h_n and c_n have the same shapes
    output: Shape
    parameter_count: int

    @property
    def has_cell_state(self) -> bool:
        return "c0" in self.states

    @property
    def summary(self) -> str:
        """`20 -> 50, 2 layers, bidirectional`: the block in words, for reports and docs."""
        parts = [f"{self.input_size} -> {self.hidden_size}",
                 f"{self.num_layers} layer{'s' if self.num_layers != 1 else ''}"]
        if self.bidirectional:
            parts.append("bidirectional")
        if self.proj_size:
            parts.append(f"projected to {self.proj_size}")
        if self.nonlinearity == "relu":
            parts.append("relu")
        if self.dropout:
            parts.append(f"dropout {self.dropout:g}")
        if not self.bias:
            parts.append("no bias")
        return ", ".join(parts)


class Stack(NamedTuple):
    name: str
    path: str
    span: Span
    input_size: int
    batch_first: bool
    blocks: tuple[Block, ...]
    input: Shape
    output: Shape
    parameter_count: int
    input_size_span: Span | None = None

    @property
    def output_size(self) -> int:
        return self.blocks[-1].output_size


class ExpectationResult(NamedTuple):
    stack: str
    path: str
    line: int
    ok: bool


class CheckedFile:
    """One file's outcome: its stacks, expectations and diagnostics."""

    __slots__ = ("path", "text", "stacks", "expectations", "diagnostics", "readable")

    def __init__(self, path: str, text: str, stacks=None, expectations=None, diagnostics=None,
                 readable: bool = True):
        self.path = path
        self.text = text
        self.stacks: list[Stack] = stacks or []
        self.expectations: list[ExpectationResult] = expectations or []
        self.diagnostics: list[Diagnostic] = diagnostics or []
        self.readable = readable  # False when the file could not be read (exit status 2)

    @property
    def ok(self) -> bool:
        return self.readable and not any(d.is_error for d in self.diagnostics)
