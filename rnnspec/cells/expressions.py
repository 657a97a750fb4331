"""The expressions of a cell's statements: each checked by its shape rule (the op table,
`ops.OPS`, names the rule of each function) into a `Node` of the cell IR."""

from __future__ import annotations

from rnnspec.cells.declare import Part, Scope
from rnnspec.cells.ir import Node, number
from rnnspec.cells.ops import FUNCTIONS, OPERATORS, OPS, Op
from rnnspec.cells.ops import function as _function_record
from rnnspec.cells.shapes import Size, format_shape
from rnnspec.check.evaluate import POISON, Evaluator, names_in
from rnnspec.language import ast
from rnnspec.language.diagnostics import Note, Sink, Span
from rnnspec.language.names import suggest


class Expressions(Part):
    """Checks the expressions of one cell's body against its scope; `recurrent` collects
    the matrices that multiply a state."""

    def __init__(self, item: ast.Cell, values: Evaluator, problems: Sink, scope: Scope):
        super().__init__(item, values, problems, scope)
        self.recurrent: list[str] = []

    def expr(self, expr) -> Node | None:
        """The node of an expression; None after a diagnostic (reported once)."""
        return self.dispatch(expr, "expr_")

    def expr_Integer(self, expr) -> Node:
        return number(expr.value)._replace(span=expr.span)

    expr_Float = expr_Integer

    def expr_Boolean(self, expr: ast.Boolean) -> None:
        self._error("E020", "`true` and `false` are not values in equations", expr.span)

    def expr_Invalid(self, expr: ast.Invalid) -> None:
        return None

    def expr_Negation(self, expr: ast.Negation) -> Node | None:
        inner = self.expr(expr.operand)
        if inner is None or expr.signs % 2 == 0:
            return inner
        return inner._replace(op=Op.NEG, args=(inner,), value=None, span=expr.span)

    def generic_visit(self, expr, *args) -> None:
        self._error("E074", "this is not an expression of the step", expr.span)
        return None

    def expr_Name(self, expr: ast.Name) -> Node | None:
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
            return number(value)._replace(span=expr.span)
        candidates = [n for n, k in self.scope.kinds.items() if k != "size"]
        hint = suggest(name, candidates + list(self.values.lets))
        if name in FUNCTIONS:
            hint = f"`{name}` is a function: write `{name}(...)`"
        self._error("E010", f"unknown name `{name}` in cell `{self.item.name}`", expr.span,
                    help=hint)
        return None

    def expr_Chain(self, chain: ast.Chain) -> Node | None:
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
                        help=multiple_help(left.size, right.size)
                        or multiple_help(right.size, left.size))
            return None
        size = left.size if left.size is not None else right.size
        return Node(op, (left, right), None, size, left.varying or right.varying,
                    left.batched or right.batched, span)

    def expr_Call(self, call: ast.Call) -> Node | None:
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


def multiple_help(found: Size, wanted: Size) -> str | None:
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


