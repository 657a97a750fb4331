"""The expressions of a cell's statements: each checked by its shape rule (the op table,
`ops.OPS`, names the rule of each function) into a `Node` of the cell IR."""

from __future__ import annotations

from rnnspec.cells.declare import Scope
from rnnspec.cells.functions import FunctionRules
from rnnspec.cells.ir import Node, number
from rnnspec.cells.ops import COMPARISONS, FUNCTIONS, OPERATORS, OPS, Op, is_condition
from rnnspec.cells.ops import function as _function_record
from rnnspec.cells.shapes import Size, format_shape
from rnnspec.check.evaluate import POISON, Evaluator, names_in
from rnnspec.language import ast
from rnnspec.language.diagnostics import Note, Sink, Span
from rnnspec.language.names import suggest

# A number in the equations reaches torch as a Python scalar beside float32 tensors (and the
# ONNX graph as a float32 constant): a whole number must fit int64, which torch makes of it,
# and every number float32 (docs/language.md, "Numbers").
INT64_MAX = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38
_FOLDED = {Op.ADD: lambda a, b: a + b, Op.SUB: lambda a, b: a - b,
           Op.MUL: lambda a, b: a * b, Op.DIV: lambda a, b: a / b}


def constant(node: Node):
    """The value of a node made of numbers alone (`2 * 3`, `-(1 / 4)`), else None."""
    if node.op == Op.NUMBER:
        return node.value
    if node.op == Op.NEG:
        inner = constant(node.args[0])
        return None if inner is None else -inner
    if node.op in _FOLDED:
        left, right = (constant(arg) for arg in node.args)
        if left is None or right is None or (node.op == Op.DIV and right == 0):
            return None
        return _FOLDED[node.op](left, right)
    return None


