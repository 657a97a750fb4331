"""The step of a declared cell written out as Python: a `_Recurrent` subclass.

`cells.lower` decides what `hoist` computes before the time loop (for every time step at
once) and how biases fold into `F.linear`; this module only prints its statements, each op
through `CODE_FOR_OP`. `step` runs the rest, one statement per line with its shape. Every
line is one a formatter keeps (`ruff format`, line length 100): a statement too long for one
line is preceded by its longest parts as locals named from its target (`c_sum`), tuples too
long for one line are one item a line with a trailing comma. Names come from a namespace
that keeps the spec's names where they are safe and never collides with `torch`, `F`, the
weights `w` or the emitter's own temporaries.
"""

from __future__ import annotations

import textwrap

from rnnspec.cells.equations import Node, Step
from rnnspec.cells.lower import HOISTED, LEAVES, LINEAR, Statement, lower, terms
from rnnspec.cells.shapes import Size
from rnnspec.language.names import Namespace

LINE_LENGTH = 100
_TORCH = {"sigmoid": "torch.sigmoid", "tanh": "torch.tanh", "relu": "torch.relu",
          "exp": "torch.exp", "log": "torch.log", "abs": "torch.abs", "sqrt": "torch.sqrt",
          "gelu": "F.gelu", "silu": "F.silu", "softplus": "F.softplus",
          "logsigmoid": "F.logsigmoid"}
_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
# What a part split off a long statement is called after: `c_sum`, `h_product`, ...
_PART = {"add": "sum", "sub": "sum", "mul": "product", "div": "quotient", "neg": "negated",
         "matmul": "linear", LINEAR: "linear"}
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


def _binary(op: str, level: int):
    def text(e, node, parent):
        left = e.expression(node.args[0], level)
        right = e.expression(node.args[1], level + 1)
        out = f"{left} {_SYMBOLS[op]} {right}"
        return f"({out})" if parent > level else out
    return text


def _neg(e, node, parent):
    out = "-" + e.expression(node.args[0], 3)
    return f"({out})" if parent > 3 else out


def _sum(e, node, parent):
    text = ""
    for sign, term in terms(node):
        piece = e.expression(term, 1 if sign > 0 else 2)
        if not text:
            text = piece if sign > 0 else f"-{e.expression(term, 3)}"
        else:
            text += f" {'+' if sign > 0 else '-'} {piece}"
    return f"({text})" if parent > 1 else text


def _linear(e, node, parent):
    matrix, vector, *biases = node.args
    bias = "".join(", " + " + ".join(f"w.{b.value}" for b in biases) if biases else "")
    return f"F.linear({e.expression(vector)}, w.{matrix.value}{bias})"


def _clamp(e, node, parent):
    low, high = node.value
    return f"torch.clamp({e.expression(node.args[0])}, {_literal(low)}, {_literal(high)})"


def _extremum(e, node, parent):
    left, right = node.args
    if left.size is None or right.size is None:
        vector, number = (right, left) if left.size is None else (left, right)
        bound = "max" if node.op == "minimum" else "min"
        return f"torch.clamp({e.expression(vector)}, {bound}={e.expression(number)})"
    return f"torch.{node.op}({e.expression(left)}, {e.expression(right)})"


def _layer_norm(e, node, parent):
    inner, *affine = [e.expression(a) for a in node.args]
    affine += ["None"] * (2 - len(affine))
    return f"_layer_norm({inner}, {affine[0]}, {affine[1]}, {_literal(node.value)})"


def _concat(e, node, parent):
    parts = ", ".join(e.expression(a) for a in node.args)
    if len({a.batched for a in node.args}) > 1:  # parameters meet batched values
        return f"_concat({parts})"
    return f"torch.cat(({parts}), -1)"


# How each op of the lowered step prints (tinygrad's `Renderer.code_for_op`): op -> printer
# of (emitter, node, the precedence of the place it is printed in).
CODE_FOR_OP = {
    "number": lambda e, node, parent: _literal(node.value),
    "x": lambda e, node, parent: e.name(node.value),
    "state": lambda e, node, parent: e.name(node.value),
    "local": lambda e, node, parent: e.name(node.value),
    HOISTED: lambda e, node, parent: e.name(node.value),
    "param": lambda e, node, parent: f"w.{node.value}",
    "add": _sum,
    "sub": _sum,
    "mul": _binary("mul", 2),
    "div": _binary("div", 2),
    "neg": _neg,
    "matmul": _linear,
    LINEAR: _linear,
    **{op: _call(function) for op, function in _TORCH.items()},
    "clamp": _clamp,
    "minimum": _extremum,
    "maximum": _extremum,
    "layer_norm": _layer_norm,
    "concat": _concat,
    "chunk": lambda e, node, parent: f"{e.expression(node.args[0], 4)}.chunk({node.value[0]}, -1)",
}


