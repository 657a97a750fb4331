"""The checked model: every stack with its entries, parameters, states and output.

The report and the code generator read only this; shapes are derived once, in `check`.
A dimension is an int, the symbol "B" (batch), or the time axis: a `cells.shapes.Time`,
an expression in the input's length that prints, compares and hashes as its formula (`T`
today, for every entry).

A stack's `entries` are `Block`s (recurrent: a cell run over time, with states) and
`Layer`s (not recurrent: no states; the language has no layer kinds yet). Consumers read an
entry through `Entry`, the protocol both keep, and ask `entry.recurrent` only for what is
a block's own (its cell, its arguments' meaning).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from rnnspec.language.diagnostics import Diagnostic, Span
from rnnspec.records import Record

Dim = int | str
Shape = tuple[Dim, ...]


class CellSpec(Protocol):
    """What the model reads of a cell's record (`rnnspec.cells.registry.Cell`, which
    imports this module; the model imports nothing from the registry)."""

    @property
    def name(self) -> str: ...
    @property
    def rules(self) -> Mapping: ...  # argument name -> its rule (with a `default`)
    @property
    def states(self) -> Sequence: ...  # each with a `name` and a `size`
    @property
    def positional(self) -> bool: ...  # the built-in cells: PyTorch's positional arguments


# How a block's summary line shows an argument that is not at its default, in this order.
SUMMARY = (
    ("bidirectional", lambda v: "bidirectional"),
    ("proj_size", lambda v: f"projected to {v}"),
    ("nonlinearity", lambda v: v),
    ("dropout", lambda v: f"dropout {v:g}"),
    ("bias", lambda v: "no bias"),
    ("merge", lambda v: f"merge {v}"),
    ("residual", lambda v: "residual"),
    ("recurrent_dropout", lambda v: f"recurrent dropout {v:g}"),
    ("zoneout", lambda v: f"zoneout {v:g}"),
    ("weight_dropout", lambda v: f"weight dropout {v:g}"),
    ("reverse", lambda v: "reverse"),
    ("initial_state", lambda v: f"{v} initial states"),
)


def numel(shape: tuple[int, ...]) -> int:
    """The element count of a tensor of `shape`."""
    count = 1
    for dim in shape:
        count *= dim
    return count


class Parameter(Record):
    name: str  # PyTorch's: weight_ih_l0_reverse
    role: str  # the cell's name for it: weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, ...
    layer: int
    reverse: bool
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return numel(self.shape)


class Buffer(Record):
    """A tensor an entry keeps that training does not update (a norm's running mean)."""

    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return numel(self.shape)


def final_key(initial: str) -> str:
    """A state's final value's key from its initial value's: `h0` -> `h_n`."""
    return initial.removesuffix("0") + "_n"


def _time(output: Shape) -> Dim:
    """The time axis of a sequence shape: `[T, B, F]` or `[B, T, F]` (unbatched `[T, F]`)."""
    return next(dim for dim in output[:-1] if dim != "B")


class Entry(Protocol):
    """What every consumer reads of a stack's entry, a `Block` or a `Layer`."""

    @property
    def name(self) -> str: ...
    @property
    def span(self) -> Span | None: ...
    @property
    def recurrent(self) -> bool: ...  # a Block: a cell run over time, with states
    @property
    def input_size(self) -> int: ...
    @property
    def output_size(self) -> int: ...
    @property
    def output(self) -> Shape: ...
    @property
    def states(self) -> Mapping[str, Shape]: ...  # `h0`, `c0`, ...; empty for a layer
    @property
    def parameters(self) -> tuple[Parameter, ...]: ...
    @property
    def buffers(self) -> tuple[Buffer, ...]: ...
    @property
    def parameter_count(self) -> int: ...
    @property
    def time(self) -> Dim: ...  # the output's time axis, as its input's time: `T`
    @property
    def summary(self) -> str: ...
    @property
    def merge(self) -> str | None: ...  # how two directions combine, when not concatenated
    @property
    def residual(self) -> bool: ...  # the entry's input is added to its output


class Source(Record):
    """What an entry reads when it says `from = ...`: one earlier entry or stack input
    (`mode` "name"), or several joined (`concat`: features add; `sum`: equal features)."""

    mode: str  # "name", "concat" or "sum"
    parts: tuple[str, ...]  # earlier entries, `input`, or side inputs
    span: Span


class SideInput(Record):
    """`NAME = input(size)`: a second input of the stack, `[T, B, size]` (or `[B, size]`,
    one vector per sequence, with `over = sequence`), passed to forward by keyword."""

    name: str
    size: int
    per_sequence: bool
    span: Span
    shape: Shape


class Layer(Record):
    """A stack entry that is not recurrent (linear, norms, convolutions, pools, heads):
    parameters and buffers, no states (language reference, section 10)."""

    name: str
    kind: str  # the layer as written: `linear`, `layer_norm`, ...
    position: int  # among all entries of the stack
    span: Span
    input_size: int
    output_size: int
    arguments: dict  # every argument's value, defaults included
    argument_spans: dict  # argument name -> where `name = value` was written
    parameters: tuple[Parameter, ...]
    buffers: tuple[Buffer, ...]
    output: Shape
    parameter_count: int
    kind_span: Span | None = None  # where the kind's name is written
    source: Source | None = None  # `from = ...`; None: the previous entry's output
    grid_in: tuple[int, int] | None = None  # a 2-D run's (channels, bins) read, if any
    grid: tuple[int, int] | None = None  # (channels, bins) produced inside a 2-D run
    input_time: Dim | None = None  # the time axis read (None: after `pool`)

    recurrent = False

    @property
    def states(self) -> dict[str, Shape]:
        return {}


    @property
    def time(self) -> Dim | None:
        """The output's time axis (None after `pool`)."""
        return None if len(self.output) == 2 else _time(self.output)

    @property
    def changes_time(self) -> bool:
        return self.input_time != self.time

    @property
    def summary(self) -> str:
        text = f"{self.kind}, {self.input_size} -> {self.output_size}"
        if self.grid is not None:
            channels, bins = self.grid
            text += f" ({channels} channels * {bins} bins)"
        if self.time is not None and self.changes_time:
            text += f", time {self.time}"
        return text

    merge = None  # one direction

    @property
    def residual(self) -> bool:
        return bool(self.arguments.get("residual", False))


class Block(Record):
    name: str
    cell: str  # the cell as written: `lstm`, or a declared cell's name
    spec: CellSpec  # the cell's record (rnnspec.cells.registry.Cell)
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
    cell_span: Span | None = None  # where the cell's name is written (`lstm` in `x = lstm(...)`)
    source: Source | None = None  # `from = ...`; None: the previous entry's output

    recurrent = True
    grid = None  # blocks read and produce sequences of vectors

    @property
    def buffers(self) -> tuple[Buffer, ...]:
        return ()

    @property
    def time(self) -> Dim:
        return _time(self.output)

    @property
    def merge(self) -> str | None:
        """`sum`, `mean` or `mul` for a bidirectional block that combines its directions
        (language section 9); None when they are concatenated (or there is one)."""
        merge = self.arguments.get("merge", "concat")
        return merge if self.bidirectional and merge != "concat" else None

    @property
    def residual(self) -> bool:
        return bool(self.arguments.get("residual", False))

    @property
    def reverse(self) -> bool:
        """`reverse = true`: the block's one direction runs backwards (section 11)."""
        return bool(self.arguments.get("reverse", False))

    @property
    def learned_states(self) -> bool:
        """`initial_state = learned`: parameters `h0_l0`, ... start what `hx` leaves out."""
        return self.arguments.get("initial_state", "zeros") == "learned"

    @property
    def weights(self) -> tuple[Parameter, ...]:
        """The parameters of the layers' steps: every parameter but the learned initial
        states."""
        learned = {f"{state}0" for state in self.state_names} if self.learned_states else ()
        return tuple(p for p in self.parameters if p.role not in learned)

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
        parts = [f"{self.input_size} -> {self.hidden_size}",
                 f"{self.num_layers} layer{'s' if self.num_layers != 1 else ''}"]
        rules = self.spec.rules
        for argument, describe in SUMMARY:
            if argument in rules and self.arguments[argument] != rules[argument].default:
                parts.append(describe(self.arguments[argument]))
        return ", ".join(parts)


class Stack(Record):
    name: str
    path: str
    span: Span
    input_size: int
    batch_first: bool
    entries: tuple[Block | Layer, ...]  # in order; each reads the one before's output
    input: Shape
    output: Shape
    parameter_count: int
    input_size_span: Span | None = None
    side_inputs: tuple[SideInput, ...] = ()
    min_input_time: int = 1  # the shortest input every entry accepts (`needs T >= 11`)
    ids: bool = False  # the first entry is `embedding`: the input is integer ids `[T, B]`

    @property
    def blocks(self) -> tuple[Block, ...]:
        """The recurrent entries."""
        return tuple(entry for entry in self.entries if entry.recurrent)

    @property
    def output_size(self) -> int:
        return self.entries[-1].output_size


class ExpectationResult(Record):
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
                 "tree", "values", "partial")

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
        self.partial: dict = {}  # stacks that failed: (batch_first, {index: entry that derived})

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
