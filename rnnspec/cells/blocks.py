"""The conditions of a declared cell that one block's sizes must meet: divisibility of
chunks, every dimension in range, one size per state across layers."""

from __future__ import annotations

from rnnspec.cells.registry import Cell, ParameterTemplate
from rnnspec.cells.shapes import MAX_DIMENSION
from rnnspec.language.diagnostics import Diagnostic, Note, Span, error


def block_problems(cell: Cell, sizes_by_layer: list[dict], span: Span) -> list[Diagnostic]:
    """The conditions of a declared cell that fail for one block's sizes: divisibility of
    chunks, and every declared size at least 1."""
    step = cell.step
    if step is None:
        return []
    problems, seen = [], set()
    for sizes in sizes_by_layer:
        for size, divisor, where, text in step.conditions:
            value = size.evaluate(sizes)
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
