"""The step of a declared cell written out as Python: a `_Recurrent` subclass.

The step is lowered once by `cells.lower` (which parts run in `hoist`, before the loop, for
every time step at once; which biases fold into one `F.linear`); this module prints the
lowered statements from `CODE_FOR_OP`, a table of how each op is written in PyTorch.
`step` runs the rest, one statement per line with its shape. Names come from a namespace
that keeps the spec's names where they are safe and never collides with `torch`, `F`, the
weights `w` or the emitter's own temporaries; hoisted values are named after the statement
they come from (`gates_x`: reads `x`; `gates_p`: parameters only).
"""

from __future__ import annotations

import textwrap

from rnnspec.backends.torch.layout import LINE_LENGTH
from rnnspec.backends.torch.layout import statement as layout_statement
from rnnspec.cells.equations import Node, Step
from rnnspec.cells.lower import Statement, lower, terms
from rnnspec.cells.ops import COMPARISONS
from rnnspec.cells.shapes import Size
from rnnspec.language.names import Namespace

_TORCH = {"sigmoid": "torch.sigmoid", "tanh": "torch.tanh", "relu": "torch.relu",
          "exp": "torch.exp", "log": "torch.log", "abs": "torch.abs", "sqrt": "torch.sqrt",
          "gelu": "F.gelu", "silu": "F.silu", "softplus": "F.softplus",
          "logsigmoid": "F.logsigmoid"}
# Names the generated class uses itself: a spec's name equal to one of these is renamed.
_RESERVED = frozenset({"self", "w", "inputs", "state", "input", "torch", "F", "Tensor", "nn",
                       "math", "NamedTuple", "Weights", "x"})


def _literal(value) -> str:
    if isinstance(value, bool):
        raise ValueError(f"refusing to put {value!r} into generated code as a number")
    if isinstance(value, int):
        return str(int(value))
    return repr(float(value))


def _call(function: str):
    return lambda e, node, parent: f"{function}({e.expression(node.args[0])})"


def _binary(symbol: str, level: int):
    def printer(e, node, parent):
        left = e.expression(node.args[0], level)
        right = e.expression(node.args[1], level + 1)
        text = f"{left} {symbol} {right}"
        return f"({text})" if parent > level else text
    return printer


def _sum(e, node: Node, parent: int) -> str:
    text = ""
    for sign, term in terms(node):
        if not text:
            text = e.expression(term, 1) if sign > 0 else _negated(e.expression(term, 3))
        else:
            text += f" {'+' if sign > 0 else '-'} {e.expression(term, 1 if sign > 0 else 2)}"
    return f"({text})" if parent > 1 else text


def _negated(operand: str) -> str:
    """`-a`; `-(-a)` where the operand is itself negated (never `--a`)."""
    return f"-({operand})" if operand.startswith("-") else f"-{operand}"


def _neg(e, node: Node, parent: int) -> str:
    text = _negated(e.expression(node.args[0], 3))
    return f"({text})" if parent > 3 else text


def _linear(e, node: Node, parent: int) -> str:
    vector, matrix, *biases = node.args
    bias = " + ".join(f"w.{b.value}" for b in biases)
    weight = e.expression(matrix)
    return f"F.linear({e.expression(vector)}, {weight}" + (f", {bias})" if bias else ")")


def _matmul(e, node: Node, parent: int) -> str:
    matrix, vector = node.args
    return f"F.linear({e.expression(vector)}, {e.expression(matrix)})"


def _heads_matmul(e, node: Node, parent: int) -> str:
    matrix, vector = node.args
    return f"_heads({e.expression(matrix)}, {e.expression(vector)})"


def _clamp(e, node: Node, parent: int) -> str:
    inner, low, high = (e.expression(a) for a in node.args)
    return f"torch.clamp({inner}, {low}, {high})"


def _argument(e, node: Node, parent: int) -> str:
    return f"self.numbers.{node.value}"


def _comparison(symbol: str):
    # Python's comparisons bind looser than arithmetic; conditions are only ever operands
    # of `where` and the logical functions, so they need no parentheses of their own
    def printer(e, node, parent):
        return f"{e.expression(node.args[0])} {symbol} {e.expression(node.args[1])}"
    return printer


def _logical(function: str):
    return lambda e, node, parent: (
        f"torch.{function}({', '.join(e.expression(a) for a in node.args)})")


def _where(e, node: Node, parent: int) -> str:
    condition, a, b = node.args
    text = f"torch.where({e.expression(condition)}, {e.expression(a)}, {e.expression(b)})"
    if a.size is None and b.size is None:  # two numbers give the default dtype: the input's
        return f"{text}.to({e.dtype})"
    return text


def _dropout(e, node: Node, parent: int) -> str:
    inner, p = node.args
    per_step, index = node.value
    more = ", per_step=True" if per_step else ""
    return f"self.drop({e.expression(inner)}, {e.expression(p)}, {index}{more})"


