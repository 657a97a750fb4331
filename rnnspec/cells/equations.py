"""Cells declared by their equations (language reference, section 8): scopes, symbolic
shapes, and the typed step that the emitter writes out.

Every size is a `Size` polynomial over the size names, so each shape rule is proved once
for all sizes: `weight_ih @ x` needs the columns of `weight_ih` to equal `input_size` as
polynomials. A rule that holds for some sizes only (a chunk of `input_size + hidden_size`
into 2) becomes a condition checked at each block that uses the cell.

The result is one more registry record (`registry.Cell`) whose `step` is a `Step`: the
statements as a tree of `Node`s, each knowing its size and whether it reads a state (the
emitter computes everything that does not before the time loop).
"""

from __future__ import annotations

import keyword
from typing import NamedTuple

from rnnspec.cells.ops import FUNCTIONS, INITIALISERS, OPERATORS, OPS, Kind, Op
from rnnspec.cells.ops import function as _function_record
from rnnspec.cells.registry import (
    COMMON_ARGUMENTS,
    ArgumentRule,
    Cell,
    ParameterTemplate,
    StateTemplate,
)
from rnnspec.cells.shapes import MAX_DIMENSION, Size, format_shape, quotient
from rnnspec.check.evaluate import POISON, Evaluator, names_in
from rnnspec.language import ast
from rnnspec.language.diagnostics import Diagnostic, Note, Sink, Span, error, warning
from rnnspec.language.names import suggest

SIZE_NAMES = ("input_size", "hidden_size")


class Node(NamedTuple):
    """One value of the step: `op` over `args`, with its size (None: a number)."""

    op: str  # x, state, local, param, number, add, sub, mul, div, neg, matmul, a function
    args: tuple  # child Nodes
    value: object  # a number, a name (x/state/local/param), or a function's constants
    size: Size | None
    varying: bool  # reads a state: must run inside the time loop
    batched: bool  # reads x or a state: has a batch axis
    span: Span


class Assign(NamedTuple):
    """`names = node`; several names when `node` is a chunk."""

    targets: tuple[str, ...]  # unique per assignment: a local assigned again gets a new name
    states: tuple[bool, ...]  # whether each target is a state
    node: Node
    sizes: tuple[Size, ...]
    text: str  # the statement as written in the spec, for docstrings
    span: Span


class Step(NamedTuple):
    states: tuple[str, ...]  # in declaration order; the first is the output
    params: tuple[str, ...]
    statements: tuple[Assign, ...]
    recurrent_weights: tuple[str, ...]  # matrix parameters that multiply a state
    conditions: tuple  # (size, divisor, span, text): divisibility checked per block


def _number(value) -> Node:
    return Node(Op.NUMBER, (), value, None, False, False, None)


class _Scope:
    """What a name means inside a cell body, and what has been read."""

    def __init__(self):
        self.kinds: dict[str, str] = {}  # name -> size / state / param / local / x
        self.spans: dict[str, Span] = {}
        self.sizes: dict[str, Size] = {}  # states and vector params: their size
        self.matrices: dict[str, tuple[Size, Size]] = {}
        self.current: dict[str, Node] = {}  # states and locals: the node a read gives
        self.read: set[str] = set()  # names of parameters and local versions read
        self.assigned_states: dict[str, Span] = {}
        self.local_versions: list[tuple[str, Span]] = []