class CellEmitter:
    def __init__(self, step: Step, class_name: str, cell, variant: str = ""):
        self.step = step
        self.variant = variant  # a built-in's: `bias, proj_size`
        self.class_name = class_name
        self.cell = cell
        self.names = Namespace(_RESERVED)
        self.local: dict[str, str] = {"x": "x"}  # spec (or invented) name -> Python name
        self.states = [self.name(s) for s in step.states]

    def name(self, name: str) -> str:
        if name not in self.local:
            self.local[name] = self.names.identifier(name)
        return self.local[name]

    def expression(self, node: Node, parent: int = 0) -> str:
        printer = CODE_FOR_OP.get(node.op)
        if printer is None:
            raise ValueError(f"no Python for the operation {node.op!r}")
        return printer(self, node, parent)

    def _shape(self, size: Size | None, axes: list[str]) -> str:
        """`[T, B, 4 * hidden_size]`; a number is `a number`."""
        if size is None:
            return "a number"
        return "[" + ", ".join([*axes, str(size)]) + "]"

    def _statement(self, statement: Statement, axes: list[str]) -> list[str]:
        """`a = ...` (`(a,) = ...` for a one-piece chunk) with its shape comment, on one
        line: a statement too long for one is preceded by its longest parts, each a local
        named from the target (`c_sum`), so that every line fits and a formatter keeps it."""
        names = [self.name(t) for t in statement.targets]
        targets = _tuple(names, bare=True) if statement.unpack else names[0]
        value = self._value(statement)
        if statement.size is None:
            axes = []
        comment = ("each " if statement.unpack else "") + self._shape(statement.size, axes)
        if value == targets:
            return [f"        # {targets} keeps its value"]
        line = f"        {targets} = {value}  # {comment}"
        if len(line) <= LINE_LENGTH:
            return [line]
        part = self._longest_part(statement.node)
        if part is None:
            return [_line(f"{targets} = {value}", comment, 8)]
        name = self.names.identifier(f"{names[0]}_{_PART.get(part.op, part.op)}")
        self.local[name] = name
        local = Node("local", (), name, part.size, part.varying, part.batched, part.span)
        lines = self._statement(Statement((name,), part, part.size, part.batched, False),
                                axes if part.batched else [])
        rest = statement._replace(node=_substitute(statement.node, part, local))
        return lines + self._statement(rest, axes)

    def _value(self, statement: Statement) -> str:
        value = self.expression(statement.node)
        if statement.expand is not None:
            reference = self.name(statement.expand)
            if len(statement.targets) > 1:
                return f"(piece.expand_as({reference}) for piece in {value})"
            return f"({value}).expand_as({reference})"
        return value

    def _longest_part(self, node: Node) -> Node | None:
        """The longest operand of `node` that is not a name or a number."""
        if node.op in ("add", "sub"):
            parts = [t for _, t in terms(node)]
        else:
            parts = [a for a in node.args if isinstance(a, Node)]
        parts = [p for p in parts if p.op not in LEAVES and p.size is not None]
        if not parts:
            return None
        return max(parts, key=lambda p: len(self.expression(p)))

    def source(self) -> str:
        lowering = lower(self.step)
        hoist_lines = [line for s in lowering.hoist
                       for line in self._statement(s, ["T", "B"] if s.batched else [])]
        step_lines = [line for s in lowering.step
                      for line in self._statement(s, ["B"] if s.batched else [])]
        passed = [(self.name(name), batched) for name, batched in lowering.passed]
        return self._class(hoist_lines, step_lines, passed, lowering.unread_inputs)

    def _class(self, hoist_lines, step_lines, passed, unread_inputs: bool) -> str:
        cell = self.cell
        weights = "".join(f"        {p}: Tensor\n" for p in self.step.params) or \
            '        """The cell has no parameters."""\n'
        initial = [(p.role, p.init) for p in cell.parameters if p.init != ("uniform",)]
        initial_text = ""
        if initial:
            entries = [_tuple([f'"{role}"', f'"{init[0]}"', *(_literal(v) for v in init[1:])])
                       for role, init in initial]
            initial_text = _display("    initial = ", entries) + "\n"
        # always written: `_Recurrent`'s default (the built-ins' weight_hh) is not this cell's
        recurrent = getattr(cell, "dropconnect", None) or self.step.recurrent_weights
        names = [f'"{name}"' for name in recurrent if name in self.step.params]
        recurrent_text = _display("    recurrent_weights = ", names) + "\n"
        first = (f"Cell `{cell.name}`, declared at line {cell.span.line}:"
                 if cell.span is not None else f"Built-in cell `{cell.name}` ({self.variant}):")
        doc = [f'    """{first}', ""]
        for assign in self.step.statements:
            doc += textwrap.wrap(assign.text, LINE_LENGTH, initial_indent="    ",
                                 subsequent_indent="        ", break_on_hyphens=False)
        doc.append('    """')
        passed_names = [name for name, _ in passed]
        lines = [f"class {self.class_name}(_Recurrent):", *doc, "",
                 "    class Weights(NamedTuple):", weights.rstrip("\n"), ""]
        if initial_text or recurrent_text:
            lines += [(initial_text + recurrent_text).rstrip("\n"), ""]
        lines += [
            "    def hoist(self, input: Tensor, w: Weights) -> tuple:",
            "        x = input  # [T, B, input_size]",
            *hoist_lines,
            *(f"        {name} = {name}.expand(input.shape[0], *{name}.shape)"
              for name, batched in passed if not batched),
            _display("        return ", passed_names, bare=True),
            "",
            "    def step(self, inputs: tuple, state: tuple, w: Weights) -> tuple:",
            "        del inputs  # the step reads no input" if unread_inputs
            else _display("        ", passed_names, " = inputs", bare=True),
            _display("        ", self.states, " = state", bare=True),
            *step_lines,
            _display("        return ", self.states, bare=True),
        ]
        return "\n".join(line.rstrip() for line in lines)