def _extremum(e, node: Node, parent: int) -> str:
    left, right = node.args
    if left.size is None or right.size is None:
        vector, number = (right, left) if left.size is None else (left, right)
        bound = "max" if node.op == "minimum" else "min"
        return f"torch.clamp({e.expression(vector)}, {bound}={e.expression(number)})"
    return f"torch.{node.op}({e.expression(left)}, {e.expression(right)})"


def _layer_norm(e, node: Node, parent: int) -> str:
    inner, *affine = [e.expression(a) for a in node.args]
    affine += ["None"] * (2 - len(affine))
    return f"_layer_norm({inner}, {affine[0]}, {affine[1]}, {_literal(node.value)})"


def _concat(e, node: Node, parent: int) -> str:
    parts = ", ".join(e.expression(a) for a in node.args)
    if len({a.batched for a in node.args}) > 1:  # parameters meet batched values
        return f"_concat({parts})"
    return f"torch.cat(({parts}), -1)"


def _chunk(e, node: Node, parent: int) -> str:
    return f"{e.expression(node.args[0], 4)}.chunk({node.value[0]}, -1)"


# How each op of the lowered step prints (tinygrad's `Renderer.code_for_op`): a printer
# takes the emitter, the node and the precedence of its context.
CODE_FOR_OP = {
    "number": lambda e, node, parent: _literal(node.value),
    "x": lambda e, node, parent: "x",
    "state": lambda e, node, parent: e.lowered.names[node.value],
    "local": lambda e, node, parent: e.lowered.names[node.value],
    "param": lambda e, node, parent: f"w.{node.value}",
    "add": _sum, "sub": _sum, "mul": _binary("*", 2), "div": _binary("/", 2), "neg": _neg,
    "matmul": _matmul, "linear": _linear, "clamp": _clamp, "minimum": _extremum,
    "maximum": _extremum, "layer_norm": _layer_norm, "concat": _concat, "chunk": _chunk,
    "heads_matmul": _heads_matmul, "argument": _argument, "where": _where,
    "dropout": _dropout, "and": _logical("logical_and"), "or": _logical("logical_or"),
    "not": _logical("logical_not"),
    **{op: _comparison(symbol) for symbol, op in COMPARISONS.items()},
    **{op: _call(function) for op, function in _TORCH.items()},
}


