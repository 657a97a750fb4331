"""The language server's view of user cells (docs/reference.md, section 8): hover on a
cell's name, a declaration or a statement; definitions inside a cell body; the outline's
cells. Plain data, like the analysis half of `lsp`: no pygls here.

Everything shown comes from the checker's records (`registry.Cell`, its `step` of
`equations.Assign`); the syntax tree only says where the cursor is.
"""

from __future__ import annotations

from rnnspec.cells.shapes import format_shape
from rnnspec.language.diagnostics import Span


def contains(span: Span | None, line: int, column: int) -> bool:
    if span is None:
        return False
    return (span.line, span.column) <= (line, column) <= (span.end_line, span.end_column)


def _init(init: tuple) -> str:
    """A parameter's initialiser as written: `zeros`, `uniform(-0.1, 0.1)`; PyTorch's
    uniform default as `uniform`."""
    name, *numbers = init
    return f"{name}({', '.join(repr(n) for n in numbers)})" if numbers else name


def _size(size) -> str:
    return "a number" if size is None else f"`{format_shape([size])}`"


def records(analysis) -> dict:
    """The file's checked user cells by name (those that checked without errors)."""
    return {cell.name: cell for cell in analysis.result.cells}


def cell_hover(item, record) -> str:
    """A user cell: its arguments, states and parameters with symbolic shapes (a table),
    and its equations as the checker reads them."""
    from rnnspec.cells.registry import state_keys

    if record is None:
        return (f"**cell {item.name}**: has errors (see the diagnostics); "
                f"{len(item.states)} state{'s' if len(item.states) != 1 else ''}, "
                f"{len(item.params)} parameter{'s' if len(item.params) != 1 else ''}")
    rules = record.rules
    header = ", ".join(f"{name} = {rules[name].default}" if rules[name].default is not None
                       else name for name in record.declared)
    rows = [f"**cell {record.name}**" + (f"({header})" if header else "")
            + f": {len(record.states)} state{'s' if len(record.states) != 1 else ''}, "
            f"{len(record.parameters)} parameter{'s' if len(record.parameters) != 1 else ''}"
            " per layer and direction", "",
            "| | name | shape |", "| --- | --- | --- |"]
    for state in record.states:
        initial, final = state_keys(state.name)
        rows.append(f"| state | `{state.name}` (`{initial}`, `{final}`) "
                    f"| `{format_shape([state.size])}` |")
    for param in record.parameters:
        shown = _init(param.init)
        rows.append(f"| param | `{param.role}`{'' if shown == 'uniform' else f' = `{shown}`'} "
                    f"| `{format_shape(param.dims)}` |")
    if record.step.requires:
        rows += ["", "requires (in force for every block): "
                 + ", ".join(f"`{left} == {right}`" for left, right, _, _ in record.step.requires)]
    rows += ["", "```", *(assign.text for assign in record.step.statements), "```"]
    return "\n".join(rows)


def require_hover(record, require) -> str:
    """A `require` of a cell: what it asks of each block, and what the body may assume."""
    left, right, _, _ = require
    return (f"`require {left} == {right}` of `{record.name}`: checked for every block and "
            f"every layer using the cell (layers after the first read `D * size of the first "
            f"state`); inside the body `{left}` and `{right}` are the same size")


def statement_hover(statement, assign) -> str:
    """A statement of a cell: the size of each target, and whether it runs in the loop."""
    names = [name for name, _ in statement.targets]
    rows = [f"`{assign.text}`", "", "| target | shape |", "| --- | --- |"]
    for name, is_state, size in zip(names, assign.states, assign.sizes):
        shown = _size(size)
        if assign.node.op == "chunk_rows":  # rows of a matrix: matrices themselves
            _, piece, columns = assign.node.value
            shown = f"a matrix `{format_shape([piece, columns])}`"
        rows.append(f"| `{name}`{' (state)' if is_state else ''} | {shown} |")
    where = ("in the time loop (reads a state)" if assign.node.varying else
             "in the time loop (gives a state its value)" if any(assign.states) else
             "once for all time steps, before the loop (reads no state)")
    rows += ["", f"computed {where}"]
    return "\n".join(rows)


def hover(analysis, spec, line: int, column: int) -> tuple[str, Span] | None:
    """Markdown for a position on a user cell's name (its item or a block that uses it), a
    state or parameter declaration, or a statement; None elsewhere."""
    known = records(analysis)
    items = {item.name: item for item in spec.cells}
    for item in spec.cells:
        if contains(item.name_span, line, column):
            return cell_hover(item, known.get(item.name)), item.name_span
        if not contains(item.span, line, column):
            continue
        record = known.get(item.name)
        if record is None:
            return None
        for state, checked in zip(item.states, record.states):
            if contains(state.span, line, column):
                from rnnspec.cells.registry import state_keys

                initial, final = state_keys(state.name)
                return (f"state `{state.name}` of `{item.name}`: "
                        f"`{format_shape([checked.size])}` per sequence; in `expect`: "
                        f"`{initial}`, `{final}`"), state.span
        params = {p.role: p for p in record.parameters}
        for param in item.params:
            if contains(param.span, line, column) and param.name in params:
                checked = params[param.name]
                return (f"param `{param.name}` of `{item.name}`: "
                        f"`{format_shape(checked.dims)}`, initialised "
                        f"`{_init(checked.init)}`"), param.span
        for require in record.step.requires:
            if contains(require[2], line, column):
                return require_hover(record, require), require[2]
        assigns = {a.span: a for a in record.step.statements}
        for statement in item.statements:
            if contains(statement.span, line, column) and statement.span in assigns:
                return statement_hover(statement, assigns[statement.span]), statement.span
        return None
    for stack in spec.stacks:
        for block in stack.blocks:
            if block.cell in items and contains(block.cell_span, line, column):
                item = items[block.cell]
                return cell_hover(item, known.get(item.name)), block.cell_span
    return None


def definition(spec, word: str, line: int, column: int) -> Span | None:
    """A user cell's name (anywhere) -> its item; inside a cell body, a state, parameter or
    size argument -> its declaration, a local -> the statement that last assigned it
    before the cursor (the first one when none did)."""
    for item in spec.cells:
        if not contains(item.span, line, column):
            continue
        for declared in (*item.arguments, *item.states, *item.params):
            if declared.name == word:
                return declared.name_span
        assigned = [span for statement in item.statements for name, span in statement.targets
                    if name == word]
        before = [span for span in assigned if (span.line, span.column) < (line, column)
                  and not contains(span, line, column)]
        if before or assigned:
            return (before or assigned)[-1 if before else 0]
    for item in spec.cells:
        if item.name == word:
            return item.name_span
    return None


def symbols(spec, analysis, symbol) -> list:
    """The outline's cells, each with its states and parameters as children."""
    known = records(analysis)
    out = []
    for item in spec.cells:
        record = known.get(item.name)
        states = {s.name: s for s in record.states} if record else {}
        params = {p.role: p for p in record.parameters} if record else {}
        children = [symbol(s.name, "state", format_shape([states[s.name].size])
                           if s.name in states else "", s.span, s.name_span)
                    for s in item.states]
        children += [symbol(p.name, "param", format_shape(params[p.name].dims)
                            if p.name in params else "", p.span, p.name_span)
                     for p in item.params]
        detail = (f"{len(item.states)} state{'s' if len(item.states) != 1 else ''}, "
                  f"{len(item.params)} parameter{'s' if len(item.params) != 1 else ''}")
        out.append(symbol(item.name, "cell", detail, item.span, item.name_span,
                          tuple(children)))
    return out
