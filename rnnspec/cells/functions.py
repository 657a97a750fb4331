"""The shape rules of the cell language's functions (`ops.OPS` names each function's
rule): `clamp`, `where`, `dropout`, `minimum`/`maximum`, the elementwise functions,
`layer_norm` and `concat`. A part of `expressions.Expressions`, which supplies `expr`,
`condition` and `_elementwise`."""

from __future__ import annotations

from rnnspec.cells.declare import Part
from rnnspec.cells.ir import Node
from rnnspec.cells.ops import Op
from rnnspec.cells.shapes import Size, format_shape
from rnnspec.check.evaluate import POISON
from rnnspec.language import ast


class FunctionRules(Part):
    """One method per function of the op table: `(op, call, arguments)` -> its node."""

    def _chunk_call(self, op: Op, call: ast.Call, arguments) -> None:
        self._error("E073", "`chunk(...)` stands alone on the right of `a, b, ... =`",
                    call.span, help="write `a, b = chunk(v, 2)` and use `a` and `b`")

    def _clamp(self, op: Op, call: ast.Call, arguments) -> Node | None:
        if len(arguments) != 3:
            self._error("E074", "write `clamp(v, low, high)`", call.span)
            return None
        inner = self._vector(op, arguments[0])
        bounds = [self._number("a bound of `clamp`", a) for a in arguments[1:]]
        if inner is None or None in bounds:
            return None
        low, high = bounds
        if low.op == Op.NUMBER and high.op == Op.NUMBER and low.value > high.value:
            self._error("E074", f"`clamp` needs `low <= high`, found {low.value:g} > "
                        f"{high.value:g}", call.span)
            return None
        return Node(Op.CLAMP, (inner, low, high), None, inner.size, inner.varying,
                    inner.batched, call.span)

    def _number(self, what: str, expr) -> Node | None:
        """A number of the step: a literal, a constant, a number argument or arithmetic
        of those (no vector)."""
        node = self.expr(expr)
        if node is not None and node.size is not None:
            self._error("E074", f"{what} is a number, found a vector of "
                        f"{format_shape([node.size])}", expr.span)
            return None
        return node

    def _where(self, op: Op, call: ast.Call, arguments) -> Node | None:
        if len(arguments) != 3:
            self._error("E074", "write `where(condition, a, b)`", call.span)
            return None
        condition = self.condition(arguments[0])
        values = [self.expr(a) for a in arguments[1:]]
        if condition is None or None in values:
            return None
        a, b = values
        for value, expr in zip(values, arguments[1:]):
            if value.size is not None and value.size != condition.size:
                self._error("E071", f"`where` of a condition of {format_shape([condition.size])}"
                            f" cannot choose {format_shape([value.size])}", expr.span)
                return None
        parts = (condition, a, b)
        return Node(Op.WHERE, parts, None, condition.size, any(p.varying for p in parts),
                    any(p.batched for p in parts), call.span)

    def _dropout(self, op: Op, call: ast.Call, arguments, keywords) -> Node | None:
        """`dropout(a, p)`: one mask per sequence (and layer and direction); with
        `per = step`, one per step. The identity in evaluation."""
        if len(arguments) != 2:
            self._error("E074", "write `dropout(v, p)` or `dropout(v, p, per = step)`",
                        call.span)
            return None
        per_step = False
        if "per" in keywords:
            given = keywords["per"].value
            if not (isinstance(given, ast.Name) and given.name in ("step", "sequence")):
                self._error("E074", "`per` is `step` (a new mask at every step) or `sequence`"
                            " (the default: one mask per sequence)", given.span)
                return None
            per_step = given.name == "step"
        inner = self._vector("dropout", arguments[0])
        p = self._number("the probability of `dropout`", arguments[1])
        if inner is None or p is None:
            return None
        if not inner.batched:
            self._error("E074", "`dropout` of a value of parameters only", arguments[0].span,
                        help="`dropout` masks each sequence's values; to drop weights, give "
                             "the block `weight_dropout`")
            return None
        if p.op == Op.NUMBER and not 0.0 <= p.value < 1.0:
            self._error("E021", f"the probability of `dropout` must be in [0, 1), found "
                        f"{p.value:g}", arguments[1].span,
                        help="a probability p with 0 <= p < 1: at 1 nothing would be left")
            return None
        if p.op not in (Op.NUMBER, Op.ARGUMENT):
            self._error("E074", "the probability of `dropout` is a number or a number "
                        "argument", arguments[1].span)
            return None
        if p.op == Op.ARGUMENT:  # its value is a block's: checked for each block
            self.probabilities.append((p.value, arguments[1].span))
        index = self.dropouts
        self.dropouts += 1
        return Node(Op.DROPOUT, (inner, p), (per_step, index), inner.size, inner.varying, True,
                    call.span)

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
            eps = self.values.in_range(  # as a block's `layer_norm(eps = ...)`: at least 0
                self.values.typed(given, "float", "the `eps` of `layer_norm`"), given.span,
                "the `eps` of `layer_norm`", minimum=0.0)
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