class Expressions(FunctionRules):
    """Checks the expressions of one cell's body against its scope; `recurrent` collects
    the matrices that multiply a state."""

    def __init__(self, item: ast.Cell, values: Evaluator, problems: Sink, scope: Scope):
        super().__init__(item, values, problems, scope)
        self.recurrent: list[str] = []
        self.probabilities: list[tuple[str, Span]] = []  # number arguments used as `p`
        self.dropouts = 0  # `dropout`s so far: each has its own mask, numbered in order

    def expr(self, expr) -> Node | None:
        """The node of an expression that is a value; None after a diagnostic (reported
        once). A condition is not a value: it is an error here (section 11)."""
        node = self.dispatch(expr, "expr_")
        if node is not None and is_condition(node):
            self._error("E078", "a condition is not a value", expr.span,
                        help="use it to choose between two values: `where(condition, a, b)`")
            return None
        return node

    def condition(self, expr) -> Node | None:
        """The node of an expression that is a condition (`where`'s first argument, the
        operands of `and`, `or`, `not`); a value there is an error."""
        node = self.dispatch(expr, "expr_")
        if node is not None and not is_condition(node):
            self._error("E078", "a condition is needed here, found a value", expr.span,
                        help="compare it: `v > 0`, `v == 1.0`")
            return None
        return node

    def mark_read(self, expr) -> None:
        """After a diagnostic in `expr`: every name it mentions counts as read, so that no
        "never read" warning follows the error (one root cause, one diagnostic)."""
        for name in names_in(expr):
            name = name.name
            kind = self.scope.kinds.get(name)
            if name in self.scope.pieces:
                self.scope.read.add(self.scope.pieces[name][0])
            elif kind == "param":
                self.scope.read.add(name)
            elif kind in ("state", "local"):
                node = self.scope.current.get(name)
                if node is not None and node.op == Op.LOCAL:
                    self.scope.read.add(node.value)

    def expr_Integer(self, expr) -> Node | None:
        node = number(expr.value)._replace(span=expr.span)
        return node if self._fits(expr.value, expr.span) else None

    def _fits(self, value, span: Span) -> bool:
        """Whether a number of the equations is one torch can use (E023 if not)."""
        if isinstance(value, float):
            shown = f"`{value:g}`"
        else:
            digits = len(str(abs(value)))
            shown = f"a number of {digits} digits" if digits > 20 else f"`{value}`"
        if isinstance(value, int) and abs(value) > INT64_MAX:
            self._error("E023", f"{shown} does not fit int64, as which torch takes a whole "
                        "number", span, help="write it as a float, such as `1e20`, or smaller")
        elif abs(value) > FLOAT32_MAX:
            self._error("E023", f"{shown} is beyond float32 (at most 3.4e38)", span)
        else:
            return True
        return False

    expr_Float = expr_Integer

    def expr_Boolean(self, expr: ast.Boolean) -> None:
        self._error("E020", "`true` and `false` are not values in equations", expr.span)

    def expr_Invalid(self, expr: ast.Invalid) -> None:
        return None

    def expr_Negation(self, expr: ast.Negation) -> Node | None:
        inner = self.expr(expr.operand)
        if inner is None or expr.signs % 2 == 0:
            return inner
        if inner.op == Op.NUMBER:  # `-3.0` is a number, as a bound of `clamp` needs
            return number(-inner.value)._replace(span=expr.span)
        return inner._replace(op=Op.NEG, args=(inner,), value=None, span=expr.span)

    def generic_visit(self, expr, *args) -> None:
        self._error("E074", "this is not an expression of the step", expr.span)
        return None

    def expr_Name(self, expr: ast.Name) -> Node | None:
        name = expr.name
        kind = self.scope.kinds.get(name)
        if kind == "x":
            return Node(Op.X, (), "x", self.scope.sizes["x"], False, True, expr.span)
        if name in self.scope.pieces:
            return self._matrix_as_value(name, expr.span)
        if kind in ("state", "local"):
            node = self.scope.current.get(name)
            if node is not None and node.op == "local":
                self.scope.read.add(node.value)
            return None if node is None else node._replace(span=expr.span)
        if kind == "param":
            self.scope.read.add(name)
            if name in self.scope.matrices:
                return self._matrix_as_value(name, expr.span)
            if name not in self.scope.sizes:  # its declaration failed, already reported
                return None
            return Node(Op.PARAM, (), name, self.scope.sizes[name], False, False, expr.span)
        if kind == "number":
            return Node(Op.ARGUMENT, (), name, None, False, False, expr.span)
        if kind == "size":
            self._error("E074", f"`{name}` is a size: sizes appear in declarations, not in "
                        "equations", expr.span,
                        help="a number of the equations is a header argument with a float "
                             f"default: `cell {self.item.name}({name} = 1.0)`")
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

    def _matrix_as_value(self, name: str, span: Span) -> None:
        """E072: a matrix (a parameter, or rows of one) where a value is needed."""
        rows, columns = self.scope.matrices[name]
        what = " (rows of a parameter)" if name in self.scope.pieces else ""
        self._error("E072", f"`{name}` is a matrix {format_shape([rows, columns])}{what}: it "
                    "can only multiply a vector", span,
                    help=f"write `{name} @ v` for a vector `v` of size {columns}")

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
            if symbol == "/" and right is not None and constant(right) == 0:
                self._error("E022", "division by zero", operand.span,
                            notes=[Note("in this division", symbol_span)])
                right = None  # reported whether or not the left is good
            if left is None or right is None:
                left = None
                continue
            if symbol == "@":
                left = self._matmul(left, right, symbol_span, chain.first, operand)
            else:
                left = self._elementwise(OPERATORS[symbol], left, right, symbol_span)
                folded = None if left is None else constant(left)
                if folded is not None and not self._fits(folded, chain.first.span.to(
                        operand.span)):
                    left = None
        return left

    def expr_Comparison(self, comparison: ast.Comparison) -> Node | None:
        """`a < b` (elementwise, a condition); `a < b < c` is `a < b and b < c`."""
        left = self.expr(comparison.first)
        result = None
        for symbol, span, operand in comparison.rest:
            right = self.expr(operand)
            if left is None or right is None:
                return None
            if left.size is None and right.size is None:
                self._error("E074", f"`{symbol}` compares two numbers: nothing in it varies",
                            span, help="compare a vector of the step with a number")
                return None
            pair = self._elementwise(COMPARISONS[symbol], left, right, span)
            if pair is None:
                return None
            result = pair if result is None else self._logic_pair(Op.AND, result, pair, span)
            left = right
        return result

    def expr_Logic(self, logic: ast.Logic) -> Node | None:
        operands = [self.condition(operand) for operand in logic.operands]
        if None in operands:
            return None
        result = operands[0]
        for operand in operands[1:]:
            result = self._logic_pair(Op(logic.operator), result, operand, logic.span)
            if result is None:
                return None
        return result

    def _logic_pair(self, op: Op, left: Node, right: Node, span: Span) -> Node | None:
        if left.size != right.size:
            self._error("E071", f"cannot combine conditions of {format_shape([left.size])} "
                        f"and {format_shape([right.size])} with `{op}`", span)
            return None
        return Node(op, (left, right), None, left.size, left.varying or right.varying,
                    left.batched or right.batched, span)

    def expr_Not(self, expr: ast.Not) -> Node | None:
        inner = self.condition(expr.operand)
        if inner is None or expr.count % 2 == 0:
            return inner
        return Node(Op.NOT, (inner,), None, inner.size, inner.varying, inner.batched,
                    expr.span)

    def expr_Conditional(self, expr: ast.Conditional) -> None:
        self._error("E074", "`a if condition else b` is not an expression of the step",
                    expr.span, help="write `where(condition, a, b)`")

    def _matrix(self, expr) -> Node | None:
        """The left of `@`: a matrix parameter, by name."""
        if isinstance(expr, ast.Name) and expr.name in self.scope.matrices:
            name = expr.name
            rows, columns = self.scope.matrices[name]
            if name in self.scope.pieces:
                self.scope.read.add(self.scope.pieces[name][0])
            else:
                self.scope.read.add(name)
            return Node(Op.PARAM, (), name, None, False, False, expr.span)._replace(
                args=(rows, columns))
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
        if right.size != columns and name in self.scope.heads:
            heads, _, per_head = self.scope.heads[name]
            self._error("E072", f"`{name} @ {_describe_operand(right_expr)}`: `{name}` has "
                        f"{heads} heads of {per_head} columns, the vector has {right.size} "
                        "features", span, notes=[Note(f"`{name}` is declared here",
                                                      self.scope.spans[name])],
                        help=f"the vector needs {heads} * {per_head} = {columns} features")
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
        parameter = self.scope.pieces.get(name, (name, name))[1]
        if right.varying and parameter not in self.recurrent:
            self.recurrent.append(parameter)
        if name in self.scope.pieces:  # rows of a parameter, split before the loop
            matrix = Node(Op.LOCAL, (), self.scope.pieces[name][0], None, False, False,
                          left.span)
        else:
            matrix = Node(Op.PARAM, (), name, None, False, False, left.span)
        op = Op.HEADS_MATMUL if name in self.scope.heads else Op.MATMUL
        return Node(op, (matrix, right), None, rows, right.varying, right.batched, span)

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
        record = _function_record(name)
        if record is None:
            self._error("E074", f"unknown function `{name}`", call.name_span,
                        help=suggest(name, FUNCTIONS) or "the functions are "
                        + ", ".join(f"`{f}`" for f in FUNCTIONS))
            return None
        keywords = {"dropout": ("per",)}.get(name, ())
        for argument in call.arguments:
            if argument.name is not None and argument.name not in keywords:
                self._error("E074", f"`{name}` takes its arguments by position",
                            argument.name_span)
                return None
        arguments = [a.value for a in call.arguments if a.name is None]
        if keywords:
            return getattr(self, record.rule)(record.op, call, arguments,
                                              {a.name: a for a in call.arguments if a.name})
        return getattr(self, record.rule)(record.op, call, arguments)



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


