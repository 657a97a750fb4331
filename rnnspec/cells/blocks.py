"""The conditions of a declared cell that one block's sizes must meet: divisibility of
chunks, every dimension in range, one size per state across layers."""

from __future__ import annotations

from rnnspec.cells.registry import Cell, ParameterTemplate
from rnnspec.cells.shapes import MAX_DIMENSION, Size
from rnnspec.language.diagnostics import Diagnostic, Note, Span, error


def block_problems(cell: Cell, sizes_by_layer: list[dict], span: Span,
                   values: dict | None = None, spans: dict | None = None) -> list[Diagnostic]:
    """The conditions of a declared cell that fail for one block's sizes: its `require`s,
    divisibility of chunks and heads, every declared size at least 1, and its number
    arguments used as probabilities in range."""
    step = cell.step
    if step is None:
        return []
    problems = _probabilities(cell, values or {}, spans or {}, span)
    for layer, sizes in enumerate(sizes_by_layer):
        problems += _requires(cell, layer, sizes, span)
    if problems:
        return problems
    seen: set = set()
    for sizes in sizes_by_layer:
        for size, divisor, where, text in step.conditions:
            value = size.evaluate(sizes)
            if isinstance(divisor, Size):  # `hidden_size // heads`: exact, or an error
                by = divisor.evaluate(sizes)
                if value % by and (size, divisor) not in seen:
                    seen.add((size, divisor))
                    problems.append(error(
                        "E077", f"{text}: {size} = {value} is not a multiple of {divisor} = "
                        f"{by}", span, notes=[Note("the division is here", where)],
                        help=f"choose sizes that make {size} a multiple of {divisor}"))
                continue
            if value % divisor and (size, divisor) not in seen:
                seen.add((size, divisor))  # a chunk and a `//` of one size: one cause
                problems.append(error(
                    "E077", f"{text}: {value} features do not split into {divisor} equal "
                    "pieces", span, notes=[Note("the chunk is here", where)],
                    help=f"choose sizes that make {size} a multiple of {divisor}"))
        for template in (*cell.parameters, *cell.states):
            dims = template.dims if isinstance(template, ParameterTemplate) else (template.size,)
            for dim in dims:
                value = dim.evaluate(sizes)
                if value < 1 or value > MAX_DIMENSION:
                    name = getattr(template, "role", getattr(template, "name", ""))
                    shown = value if abs(value) < 10**20 else \
                        f"a number of {len(str(value))} digits"
                    problems.append(error(
                        "E077", f"`{name}` of cell `{cell.name}` would have a dimension "
                        f"{dim} = {shown}", span,
                        notes=[Note(f"`{name}` is declared here", cell.span)],
                        help=None if value < 1 else
                        f"PyTorch sizes are int64, at most {MAX_DIMENSION:,}"))
        if problems:
            return problems  # one layer's sizes are enough to show the problem
    first, *later = sizes_by_layer
    for state in cell.states:
        for sizes in later:  # states are stacked over layers: one size for all of them
            if state.size.evaluate(sizes) != state.size.evaluate(first):
                problems.append(error(
                    "E077", f"state `{state.name}` of cell `{cell.name}` is "
                    f"{state.size} = {state.size.evaluate(first)} in layer 0 but "
                    f"{state.size.evaluate(sizes)} in the layers after it", span,
                    notes=[Note(f"cell `{cell.name}` is declared here", cell.span)],
                    help="the states of all layers are stacked into one tensor: size a "
                         "state by `hidden_size` and the cell's arguments, not by "
                         "`input_size`, or use one layer"))
    return problems


def _requires(cell: Cell, layer: int, sizes: dict, span: Span) -> list[Diagnostic]:
    """The `require`s of a cell that one layer's sizes break (error at the block, note at
    the `require`)."""
    problems = []
    for left, right, where, text in cell.step.requires:
        a, b = left.evaluate(sizes), right.evaluate(sizes)
        if a != b:
            later = ("" if layer == 0 else
                     f" in layer {layer}, which reads {sizes['input_size']} features (the "
                     "directions of the previous layer's first state)")
            shown = ", ".join(f"{name} = {sizes[name]}" for name in
                              sorted((left.names | right.names) & sizes.keys()))
            problems.append(error(
                "E079", f"cell `{cell.name}` requires {left} == {right}, but {a} != {b}"
                f"{later}", span, notes=[Note(f"`{text}` is here ({shown})", where)],
                help="choose sizes that meet it" + (
                    ", or use one layer" if layer else "")))
    return problems


def _probabilities(cell: Cell, values: dict, spans: dict, span: Span) -> list[Diagnostic]:
    """Number arguments used as a `dropout`'s probability must be in [0, 1)."""
    problems, seen = [], set()
    for name, where in cell.step.probabilities:
        value = values.get(name)
        if name in seen or not isinstance(value, float) or 0.0 <= value < 1.0:
            continue
        seen.add(name)
        problems.append(error(
            "E021", f"`{name}` is the probability of a `dropout` of cell `{cell.name}`: it "
            f"must be in [0, 1), found {value:g}", spans.get(name, span),
            notes=[Note("the `dropout` is here", where)]))
    return problems