class CellChecker:
    """Checks one `cell` item; `cell()` is its registry record, or None after errors."""

    def __init__(self, item: ast.Cell, values: Evaluator, problems: Sink):
        self.item = item
        self.values = values
        self.problems = problems
        self.scope = _Scope()
        self.conditions: list = []
        self.statements: list[Assign] = []
        self.recurrent: list[str] = []
        self._names_used: set[str] = set()
        self.shown: dict[str, str] = {}  # a local's unique name -> its name in the spec
        self.arguments: list[ArgumentRule] = []  # the header's sizes, as block arguments

    # ------------------------------------------------------------------- helpers

    def _error(self, code: str, message: str, span: Span, **more) -> None:
        self.problems.append(error(code, message, span, **more))

    def _declare(self, name: str, span: Span, kind: str) -> bool:
        if not name.isascii() or not name.isidentifier() or keyword.iskeyword(name) \
                or name.startswith("_"):
            self._error("E012", f"`{name}` cannot name a {kind} of a cell", span,
                        help="use an ASCII identifier that is not a Python keyword and "
                             "does not start with `_`")
            return False
        if name in self.scope.kinds:
            first = self.scope.spans.get(name)
            where = [Note(f"`{name}` is first defined here", first)] if first else []
            what = {"size": "a size", "x": "the step's input"}.get(self.scope.kinds[name],
                                                                    f"a {self.scope.kinds[name]}")
            self._error("E011", f"`{name}` is already {what} of cell `{self.item.name}`",
                        span, notes=where)
            return False
        self.scope.kinds[name] = kind
        self.scope.spans[name] = span
        return True

    # ------------------------------------------------------------------- sizes

    def size(self, expr) -> Size | None:
        """A size expression as a polynomial over the size names; None after an error."""
        if isinstance(expr, ast.Integer):
            return Size.of(expr.value)
        if isinstance(expr, ast.Name):
            if self.scope.kinds.get(expr.name) == "size":
                return Size.of(expr.name)
            if expr.name in self.values.lets:
                value = self.values.evaluate(expr)
                if isinstance(value, int) and not isinstance(value, bool):
                    return Size.of(value)
                if value is not POISON:
                    self._error("E020", f"a size must be an integer, `{expr.name}` is "
                                f"{value!r}", expr.span)
                return None
            known = [n for n, k in self.scope.kinds.items() if k == "size"] + list(
                self.values.lets)
            self._error("E010", f"unknown size `{expr.name}`", expr.span,
                        help=suggest(expr.name, known)
                        or "sizes are written with `input_size`, `hidden_size`, the cell's "
                           "arguments and constants")
            return None
        if isinstance(expr, ast.Negation):
            inner = self.size(expr.operand)
            return None if inner is None else (-inner if expr.signs % 2 else inner)
        if isinstance(expr, ast.Chain):
            result = self.size(expr.first)
            for symbol, symbol_span, operand in expr.rest:
                value = self.size(operand)
                if result is None or value is None:
                    result = None
                    continue
                if symbol == "+":
                    result = result + value
                elif symbol == "-":
                    result = result - value
                elif symbol == "*":
                    result = result * value
                elif symbol == "//" and value.constant and value.constant > 0:
                    result = quotient(result, value.constant)  # floor division
                else:
                    self._error("E071", f"sizes combine with `+ - *` and `//` by an integer,"
                                f" not `{symbol} {value}`", symbol_span)
                    result = None
            return result
        if isinstance(expr, ast.Invalid):
            return None
        self._error("E020", "a size must be an integer expression of the size names",
                    expr.span)
        return None

    # ------------------------------------------------------------------- declarations

    def declare(self) -> bool:
        item = self.item
        with self.problems.watch() as step:
            for name in SIZE_NAMES:
                self.scope.kinds[name] = "size"
            reserved = {rule.name for rule in COMMON_ARGUMENTS}
            for argument in item.arguments:
                if argument.name in reserved:
                    self._error("E011", f"`{argument.name}` is already an argument of every "
                                "block", argument.name_span,
                                help="a cell declares only its own sizes")
                    continue
                if not self._declare(argument.name, argument.name_span, "size"):
                    continue
                default = None
                if argument.default is not None:
                    default = self.values.typed(argument.default, "int", f"`{argument.name}`")
                    default = self.values.in_range(default, argument.default.span,
                                                   f"`{argument.name}`", 1)
                    if default is POISON:
                        continue
                self.arguments.append(ArgumentRule(
                    argument.name, "int", default, required=default is None, minimum=1,
                    meaning=f"a size of cell `{item.name}`"))
            self.scope.kinds["x"] = "x"
            self.scope.sizes["x"] = Size.of("input_size")
            self.states: list[StateTemplate] = []
            for state in item.states:
                size = self.size(state.size)
                if self._declare(state.name, state.name_span, "state") and size is not None:
                    self.states.append(StateTemplate(state.name, size))
                    self.scope.sizes[state.name] = size
                    self.scope.current[state.name] = Node(
                        "state", (), state.name, size, True, True, state.name_span)
            if not item.states:
                self._error("E076", f"cell `{item.name}` declares no state", item.name_span,
                            help="add `state h[hidden_size]`: the first state is the output")
            self.parameters: list[ParameterTemplate] = []
            for param in item.params:
                self._param(param)
        return not step.failed

    def _param(self, param: ast.ParamDeclaration) -> None:
        dims = [self.size(d) for d in param.dims]
        if len(dims) not in (1, 2):
            self._error("E076", f"parameter `{param.name}` has {len(dims)} dimensions",
                        param.dims_span,
                        help="a parameter is a vector `[n]` or a matrix `[rows, columns]`")
            return
        init = self._initialiser(param.init)
        if not self._declare(param.name, param.name_span, "param") or None in dims \
                or init is None:
            return
        self.parameters.append(ParameterTemplate(param.name, tuple(dims), init=init))
        if len(dims) == 1:
            self.scope.sizes[param.name] = dims[0]
        else:
            self.scope.matrices[param.name] = (dims[0], dims[1])

    def _initialiser(self, init) -> tuple | None:
        if init is None:
            return ("uniform",)
        name = init.name
        arguments = init.arguments if isinstance(init, ast.Call) else ()
        if name not in INITIALISERS:
            self._error("E076", f"unknown initialiser `{name}`", init.span,
                        help=suggest(name, INITIALISERS) or "the initialisers are "
                        + ", ".join(f"`{n}`" for n in INITIALISERS))
            return None
        low, high = INITIALISERS[name]
        if not (len(arguments) == 0 and low == 0 or low <= len(arguments) <= high) or \
                any(a.name is not None for a in arguments):
            forms = {"uniform": "`uniform` or `uniform(a, b)`", "normal": "`normal(mean, std)`"}
            self._error("E076", f"`{name}` takes no arguments" if high == 0 else
                        f"write {forms[name]}", init.span)
            return None
        numbers = [self.values.typed(a.value, "float", "an initialiser's argument")
                   for a in arguments]
        if POISON in numbers:
            return None
        if name == "normal" and numbers[1] < 0:
            self._error("E076", f"`normal(mean, std)` needs `std >= 0`, found {numbers[1]:g}",
                        arguments[1].span)
            return None
        if name == "uniform" and numbers and numbers[0] > numbers[1]:
            self._error("E076", f"`uniform(a, b)` needs `a <= b`, found {numbers[0]:g} > "
                        f"{numbers[1]:g}", init.span)
            return None
        return (name, *numbers)

    # ------------------------------------------------------------------- statements

    def statement(self, statement: ast.Statement) -> None:
        targets = statement.targets
        value = statement.value
        if len(targets) > 1 or (isinstance(value, ast.Call) and value.name == "chunk"):
            node = self._chunk(statement)
            if node is None:
                self._assign_poison(targets)
                return
            pieces = node.value[1]
            sizes = (pieces,) * len(targets)
        else:
            node = self.expr(value)
            if node is None:
                self._assign_poison(targets)
                return
            sizes = (node.size,)
        names, states = [], []
        # a statement that gives a state its value runs in the time loop, and so do the
        # locals it assigns: reading them later reads the loop's values
        in_loop = node.varying or any(self.scope.kinds.get(n) == "state" for n, _ in targets)
        for (name, span), size in zip(targets, sizes):
            kind = self.scope.kinds.get(name)
            if kind == "state":
                declared = self.scope.sizes[name]
                if name in self.scope.assigned_states:
                    self._error("E075", f"state `{name}` is assigned twice in one step", span,
                                notes=[Note("first assigned here",
                                            self.scope.assigned_states[name])],
                                help="assign a local and give the state its final value once")
                    continue
                self.scope.assigned_states[name] = span
                if size is not None and size != declared:
                    self._error("E071", f"state `{name}` is {format_shape([declared])}, the "
                                f"value is {format_shape([size])}", span,
                                help=_multiple_help(size, declared))
                    continue
                if size is None:
                    self._error("E071", f"state `{name}` is {format_shape([declared])}, the "
                                "value is a number", span)
                    continue
                names.append(name)
                states.append(True)
                self.scope.current[name] = Node(Op.LOCAL, (), name, size, True, True, span)
                continue
            if kind in ("x", "param", "size"):
                what = {"x": "the step's input", "param": "a parameter", "size": "a size"}[kind]
                self._error("E075", f"`{name}` is {what} and cannot be assigned", span)
                continue
            if name in self.values.lets:
                self._error("E075", f"`{name}` is a constant and cannot be assigned", span)
                continue
            if kind is None and not self._declare(name, span, "local"):
                continue
            unique = self._unique_local(name)
            self.shown[unique] = name
            names.append(unique)
            states.append(False)
            self.scope.current[name] = Node(Op.LOCAL, (), unique, size, in_loop,
                                            node.batched or in_loop, span)
            self.scope.local_versions.append((unique, span))
        if len(names) == len(targets):
            text = ", ".join(n for n, _ in targets) + " = " + describe(node, self.shown)
            self.statements.append(Assign(tuple(names), tuple(states), node, sizes, text,
                                          statement.span))

    def _unique_local(self, name: str) -> str:
        unique, index = name, 1
        while unique in self._names_used or (unique != name and unique in self.scope.kinds):
            unique = f"{name}_{index}"
            index += 1
        self._names_used.add(unique)
        return unique

    def _assign_poison(self, targets) -> None:
        """After an error, the names stay defined (no second error), their value unknown."""
        for name, span in targets:
            kind = self.scope.kinds.get(name)
            if kind == "state":
                self.scope.assigned_states.setdefault(name, span)
                self.scope.current[name] = None
            elif kind in (None, "local"):
                self.scope.kinds[name] = "local"
                self.scope.spans.setdefault(name, span)
                self.scope.current[name] = None

    def _chunk(self, statement: ast.Statement) -> Node | None:
        value = statement.value
        count = len(statement.targets)
        if not (isinstance(value, ast.Call) and value.name == "chunk"):
            self._error("E073", f"{count} names on the left need `chunk(..., {count})` on the "
                        "right", statement.span,
                        help="a destructuring assignment splits a vector into equal pieces")
            return None
        arguments = value.arguments
        if len(arguments) != 2 or any(a.name for a in arguments):
            self._error("E074", "`chunk` takes a vector and a number of pieces: "
                        "`chunk(v, n)`", value.span)
            return None
        inner = self.expr(arguments[0].value)
        pieces = self.values.typed(arguments[1].value, "int", "the number of pieces")
        pieces = self.values.in_range(pieces, arguments[1].value.span, "the number of pieces",
                                      1)
        if inner is None or pieces is POISON:
            return None
        if inner.size is None:
            self._error("E074", "`chunk` needs a vector, found a number", arguments[0].span)
            return None
        if pieces != count:
            names = ", ".join(f"`{n}`" for n, _ in statement.targets)
            self._error("E073", f"`chunk` makes {pieces} pieces, but {count} names receive "
                        f"them ({names})", arguments[1].span,
                        help=f"write `chunk(..., {count})`, or {pieces} names on the left")
            return None
        piece = inner.size.exact_div(pieces)
        if piece is None:
            constant = inner.size.constant
            if constant is not None:
                self._error("E073", f"`chunk` cannot split {constant} features into {pieces} "
                            "equal pieces", value.span)
                return None
            # holds for some sizes only: checked for each block that uses the cell
            self.conditions.append((inner.size, pieces, value.span,
                                    f"`chunk` splits {format_shape([inner.size])} into "
                                    f"{pieces}"))
            piece = quotient(inner.size, pieces)
        return Node(Op.CHUNK, (inner,), (pieces, piece), inner.size, inner.varying,
                    inner.batched, value.span)

    # ------------------------------------------------------------------- expressions

    def expr(self, expr) -> Node | None:
        """The node of an expression; None after a diagnostic (reported once)."""
        if isinstance(expr, ast.Integer | ast.Float):
            return _number(expr.value)._replace(span=expr.span)
        if isinstance(expr, ast.Boolean):
            self._error("E020", "`true` and `false` are not values in equations", expr.span)
            return None
        if isinstance(expr, ast.Invalid):
            return None
        if isinstance(expr, ast.Name):
            return self._name(expr)
        if isinstance(expr, ast.Negation):
            inner = self.expr(expr.operand)
            if inner is None or expr.signs % 2 == 0:
                return inner
            return inner._replace(op=Op.NEG, args=(inner,), value=None, span=expr.span)
        if isinstance(expr, ast.Chain):
            return self._chain(expr)
        if isinstance(expr, ast.Call):
            return self._call(expr)
        self._error("E074", "this is not an expression of the step", expr.span)
        return None

    def _name(self, expr: ast.Name) -> Node | None:
        name = expr.name
        kind = self.scope.kinds.get(name)
        if kind == "x":
            return Node(Op.X, (), "x", self.scope.sizes["x"], False, True, expr.span)
        if kind in ("state", "local"):
            node = self.scope.current.get(name)
            if node is not None and node.op == "local":
                self.scope.read.add(node.value)
            return None if node is None else node._replace(span=expr.span)
        if kind == "param":
            self.scope.read.add(name)
            if name in self.scope.matrices:
                rows, columns = self.scope.matrices[name]
                self._error("E072", f"`{name}` is a matrix {format_shape([rows, columns])}: it "
                            "can only multiply a vector", expr.span,
                            help=f"write `{name} @ v` for a vector `v` of size {columns}")
                return None
            if name not in self.scope.sizes:  # its declaration failed, already reported
                return None
            return Node(Op.PARAM, (), name, self.scope.sizes[name], False, False, expr.span)
        if kind == "size":
            self._error("E074", f"`{name}` is a size: sizes appear in declarations, not in "
                        "equations", expr.span)
            return None
        if name in self.values.lets:
            value = self.values.evaluate(expr)
            if value is POISON:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float):
                self._error("E020", f"`{name}` is not a number", expr.span)
                return None
            return _number(value)._replace(span=expr.span)
        candidates = [n for n, k in self.scope.kinds.items() if k != "size"]
        hint = suggest(name, candidates + list(self.values.lets))
        if name in FUNCTIONS:
            hint = f"`{name}` is a function: write `{name}(...)`"
        self._error("E010", f"unknown name `{name}` in cell `{self.item.name}`", expr.span,
                    help=hint)
        return None

    def _chain(self, chain: ast.Chain) -> Node | None:
        if chain.rest and chain.rest[0][0] == "@":
            left = self._matrix(chain.first)
        else:
            left = self.expr(chain.first)
        for symbol, symbol_span, operand in chain.rest:
            if symbol == "//":
                self._error("E074", "`//` divides sizes; in equations divide with `/`",
                            symbol_span)
                return None
            if symbol == "@" and isinstance(operand, ast.Name) \
                    and operand.name in self.scope.matrices:
                right = self._matrix(operand)  # `v @ W`: reported at the `@`
            else:
                right = self.expr(operand)
            if left is None or right is None:
                left = None
                continue
            if symbol == "@":
                left = self._matmul(left, right, symbol_span, chain.first, operand)
            else:
                left = self._elementwise(OPERATORS[symbol], left, right, symbol_span)
        return left

    def _matrix(self, expr) -> Node | None:
        """The left of `@`: a matrix parameter, by name."""
        if isinstance(expr, ast.Name) and expr.name in self.scope.matrices:
            self.scope.read.add(expr.name)
            rows, columns = self.scope.matrices[expr.name]
            return Node(Op.PARAM, (), expr.name, None, False, False, expr.span)._replace(
                value=expr.name, args=(rows, columns))
        node = self.expr(expr)
        if node is None:
            return None
        return node._replace(op=Op.NOT_A_MATRIX)

    def _matmul(self, left: Node, right: Node, span: Span, left_expr, right_expr) -> Node | None:
        if left.op != "param" or not left.args:
            if isinstance(right_expr, ast.Name) and right_expr.name in self.scope.matrices:
                help = (f"the matrix goes on the left, as in `F.linear`: "
                        f"`{right_expr.name} @ ...`")
            else:
                help = "declare a matrix parameter `param W[rows, columns]` and write `W @ v`"
            self._error("E072", "`@` needs a matrix parameter on its left", span, help=help)
            return None
        name = left.value
        rows, columns = left.args
        if right.size is None:
            if right.op == "param" and right.args:  # `W @ V @ x` reads as `(W @ V) @ x`
                self._error("E072", f"`{name} @ {right.value}` multiplies two matrices", span,
                            help=f"`@` takes a matrix and a vector: write "
                                 f"`{name} @ ({right.value} @ v)`")
            else:
                self._error("E072", f"`{name} @ ...` needs a vector on the right, found a "
                            "number", span)
            return None
        if right.size != columns:
            vector = _describe_operand(right_expr)
            help = None
            if right.size == rows:
                help = (f"`{name}` looks transposed: PyTorch's layout (`F.linear`) is "
                        f"[out, in]; declare it `[{columns}, {rows}]`")
            self._error("E072", f"`{name} @ {vector}`: `{name}` has {columns} columns, "
                        f"`{vector}` has {right.size} features", span, help=help,
                        notes=[Note(f"`{name}` is declared {format_shape([rows, columns])} "
                                    "here", self.scope.spans[name])])
            return None
        if right.varying and name not in self.recurrent:
            self.recurrent.append(name)
        matrix = Node(Op.PARAM, (), name, None, False, False, left.span)
        return Node(Op.MATMUL, (matrix, right), None, rows, right.varying, right.batched, span)

    def _elementwise(self, op: str, left: Node, right: Node, span: Span) -> Node | None:
        if left.size is not None and right.size is not None and left.size != right.size:
            self._error("E071", f"cannot {OPS[op].verb} {format_shape([left.size])} and "
                        f"{format_shape([right.size])}", span,
                        help=_multiple_help(left.size, right.size)
                        or _multiple_help(right.size, left.size))
            return None
        size = left.size if left.size is not None else right.size
        return Node(op, (left, right), None, size, left.varying or right.varying,
                    left.batched or right.batched, span)

    def _call(self, call: ast.Call) -> Node | None:
        name = call.name
        for argument in call.arguments:  # read, even when the call itself is wrong
            self.scope.read.update(n.name for n in names_in(argument.value)
                                   if self.scope.kinds.get(n.name) == "param")
        record = _function_record(name)
        if record is None:
            self._error("E074", f"unknown function `{name}`", call.name_span,
                        help=suggest(name, FUNCTIONS) or "the functions are "
                        + ", ".join(f"`{f}`" for f in FUNCTIONS))
            return None
        for argument in call.arguments:
            if argument.name is not None:
                self._error("E074", f"`{name}` takes its arguments by position",
                            argument.name_span)
                return None
        arguments = [a.value for a in call.arguments]
        return getattr(self, record.rule)(record.op, call, arguments)

    def _chunk_call(self, op: Op, call: ast.Call, arguments) -> None:
        self._error("E073", "`chunk(...)` stands alone on the right of `a, b, ... =`",
                    call.span, help="write `a, b = chunk(v, 2)` and use `a` and `b`")

    def _clamp(self, op: Op, call: ast.Call, arguments) -> Node | None:
        if len(arguments) != 3:
            self._error("E074", "write `clamp(v, low, high)`", call.span)
            return None
        inner = self._vector(op, arguments[0])
        bounds = [self.values.typed(a, "float", "a bound of `clamp`") for a in arguments[1:]]
        if inner is None or POISON in bounds:
            return None
        return Node(Op.CLAMP, (inner,), tuple(bounds), inner.size, inner.varying,
                    inner.batched, call.span)

    def _pair(self, op: Op, call: ast.Call, arguments) -> Node | None:
        if len(arguments) != 2:
            self._error("E074", f"write `{op}(a, b)`", call.span)
            return None
        left, right = self.expr(arguments[0]), self.expr(arguments[1])
        if left is None or right is None:
            return None
        if left.size is None and right.size is None:
            self._error("E074", f"`{op}` of two numbers: write the number", call.span)
            return None
        return self._elementwise(op, left, right, call.name_span)

    def _vector(self, function: str, expr) -> Node | None:
        node = self.expr(expr)
        if node is not None and node.size is None:
            self._error("E074", f"`{function}` needs a vector, found a number", expr.span)
            return None
        return node

    def _unary(self, name: Op, call: ast.Call, arguments) -> Node | None:
        if len(arguments) != 1:
            self._error("E074", f"`{name}` takes one argument, found {len(arguments)}",
                        call.span)
            return None
        inner = self._vector(name, arguments[0])
        if inner is None:
            return None
        return Node(name, (inner,), None, inner.size, inner.varying, inner.batched, call.span)

    def _layer_norm(self, op: Op, call: ast.Call, arguments) -> Node | None:
        if not 1 <= len(arguments) <= 4:
            self._error("E074", "write `layer_norm(v)`, `layer_norm(v, weight)`, "
                        "`layer_norm(v, weight, bias)` or `layer_norm(v, weight, bias, eps)`",
                        call.span)
            return None
        inner = self._vector("layer_norm", arguments[0])
        affine = []
        for role, expr in zip(("weight", "bias"), arguments[1:3]):
            node = self.expr(expr)
            if node is None:
                return None
            if node.op != "param":
                self._error("E074", f"the {role} of `layer_norm` must be a vector parameter",
                            expr.span)
                return None
            if inner is not None and node.size != inner.size:
                self._error("E071", f"`layer_norm` of {format_shape([inner.size])} needs a "
                            f"{role} of that size, `{node.value}` is "
                            f"{format_shape([node.size])}", expr.span)
                return None
            affine.append(node)
        eps = 1e-5
        if len(arguments) == 4:
            given = arguments[3]
            if isinstance(given, ast.Name) and given.name in self.scope.kinds:
                self._error("E074", "the `eps` of `layer_norm` is a number, not "
                            f"`{given.name}`", given.span, help="write `1e-5`, for instance")
                return None
            eps = self.values.typed(given, "float", "the `eps` of `layer_norm`")
            if eps is POISON:
                return None
        if inner is None:
            return None
        return Node(Op.LAYER_NORM, (inner, *affine), eps, inner.size, inner.varying,
                    inner.batched, call.span)

    def _concat(self, op: Op, call: ast.Call, arguments) -> Node | None:
        if len(arguments) < 2:
            self._error("E074", "`concat` joins two or more vectors", call.span)
            return None
        parts = [self._vector("concat", a) for a in arguments]
        if None in parts:
            return None
        size = Size()
        for part in parts:
            size = size + part.size
        return Node(Op.CONCAT, tuple(parts), None, size, any(p.varying for p in parts),
                    any(p.batched for p in parts), call.span)

    # ------------------------------------------------------------------- the cell

    def cell(self) -> Cell | None:
        with self.problems.watch() as step:
            declared = self.declare()
            if declared:
                for statement in self.item.statements:
                    self.statement(statement)
                self._unused()
        if step.failed:
            return None
        step_ir = Step(
            states=tuple(s.name for s in self.states),
            params=tuple(p.role for p in self.parameters),
            statements=tuple(self.statements),
            recurrent_weights=tuple(self.recurrent),
            conditions=tuple(self.conditions),
        )
        equations = "; ".join(a.text for a in self.statements)
        return Cell(
            name=self.item.name,
            arguments=(*COMMON_ARGUMENTS, *self.arguments),
            positional=False,
            parameters=tuple(self.parameters),
            states=tuple(self.states),
            equations=equations,
            span=self.item.name_span,
            declared=tuple(rule.name for rule in self.arguments),
            step=step_ir,
        )

    def _unused(self) -> None:
        scope = self.scope
        for param in self.parameters:
            if param.role not in scope.read:
                self.problems.append(warning(
                    "W003", f"parameter `{param.role}` of cell `{self.item.name}` is never read",
                    scope.spans[param.role], help="use it in an equation, or remove it"))
        for name, span in scope.local_versions:
            if name not in scope.read:
                self.problems.append(warning(
                    "W004", f"`{self.shown[name]}` is assigned but never read", span,
                    help="use it, or remove the assignment"))
        for state in self.states:
            if state.name not in scope.assigned_states:
                self.problems.append(warning(
                    "W005", f"state `{state.name}` of cell `{self.item.name}` is never "
                    "assigned: it keeps its initial value", scope.spans[state.name],
                    help=f"assign it: `{state.name} = ...`"))


