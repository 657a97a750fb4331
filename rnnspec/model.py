"""The checked model: every stack with its blocks, parameters, states and output.

The report and the code generator read only this; shapes are derived once, in `check`.
A dimension is an int, or the symbol "T" (time) or "B" (batch).
"""

from __future__ import annotations

from typing import NamedTuple

from rnnspec.language.diagnostics import Diagnostic, Span

Dim = int | str
Shape = tuple[Dim, ...]


class Parameter(NamedTuple):
    name: str  # PyTorch's: weight_ih_l0_reverse
    role: str  # the cell's name for it: weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, ...
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
    cell: str  # the cell as written: `lstm`, or a declared cell's name
    spec: object  # the cell's record (rnnspec.cells.registry.Cell)
    position: int  # among all blocks of the stack
    span: Span
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    dropout: float
    num_directions: int
    state_size: int  # the width of the first state (h): proj_size if projecting, else hidden_size
    output_size: int  # num_directions * state_size
    arguments: dict  # every argument's value, defaults included
    argument_spans: dict  # argument name -> where `name = value` was written
    parameters: tuple[Parameter, ...]
    states: dict[str, Shape]  # `h0` (and `c0`, ...) in the cell's order; `*_n` have the same shapes
    output: Shape
    parameter_count: int

    def _builtin(self, argument: str):
        return self.arguments.get(argument) if argument in self.spec.rules else None

    @property
    def bias(self) -> bool | None:
        return self._builtin("bias")

    @property
    def proj_size(self) -> int | None:
        """0 for the built-in (PyTorch's) cells without a projection, as RNNBase has it;
        None for declared cells."""
        if not self.spec.positional:  # only the built-in cells take PyTorch's arguments
            return None
        return self.arguments.get("proj_size", 0)

    @property
    def nonlinearity(self) -> str | None:
        return self._builtin("nonlinearity")

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(state.name for state in self.spec.states)

    @property
    def summary(self) -> str:
        """`20 -> 50, 2 layers, bidirectional`: the block in words, for reports and docs."""
        from rnnspec.cells.registry import SUMMARY

        parts = [f"{self.input_size} -> {self.hidden_size}",
                 f"{self.num_layers} layer{'s' if self.num_layers != 1 else ''}"]
        rules = self.spec.rules
        for argument, describe in SUMMARY:
            if argument in rules and self.arguments[argument] != rules[argument].default:
                parts.append(describe(self.arguments[argument]))
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
    # what `input` bound: {"T": 100, "B": 32} ({"T": 100} unbatched; None for `_`); empty
    # when nothing was bound (no input, or an input that failed)
    bindings: dict | None = None


class CheckedFile:
    """One file's outcome: its stacks, expectations and diagnostics."""

    __slots__ = ("path", "text", "stacks", "cells", "expectations", "diagnostics", "readable",
                 "tree", "values")

    def __init__(self, path: str, text: str, stacks=None, expectations=None, diagnostics=None,
                 readable: bool = True):
        self.path = path
        self.text = text
        self.stacks: list[Stack] = stacks or []
        self.cells: list = []  # the file's own cells (rnnspec.cells.registry.Cell), in order
        self.expectations: list[ExpectationResult] = expectations or []
        self.diagnostics: list[Diagnostic] = diagnostics or []
        self.readable = readable  # False when the file could not be read (exit status 2)
        self.tree = None  # the parsed file (language.ast.SpecFile); None if it did not parse
        self.values: dict = {}  # every constant's checked value, by name (POISON where it failed)

    @property
    def ok(self) -> bool:
        return self.readable and not any(d.is_error for d in self.diagnostics)


def format_bytes(count: int) -> str:
    """A byte count in binary units: `135.9 KiB`."""
    value = float(count) if count < 2**1000 else float("inf")
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            break
        value /= 1024
    if value == float("inf"):
        return "more than any machine has"
    return f"{int(value)} B" if unit == "B" else f"{value:,.1f} {unit}"
