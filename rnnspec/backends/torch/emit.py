"""The step of a declared cell written out as Python: a `_Recurrent` subclass.

Everything that does not read a state is computed by `hoist`, for every time step at once,
before the loop: whole statements that read only `x` and parameters, and inside the other
statements each largest part that does not read a state (the terms of a sum that do not
are gathered into one). `step` runs the rest, one statement per line with its shape.
Names come from a namespace that keeps the spec's names where they are safe and never
collides with `torch`, `F`, the weights `w` or the emitter's own temporaries.
"""

from __future__ import annotations

import textwrap

from rnnspec.cells.equations import Assign, Node, Step
from rnnspec.cells.shapes import Size
from rnnspec.language.names import Namespace

LINE_LENGTH = 100
_TORCH = {"sigmoid": "torch.sigmoid", "tanh": "torch.tanh", "relu": "torch.relu",
          "exp": "torch.exp", "log": "torch.log", "abs": "torch.abs", "sqrt": "torch.sqrt",
          "gelu": "F.gelu", "silu": "F.silu", "softplus": "F.softplus",
          "logsigmoid": "F.logsigmoid"}
_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_PRECEDENCE = {"add": 1, "sub": 1, "mul": 2, "div": 2, "neg": 3}
# Names the generated class uses itself: a spec's name equal to one of these is renamed.
_RESERVED = frozenset({"self", "w", "inputs", "state", "input", "torch", "F", "Tensor", "nn",
                       "math", "NamedTuple", "Weights", "x"})


def _literal(value) -> str:
    if isinstance(value, bool):
        raise ValueError(f"refusing to put {value!r} into generated code as a number")
    if isinstance(value, int):
        return str(int(value))
    return repr(float(value))


def _is_leaf(node: Node) -> bool:
    return node.op in ("x", "state", "local", "param", "number")


def _terms(node: Node, sign: int = 1) -> list[tuple[int, Node]]:
    """A sum as its signed terms: `a - (b + c)` is +a, -b, -c."""
    if node.op == "add":
        return _terms(node.args[0], sign) + _terms(node.args[1], sign)
    if node.op == "sub":
        return _terms(node.args[0], sign) + _terms(node.args[1], -sign)
    return [(sign, node)]