def _multiple_help(found: Size, wanted: Size) -> str | None:
    """A `help:` when one size is a whole multiple of the other: a missing `chunk`."""
    for factor in range(2, 9):
        if found == wanted * factor:
            return (f"{format_shape([found])} is {factor} × {format_shape([wanted])}: split "
                    f"it with `a, b, ... = chunk(..., {factor})` first")
    return None


def _describe_operand(expr) -> str:
    if isinstance(expr, ast.Name):
        return expr.name
    if isinstance(expr, ast.Call):
        return f"{expr.name}(...)"
    return "(...)"


def describe(node: Node, shown: dict[str, str] | None = None) -> str:
    """A node written back in the language, for docstrings and hovers; `shown` maps the
    unique names of locals assigned more than once back to the spec's name."""
    return _Describer(shown or {}).text(node)


class _Describer:
    """Writes a node back through the op table: operators by their symbol and precedence,
    functions by name with their constants."""

    def __init__(self, shown: dict[str, str]):
        self.shown = shown

    def text(self, node: Node, parent: int = 0, right: bool = False) -> str:
        op = node.op
        record = OPS.get(op)
        if op == Op.NUMBER:
            return repr(node.value) if isinstance(node.value, float) else str(node.value)
        if record is not None and record.kind is Kind.LEAF:
            return self.shown.get(node.value, str(node.value))
        if op == Op.NEG:
            inner = "-" + self.text(node.args[0], record.precedence)
            return f"({inner})" if parent > record.precedence else inner
        if record is not None and record.kind is Kind.OPERATOR:
            level = record.precedence
            left = self.text(node.args[0], level)
            rhs = self.text(node.args[1], level, right=True)
            inner = f"{left} {record.symbol} {rhs}"
            return f"({inner})" if level < parent or (right and level == parent) else inner
        if op == Op.CHUNK:
            return f"chunk({self.text(node.args[0])}, {node.value[0]})"
        arguments = [self.text(a) for a in node.args]
        if op == Op.CLAMP:
            arguments += [repr(v) for v in node.value]
        if op == Op.LAYER_NORM and node.value != 1e-5:
            arguments += ["_"] * (3 - len(arguments)) + [repr(node.value)]
        return f"{op}({', '.join(arguments)})"


def check_cell(item: ast.Cell, values: Evaluator, problems: Sink) -> tuple[Cell | None, tuple]:
    """The registry record of a declared cell, or None after a diagnostic; and the
    arguments its blocks take (known from the header even when the body is wrong)."""
    checker = CellChecker(item, values, problems)
    cell = checker.cell()
    return cell, (*COMMON_ARGUMENTS, *checker.arguments)


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