def _substitute(node: Node, old: Node, new: Node) -> Node:
    """`node` with the sub-node `old` (the same object) replaced by `new`."""
    if node is old:
        return new
    if not node.args or not isinstance(node.args[0], Node):
        return node
    return node._replace(args=tuple(_substitute(a, old, new) if isinstance(a, Node) else a
                                    for a in node.args))


def _display(head: str, items: list[str], tail: str = "", bare: bool = False) -> str:
    """`head` + a tuple of `items` + `tail` on one line when it fits, else one item a line
    with a trailing comma (the layout a formatter keeps: its magic trailing comma)."""
    line = head + _tuple(items, bare) + tail
    if len(line) <= LINE_LENGTH:
        return line
    indent = " " * (len(head) - len(head.lstrip()) + 4)
    body = "".join(f"{indent}{item},\n" for item in items)
    return f"{head}(\n{body}{indent[4:]}){tail}"


def _tuple(items: list[str], bare: bool = False) -> str:
    """`(a,)` or `a, b` (bare) / `(a, b)`: a tuple display of one or more items."""
    if len(items) == 1:
        return f"({items[0]},)"
    text = ", ".join(items)
    return text if bare else f"({text})"


def _line(code: str, comment: str | None, indent: int) -> str:
    """One statement with its shape comment; when it would pass the line length, its value
    in parentheses, broken before top-level `+` and `-` and after commas."""
    suffix = f"  # {comment}" if comment else ""
    if indent + len(code) + len(suffix) <= LINE_LENGTH:
        return " " * indent + code + suffix
    target, _, value = code.partition(" = ")
    pad = " " * (indent + 4)
    lines = [" " * indent + f"{target} = ({suffix}"]
    current = ""
    for piece, glue in _pieces(value):
        if current and indent + 4 + len(current) + len(glue) + len(piece) > LINE_LENGTH:
            lines.append(pad + current.rstrip())
            current = piece
        else:
            current = current + glue + piece if current else piece
    lines.append(pad + current)
    lines.append(" " * indent + ")")
    return "\n".join(lines)


def _pieces(text: str) -> list[tuple[str, str]]:
    """`text` as (piece, glue) pairs, cut where a line may break inside parentheses: after
    each comma, and before each `+` or `-` outside any call."""
    pieces, start, depth, glue = [], 0, 0, ""
    for index, ch in enumerate(text):
        depth += (ch in "([") - (ch in ")]")
        if ch == "," and text[index + 1:index + 2] == " ":
            pieces.append((text[start:index + 1], glue))
            start, glue = index + 2, " "
        elif depth == 0 and text[index:index + 3] in (" + ", " - "):
            pieces.append((text[start:index], glue))
            start, glue = index + 1, " "
    pieces.append((text[start:], glue))
    return [(piece, glue) for piece, glue in pieces if piece]


def cell_source(cell, class_name: str) -> str:
    """The `_Recurrent` subclass of a declared cell, as Python source."""
    return CellEmitter(cell.step, class_name, cell).source()



def builtin_source(cell, arguments: dict, class_name: str) -> str:
    """The `_Recurrent` subclass of a built-in cell's variant for a block's arguments: its
    equations (`cells.builtin`) printed as a declared cell's are."""
    from rnnspec.cells import builtin

    key = builtin.variant(cell, arguments)
    return CellEmitter(builtin.step(cell, arguments), class_name, cell,
                       _VARIANTS[key[0]](*key[1:])).source()


def _biases(bias: bool) -> str:
    return "with biases" if bias else "no biases"


# A built-in variant (`builtin.variant`'s key without the name) in words, for its docstring.
_VARIANTS = {
    "rnn": lambda bias, nonlinearity: f"{_biases(bias)}, {nonlinearity}",
    "lstm": lambda bias, projected: _biases(bias) + (", proj_size" if projected else ""),
    "gru": lambda bias: f"{_biases(bias)}, r applied after the recurrent projection",
}