class CellEmitter:
    def __init__(self, step: Step, class_name: str, cell):
        self.step = step
        self.class_name = class_name
        self.cell = cell
        self.names = Namespace(_RESERVED)
        self.local: dict[str, str] = {}  # spec name (or local version) -> Python name
        self.states = [self._name(s) for s in step.states]
        self.hoisted: dict[int, str] = {}  # id of a node computed in hoist -> its name
        self.passed: list[tuple[str, str]] = []  # (name, shape comment) handed to step
        self.hoist_lines: list[str] = []
        self.step_lines: list[str] = []
        self.x = "x"
        self._unread_inputs = False

    def _name(self, name: str) -> str:
        if name not in self.local:
            self.local[name] = self.names.identifier(name)
        return self.local[name]

    # ------------------------------------------------------------------- printing

    def _shape(self, size: Size | None, axes: list[str]) -> str:
        """`[T, B, 4 * hidden_size]`; a number is `a number`."""
        if size is None:
            return "a number"
        return "[" + ", ".join([*axes, str(size)]) + "]"

    def expression(self, node: Node, in_step: bool, parent: int = 0) -> str:
        """Python for `node`: in the step, parts computed by hoist are read by name."""
        if in_step and id(node) in self.hoisted:
            return self.hoisted[id(node)]
        op = node.op
        if op == "number":
            return _literal(node.value)
        if op == "x":
            return self.x
        if op in ("state", "local"):
            return self._name(node.value)
        if op == "param":
            return f"w.{node.value}"
        if op in ("add", "sub"):
            text = self._sum(node, in_step)
            return f"({text})" if parent > 1 else text
        if op in ("mul", "div"):
            left = self.expression(node.args[0], in_step, 2)
            right = self.expression(node.args[1], in_step, 3)
            text = f"{left} {_SYMBOLS[op]} {right}"
            return f"({text})" if parent > 2 else text
        if op == "neg":
            text = "-" + self.expression(node.args[0], in_step, 3)
            return f"({text})" if parent > 3 else text
        if op == "matmul":
            matrix, vector = node.args
            return f"F.linear({self.expression(vector, in_step)}, w.{matrix.value})"
        if op in _TORCH:
            return f"{_TORCH[op]}({self.expression(node.args[0], in_step)})"
        if op == "clamp":
            low, high = node.value
            inner = self.expression(node.args[0], in_step)
            return f"torch.clamp({inner}, {_literal(low)}, {_literal(high)})"
        if op in ("minimum", "maximum"):
            left, right = node.args
            if left.size is None or right.size is None:
                vector, number = (right, left) if left.size is None else (left, right)
                bound = "max" if op == "minimum" else "min"
                inner = self.expression(vector, in_step)
                return f"torch.clamp({inner}, {bound}={self.expression(number, in_step)})"
            return (f"torch.{op}({self.expression(left, in_step)}, "
                    f"{self.expression(right, in_step)})")
        if op == "layer_norm":
            inner, *affine = [self.expression(a, in_step) for a in node.args]
            affine += ["None"] * (2 - len(affine))
            return f"_layer_norm({inner}, {affine[0]}, {affine[1]}, {_literal(node.value)})"
        if op == "concat":
            parts = ", ".join(self.expression(a, in_step) for a in node.args)
            if len({a.batched for a in node.args}) > 1:  # parameters meet batched values
                return f"_concat({parts})"
            return f"torch.cat(({parts}), -1)"
        if op == "chunk":
            inner = self.expression(node.args[0], in_step, 4)
            return f"{inner}.chunk({node.value[0]}, -1)"
        raise ValueError(f"no Python for the operation {op!r}")

    def _sum(self, node: Node, in_step: bool) -> str:
        terms = _terms(node)
        matmul, biases = self._linear(terms, in_step)
        text = ""
        for index, (sign, term) in enumerate(terms):
            if index in biases:
                continue  # folded into the `F.linear` of `matmul`
            if index == matmul:
                matrix, vector = term.args
                bias = " + ".join(f"w.{terms[b][1].value}" for b in biases)
                piece = f"F.linear({self.expression(vector, in_step)}, w.{matrix.value}, {bias})"
            else:
                piece = self.expression(term, in_step, 1 if sign > 0 else 2)
            if not text:
                text = piece if sign > 0 else f"-{self.expression(term, in_step, 3)}"
            else:
                text += f" {'+' if sign > 0 else '-'} {piece}"
        return text

    def _linear(self, terms, in_step: bool) -> tuple[int | None, list[int]]:
        """`W @ v + b + c` as one `F.linear(v, W, b + c)`: the first matmul of a sum and
        every vector parameter of its size added to it (one addmm instead of a matmul and
        a pass over the whole [T, B, n] per bias)."""
        for index, (sign, term) in enumerate(terms):
            if sign > 0 and term.op == "matmul" and not (in_step and id(term) in self.hoisted):
                biases = [i for i, (s, t) in enumerate(terms)
                          if s > 0 and t.op == "param" and t.size is not None
                          and t.size == term.size]
                return (index, biases) if biases else (None, [])
        return None, []

    # ------------------------------------------------------------------- hoisting

    def _hoist_value(self, node: Node) -> None:
        """Make `node` (reads no state) available to the step, computed in hoist."""
        if id(node) in self.hoisted or node.op in ("number", "param") or node.size is None:
            return  # numbers are written where they are used; parameters read from `w`
        if node.op == "chunk":  # pieces are split in the step, from the hoisted vector
            self._hoist_value(node.args[0])
            return
        if node.op in ("x", "local"):
            name = self.expression(node, False)
        else:
            name = self.names.identifier(f"_v{len(self.passed)}")
            comment = self._shape(node.size, ["T", "B"] if node.batched else [])
            self.hoist_lines.append(_line(f"{name} = {self.expression(node, False)}", comment, 8))
        if not any(passed == name for passed, _ in self.passed):
            self.passed.append((name, node.batched))
        self.hoisted[id(node)] = name

    def _plan(self, node: Node) -> None:
        """Hoist every largest part of a state-reading `node` that reads no state."""
        if not node.varying:
            self._hoist_value(node)
            return
        if node.op in ("add", "sub"):
            terms = _terms(node)
            still = [(s, t) for s, t in terms if not t.varying]
            worth = [t for _, t in still if not _is_leaf(t) and t.size is not None]
            if len(still) > 1 and worth:
                self._hoist_group(node, terms)
                return
            for _, term in terms:
                self._plan(term)
            return
        for child in node.args:
            if isinstance(child, Node):
                self._plan(child)

    def _hoist_group(self, node: Node, terms) -> None:
        """A sum whose state-free terms are gathered into one hoisted value."""
        free = [(s, t) for s, t in terms if not t.varying]
        for _, term in terms:
            if term.varying:
                self._plan(term)
        sign, group = free[0]
        if sign < 0:
            group = Node("neg", (group,), None, node.size, False, group.batched, node.span)
        for sign, term in free[1:]:
            group = Node("add" if sign > 0 else "sub", (group, term), None, node.size, False,
                         group.batched or term.batched, node.span)
            self._keep.append(group)
        self._hoist_value(group)
        name = self.hoisted[id(group)]
        # the step's sum: the hoisted group, then the state-reading terms in order
        rebuilt = Node("local", (), name, node.size, False, True, node.span)
        self.local[name] = name
        for sign, term in terms:
            if term.varying:
                rebuilt = Node("add" if sign > 0 else "sub", (rebuilt, term), None, node.size,
                               True, True, node.span)
        self._keep += [group, rebuilt]  # ids of the nodes made here must stay unique
        self._rewritten[id(node)] = rebuilt

    # ------------------------------------------------------------------- the class

    def source(self) -> str:
        self._rewritten: dict[int, Node] = {}
        self._keep: list[Node] = []
        hoisted_statements, stepped = [], []
        for assign in self.step.statements:
            if assign.sizes[0] is None:  # a number: known in both functions
                hoisted_statements.append(assign)
                stepped.append(assign)
            elif not assign.node.varying and not any(assign.states):
                hoisted_statements.append(assign)
            else:
                stepped.append(assign)
        for assign in hoisted_statements:
            value = self.expression(assign.node, False)
            axes = ["T", "B"] if assign.node.batched else []
            self.hoist_lines.append(self._assignment(assign, value, axes))
        step_lines = []
        for assign in stepped:
            if assign.sizes[0] is None:
                step_lines.append(self._assignment(assign, self.expression(assign.node, True),
                                                   []))
                continue
            self._plan(assign.node)
            node = self._rewrite(assign.node)
            value = self.expression(node, True)
            if not assign.node.batched and any(assign.states):
                # a value of parameters only: each piece given the batch of the state
                reference = self._name(assign.targets[assign.states.index(True)])
                if len(assign.targets) > 1:
                    value = f"(piece.expand_as({reference}) for piece in {value})"
                else:
                    value = f"({value}).expand_as({reference})"
                step_lines.append(self._assignment(assign, value, ["B"]))
            else:
                step_lines.append(self._assignment(assign, value,
                                                   ["B"] if assign.node.batched else []))
        if not self.passed:  # the loop needs one value per step, even if unread
            self.passed.append((self.x, True))
            self._unread_inputs = True
        return self._class(step_lines)

    def _assignment(self, assign: Assign, value: str, axes: list[str]) -> str:
        """`a = ...` (`(a,) = ...` for a one-piece chunk), with its shape comment."""
        names = [self._name(t) for t in assign.targets]
        several = len(names) > 1 or assign.node.op == "chunk"
        targets = _tuple(names, bare=True) if several else names[0]
        comment = ("each " if several else "") + self._shape(assign.sizes[0], axes)
        if value == targets:
            return f"        # {targets} keeps its value"
        return _line(f"{targets} = {value}", comment, 8)

    def _rewrite(self, node: Node) -> Node:
        if id(node) in self._rewritten:
            return self._rewritten[id(node)]
        if not node.args or not isinstance(node.args[0], Node) or id(node) in self.hoisted:
            return node
        args = tuple(self._rewrite(a) if isinstance(a, Node) else a for a in node.args)
        rebuilt = node._replace(args=args)
        self._keep.append(rebuilt)
        return rebuilt

    def _class(self, step_lines: list[str]) -> str:
        cell = self.cell
        weights = "".join(f"        {p}: Tensor\n" for p in self.step.params) or \
            '        """The cell has no parameters."""\n'
        initial = [(p.role, p.init) for p in cell.parameters if p.init != ("uniform",)]
        initial_text = ""
        if initial:
            entries = ", ".join(_tuple([f'"{role}"', f'"{init[0]}"',
                                        *(_literal(v) for v in init[1:])])
                                for role, init in initial)
            initial_text = _line(f"initial = {_tuple([entries])}", None, 4) + "\n"
        # always written: `_Recurrent`'s default (the built-ins' weight_hh) is not this cell's
        names = _tuple([f'"{name}"' for name in self.step.recurrent_weights])
        recurrent_text = _line(f"recurrent_weights = {names}", None, 4) + "\n"
        doc = [f'    """Cell `{cell.name}`, declared at line {cell.span.line}:', ""]
        for assign in self.step.statements:
            doc += textwrap.wrap(assign.text, LINE_LENGTH, initial_indent="    ",
                                 subsequent_indent="        ", break_on_hyphens=False)
        doc.append('    """')
        unpack = _tuple([name for name, _ in self.passed], bare=True)
        returned = _tuple(self.states, bare=True)
        state_unpack = _tuple(self.states, bare=True)
        lines = [f"class {self.class_name}(_Recurrent):", *doc, "",
                 "    class Weights(NamedTuple):", weights.rstrip("\n"), ""]
        if initial_text or recurrent_text:
            lines += [(initial_text + recurrent_text).rstrip("\n"), ""]
        lines += [
            "    def hoist(self, input: Tensor, w: Weights) -> tuple:",
            f"        {self.x} = input  # [T, B, input_size]",
            *self.hoist_lines,
            *self._expanded(),
            f"        return {unpack}",
            "",
            "    def step(self, inputs: tuple, state: tuple, w: Weights) -> tuple:",
            "        del inputs  # the step reads no input" if self._unread_inputs
            else f"        {unpack} = inputs",
            f"        {state_unpack} = state",
            *step_lines,
            f"        return {returned}",
        ]
        return "\n".join(line.rstrip() for line in lines)

    def _expanded(self) -> list[str]:
        """Values without a time axis (parameters only), given one: one view per step."""
        out = []
        for name, batched in self.passed:
            if not batched:
                out.append(f"        {name} = {name}.expand(input.shape[0], *{name}.shape)")
        return out


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