class CellEmitter:
    """Prints the lowered step (`cells.lower`) of a cell as a `_Recurrent`."""

    def __init__(self, step: Step, class_name: str, cell, variant: str = ""):
        self.step = step
        self.variant = variant  # a built-in's: `bias, proj_size`
        self.class_name = class_name
        self.cell = cell
        self.lowered = lower(step, Namespace(_RESERVED))

    def _shape(self, size: Size | None, axes: list[str]) -> str:
        """`[T, B, 4 * hidden_size]`; a number is `a number`."""
        if size is None:
            return "a number"
        return "[" + ", ".join([*axes, str(size)]) + "]"

    def expression(self, node: Node, parent: int = 0) -> str:
        printer = CODE_FOR_OP.get(node.op)
        if printer is None:
            raise ValueError(f"no Python for the operation {node.op!r}")
        return printer(self, node, parent)

    def _hoisted(self, statement: Statement) -> str:
        node = statement.node
        axes = ["T", "B"] if node.batched else []
        if statement.assign is None:
            name = statement.targets[0]
            code = f"{name} = {self.expression(node)}"
            return layout_statement(code, 8, self._shape(node.size, axes))
        return self._assignment(statement, self.expression(node), axes)

    def _stepped(self, statement: Statement) -> str:
        value = self.expression(statement.node)
        if statement.assign.sizes[0] is None:
            return self._assignment(statement, value, [])
        if statement.expand is not None:
            # a value of parameters only: each piece given the batch of the state
            if len(statement.targets) > 1:
                # the loop reads only the state it expands to: its own name differs from that
                each = "piece" if statement.expand != "piece" else "part"
                value = f"({each}.expand_as({statement.expand}) for {each} in {value})"
            else:
                value = f"({value}).expand_as({statement.expand})"
            return self._assignment(statement, value, ["B"])
        return self._assignment(statement, value, ["B"] if statement.node.batched else [])

    def source(self) -> str:
        lowered = self.lowered
        self.dtype = "input.dtype"  # a value of the right dtype where code is printed
        self.hoist_lines = [self._static(s) for s in lowered.static_for(lowered.hoist)]
        self.hoist_lines += [self._hoisted(s) for s in lowered.hoist]
        self.dtype = "state[0].dtype"
        step_lines = [self._static(s) for s in lowered.static_for(lowered.step)]
        return self._class(step_lines + [self._stepped(s) for s in lowered.step])

    def _static(self, statement: Statement) -> str:
        """`A, B = w.W.chunk(2)`: rows of a matrix parameter, views of it."""
        node = statement.node
        pieces, rows, columns = node.value
        names = list(statement.targets)
        targets = _tuple(names, bare=True)
        code = f"{targets} = {self.expression(node.args[0], 4)}.chunk({pieces})"
        return layout_statement(code, 8, f"each [{rows}, {columns}]")

    def _assignment(self, statement: Statement, value: str, axes: list[str]) -> str:
        """`a = ...` (`(a,) = ...` for a one-piece chunk), with its shape comment."""
        assign = statement.assign
        names = list(statement.targets)
        several = len(names) > 1 or assign.node.op == "chunk"
        targets = _tuple(names, bare=True) if several else names[0]
        comment = ("each " if several else "") + self._shape(assign.sizes[0], axes)
        if value == targets:
            return f"        # {targets} keeps its value"
        return layout_statement(f"{targets} = {value}", 8, comment)

    def _class(self, step_lines: list[str]) -> str:
        cell = self.cell
        weights = "".join(f"        {p}: Tensor\n" for p in self.step.params) or \
            '        """The cell has no parameters."""\n'
        initial = [(p.role, p.init) for p in cell.parameters if p.init != ("uniform",)]
        initial_text = ""
        if initial:
            entries = [_tuple([f'"{role}"', f'"{init[0]}"', *(_literal(v) for v in init[1:])])
                       for role, init in initial]
            initial_text = layout_statement(f"initial = {_tuple(entries)}", 4) + "\n"
        # always written: `_Recurrent`'s default (the built-ins' weight_hh) is not this cell's
        recurrent = cell.dropconnect or self.step.recurrent_weights
        names = _tuple([f'"{name}"' for name in recurrent if name in self.step.params])
        recurrent_text = layout_statement(f"recurrent_weights = {names}", 4) + "\n"
        first = (f"Cell `{cell.name}`, declared at line {cell.span.line}:"
                 if cell.span is not None else f"Built-in cell `{cell.name}` ({self.variant}):")
        doc = [f'    """{first}', ""]
        for assign in self.step.statements:
            doc += textwrap.wrap(assign.text, LINE_LENGTH, initial_indent="    ",
                                 subsequent_indent="        ", break_on_hyphens=False)
        doc.append('    """')
        lowered = self.lowered
        unpack = _tuple([name for name, _ in lowered.passed], bare=True)
        returned = _tuple(list(lowered.states), bare=True)
        state_unpack = returned
        lines = [f"class {self.class_name}(_Recurrent):", *doc, "",
                 "    class Weights(NamedTuple):", weights.rstrip("\n"), ""]
        if self.step.numbers:  # the header's number arguments, each block's values
            rules = cell.rules
            lines += ["    class Numbers(NamedTuple):",
                      *(f"        {name}: float = {_literal(rules[name].default)}"
                        for name in self.step.numbers), ""]
        if any("self.drop(" in line for line in step_lines):  # kept out of torch's scan
            recurrent_text += "    step_drops = True  # the step draws `dropout` masks\n"
        if initial_text or recurrent_text:
            lines += [(initial_text + recurrent_text).rstrip("\n"), ""]
        lines += [
            "    def hoist(self, input: Tensor, w: Weights) -> tuple:",
            *(["        x = input  # [T, B, input_size]"] if lowered.hoist_reads_x else []),
            *self.hoist_lines,
            *self._expanded(),
            layout_statement(f"return {unpack}", 8),
            "",
            "    def step(self, inputs: tuple, state: tuple, w: Weights) -> tuple:",
            "        del inputs  # the step reads no input" if lowered.unread_inputs
            else layout_statement(f"{unpack} = inputs", 8),
            layout_statement(f"{state_unpack} = state", 8),
            *step_lines,
            layout_statement(f"return {returned}", 8),
        ]
        return "\n".join(line.rstrip() for line in lines)

    def _expanded(self) -> list[str]:
        """Values without a time axis (parameters only), given one: one view per step."""
        out = []
        for name, batched in self.lowered.passed:
            if not batched:
                code = f"{name} = {name}.expand(input.shape[0], *{name}.shape)"
                out.append(layout_statement(code, 8))
        return out


def _tuple(items: list[str], bare: bool = False) -> str:
    """`(a,)` or `a, b` (bare) / `(a, b)`: a tuple display of one or more items."""
    if len(items) == 1:
        return f"({items[0]},)"
    text = ", ".join(items)
    return text if bare else f"({text})"


def cell_source(cell, class_name: str) -> str:
    """The `_Recurrent` subclass of a declared cell, as Python source."""
    return CellEmitter(cell.step, class_name, cell).source()



def builtin_source(cell, arguments: dict, class_name: str) -> str:
    """The `_Recurrent` subclass of a built-in cell's variant for a block's arguments: its
    equations (`cells.builtin`) printed as a declared cell's are."""
    from rnnspec.cells import builtin

    key = builtin.variant(cell, arguments)
    return CellEmitter(builtin.step(cell, arguments), class_name, cell,
                       builtin.describe(key)).source()
