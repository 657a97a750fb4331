"""Values of expressions and `let` constants, and their conversion to the types the
checker asks for. Every problem becomes a diagnostic; a value that already produced one
is `POISON`, which later steps pass over silently (one error per root cause)."""

from __future__ import annotations

import math
import operator

from rnnspec.language import ast
from rnnspec.language.diagnostics import Diagnostic, Note, Span, error
from rnnspec.language.names import suggest

# Values beyond this are refused: they are never meaningful sizes, and capping them keeps
# exact parameter counts (products of a few sizes) printable as decimal text.
MAX_MAGNITUDE = 10**500


_ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv}
_COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
                "==": operator.eq, "!=": operator.ne}
_NOT_A_LEAF = object()  # what `Evaluator._leaf` returns for a node with operands


class Word(str):
    """A bare word such as `tanh`, as opposed to a constant's value."""


class _Poison:
    def __repr__(self):
        return "POISON"


POISON = _Poison()

TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "`true` or `false`",
              "word": "a word", "pair": "a pair `[a, b]` or an integer"}


def describe(value) -> str:
    if isinstance(value, bool):
        return f"`{'true' if value else 'false'}`"
    if isinstance(value, Word):
        return f"the word `{value}`"
    if isinstance(value, int):
        return f"the integer `{value}`" if abs(value) < 10**20 else "an integer"
    return f"the number `{value!r}`"


class _Operands(ast.Visitor):
    """The operands of an expression node, for walks that keep their own stack."""

    def visit_Negation(self, node):
        return (node.operand,)

    visit_Not = visit_Negation

    def visit_Chain(self, node):
        return (node.first, *(operand for _, _, operand in node.rest))

    visit_Comparison = visit_Chain

    def visit_Call(self, node):
        return tuple(argument.value for argument in node.arguments)

    def visit_Logic(self, node):
        return node.operands

    def visit_ListValue(self, node):
        return node.items

    def visit_Conditional(self, node):
        return (*(part for branch in node.branches for part in branch), node.otherwise)

    def generic_visit(self, node):
        return ()


_OPERANDS = _Operands()


def names_in(expr) -> list[ast.Name]:
    """Every name an expression mentions, without recursion (chains can be long)."""
    found, pending = [], [expr]
    while pending:
        node = pending.pop()
        if type(node) is ast.Name:
            found.append(node)
        else:
            pending.extend(_OPERANDS.visit(node))
    return found


class Evaluator(ast.Visitor):
    """Evaluates expressions against the file's constants, reporting into `problems`."""

    def __init__(self, lets: dict[str, ast.Let], problems: list[Diagnostic]):
        self.lets = lets
        self.problems = problems
        self.values: dict[str, object] = {}
        self._reported: set = set()
        self._evaluate_constants()

    # ------------------------------------------------------------------- constants

    def _evaluate_constants(self) -> None:
        """Constants in dependency order, found with an explicit stack (chains of
        thousands of constants must not recurse); a cycle is reported once."""
        state: dict[str, str] = {}  # name -> "active" while on the path, "done" after
        for root in self.lets:
            if root in state:
                continue
            path: list[str] = [root]
            state[root] = "active"
            pending = [iter(self._dependencies(root))]
            while pending:
                child = next(pending[-1], None)
                if child is None:
                    pending.pop()
                    name = path.pop()
                    state[name] = "done"
                    if name not in self.values:
                        self.values[name] = self.evaluate(self.lets[name].value)
                elif state.get(child) == "active":
                    _report_cycle(self, path[path.index(child):] + [child])
                elif child not in state:
                    state[child] = "active"
                    path.append(child)
                    pending.append(iter(self._dependencies(child)))

    def _dependencies(self, name: str) -> list[str]:
        return [n.name for n in names_in(self.lets[name].value) if n.name in self.lets]

    # ------------------------------------------------------------------- expressions

    def evaluate(self, expr) -> object:
        """The value of `expr`: int, float, bool, Word, or POISON after a diagnostic.

        Nodes with operands are generators that yield each operand they need and receive
        its value; this loop runs them on an explicit stack, so that however the levels of
        the grammar nest (within the parser's limit on parentheses) nothing recurses.
        """
        leaf = self._leaf(expr)
        if leaf is not _NOT_A_LEAF:
            return leaf
        pending = [self._node(expr)]
        value = None
        while pending:
            try:
                operand = pending[-1].send(value)
            except StopIteration as done:
                pending.pop()
                value = done.value
                continue
            value = self._leaf(operand)
            if value is _NOT_A_LEAF:
                pending.append(self._node(operand))
                value = None
        return value

    # A leaf is visited with `leaf_<Type>` (its value); a node with operands with
    # `operands_<Type>` (a generator of its operands); `generic_visit` answers "not a leaf".

    def _leaf(self, expr):
        return self.dispatch(expr, "leaf_")

    def _node(self, expr):
        return self.dispatch(expr, "operands_")

    def generic_visit(self, node, *args):
        return _NOT_A_LEAF

    def leaf_Integer(self, expr):
        return expr.value

    leaf_Float = leaf_Boolean = leaf_Integer

    def leaf_Invalid(self, expr):
        return POISON

    def leaf_Name(self, expr):
        if expr.name in self.lets:
            return self.values.get(expr.name, POISON)
        return Word(expr.name)

    def leaf_ListValue(self, expr):
        self.problems.append(
            error("E020", "a list `[a, b]` is not a value here: it is a pair of a 2-D "
                  "layer's arguments (`kernel_size = [3, 3]`)", expr.span))
        return POISON

    def leaf_Call(self, expr):
        self.problems.append(
            error("E074", f"`{expr.name}(...)` is not a value here: functions belong to "
                  "the equations of a `cell`", expr.span))
        return POISON

    # Each of these is a generator: `value = yield operand` evaluates an operand.

    def _negation(self, expr: ast.Negation):
        value = self._number((yield expr.operand), expr.operand)
        if value is POISON:
            return POISON
        return -value if expr.signs % 2 else value

    def _chain(self, chain: ast.Chain):
        result = self._number((yield chain.first), chain.first)
        leaf, not_a_leaf = self._leaf, _NOT_A_LEAF
        for symbol, symbol_span, operand in chain.rest:
            if symbol not in _ARITHMETIC:  # `/` and `@`: the equations of a cell only
                self.problems.append(
                    error("E074", f"`{symbol}` belongs to the equations of a `cell`",
                          symbol_span, help="sizes and constants divide with `//`"
                          if symbol == "/" else None))
                return POISON
            value = leaf(operand)  # most operands are literals or constants: no round trip
            if value is not_a_leaf:
                value = yield operand
            value = self._number(value, operand)
            if result is POISON or value is POISON:
                result = POISON
                continue
            if symbol == "//" and value == 0:
                self.problems.append(
                    error("E022", "division by zero", operand.span,
                          notes=[Note("in this division", symbol_span)])
                )
                result = POISON
                continue
            try:
                result = _ARITHMETIC[symbol](result, value)
            except OverflowError:  # a huge integer meeting a float
                result = math.inf
            if abs(result) > MAX_MAGNITUDE or result != result:
                self.problems.append(
                    error("E023", "value is out of range (beyond 10^500)", chain.span,
                          help="no size in a recurrent network is anywhere near this large")
                )
                return POISON
        return result

    def _comparison(self, comparison: ast.Comparison):
        """`a < b < c` as Python has it: `a < b and b < c`, stopping at the first false."""
        left_expr = comparison.first
        left = yield left_expr
        for symbol, _, right_expr in comparison.rest:
            right = yield right_expr
            if not self._comparable(symbol, left, left_expr, right, right_expr):
                return POISON
            if not _COMPARISONS[symbol](left, right):
                return False
            left, left_expr = right, right_expr
        return True

    def _comparable(self, symbol: str, left, left_expr, right, right_expr) -> bool:
        """Whether `left symbol right` is defined: numbers with numbers, and for `==` and
        `!=` also `true`/`false` with `true`/`false`; otherwise report."""
        if symbol in ("==", "!=") and isinstance(left, bool) and isinstance(right, bool):
            return True
        ordered = symbol not in ("==", "!=")
        for value, expr in ((left, left_expr), (right, right_expr)):
            if value is POISON:
                return False
            if isinstance(value, Word):
                self.unknown_name(expr)
                return False
            if isinstance(value, bool) and ordered:
                self.problems.append(
                    error("E020", f"`{symbol}` compares numbers, found {describe(value)}",
                          expr.span))
                return False
        if isinstance(left, bool) != isinstance(right, bool):
            self.problems.append(
                error("E020", f"`{symbol}` cannot compare {describe(left)} with "
                      f"{describe(right)}", left_expr.span.to(right_expr.span),
                      help="compare numbers with numbers, and `true` or `false` with "
                           "`true` or `false`"))
            return False
        return True

    def _logic(self, logic: ast.Logic):
        """`and` and `or` on `true` and `false`, stopping when the result is known."""
        deciding = logic.operator == "or"  # the operand value that decides the result
        for operand in logic.operands:
            value = self._boolean((yield operand), operand, f"operand of `{logic.operator}`")
            if value is POISON:
                return POISON
            if value is deciding:
                return deciding
        return not deciding

    def _not(self, expr: ast.Not):
        value = self._boolean((yield expr.operand), expr.operand, "operand of `not`")
        if value is POISON:
            return POISON
        return (not value) if expr.count % 2 else value

    def _conditional(self, expr: ast.Conditional):
        for value, condition in expr.branches:
            chosen = self._boolean((yield condition), condition, "condition")
            if chosen is POISON:
                return POISON
            if chosen:
                return (yield value)
        return (yield expr.otherwise)

    operands_Negation, operands_Chain, operands_Comparison = _negation, _chain, _comparison
    operands_Logic, operands_Not, operands_Conditional = _logic, _not, _conditional

    def _boolean(self, value, expr, what: str):
        """`value` if it is `true` or `false`; otherwise report and poison. Numbers are
        refused (`A if 3 else B` is a mistake, not Python's truthiness)."""
        if value is POISON or isinstance(value, bool):
            return value
        origin = self._origin(expr)
        if isinstance(value, Word) and isinstance(origin, ast.Name) \
                and value not in ("True", "False"):
            self.unknown_name(origin)
            return POISON
        hint = f"write `{value.lower()}`" if value in ("True", "False") else None
        if isinstance(value, int | float):
            hint = "a number is not a condition: compare it, as in `N > 1`"
        self.problems.append(
            error("E020", f"{what} must be `true` or `false`, found {describe(value)}",
                  expr.span, help=hint))
        return POISON

    def _number(self, value, expr):
        """`value` if it can take part in arithmetic; otherwise report and poison."""
        if value is POISON or (isinstance(value, int | float) and not isinstance(value, bool)):
            return value
        if isinstance(value, Word):
            self.unknown_name(expr)
        else:
            self.problems.append(
                error("E020", f"arithmetic needs numbers, found {describe(value)}", expr.span)
            )
        return POISON

    def _origin(self, expr):
        """Where a word value was written: through constants to the bare name itself."""
        seen = set()
        while isinstance(expr, ast.Name) and expr.name in self.lets and expr.name not in seen:
            seen.add(expr.name)
            expr = self.lets[expr.name].value
        return expr

    def unknown_name(self, expr: ast.Name) -> None:
        if expr.span in self._reported:
            return  # a constant used in several places: its unknown word is one mistake
        self._reported.add(expr.span)
        if expr.name == "_":
            self.problems.append(
                error("E010", "`_` stands for any size, and only in an `expect` shape",
                      expr.span)
            )
            return
        self.problems.append(
            error("E010", f"unknown name `{expr.name}`", expr.span,
                  help=suggest(expr.name, self.lets))
        )

    # ------------------------------------------------------------------- typed values

    def typed(self, expr, kind: str, what: str, choices=()) -> object:
        """The value of `expr` as `kind` ("int", "float", "bool", "word"), or POISON.

        `what` names the thing being set, for messages: "`hidden_size`".
        """
        if kind == "pair":
            return pair(self, expr, what)
        value = self.evaluate(expr)
        if value is POISON:
            return POISON
        if kind == "word" and isinstance(value, Word):
            if value in choices:
                return str(value)
            listed = " or ".join(f"`{c}`" for c in choices)
            self.problems.append(
                error("E021", f"{what} must be {listed}, found `{value}`", expr.span,
                      help=suggest(value, choices))
            )
            return POISON
        if isinstance(value, Word) and kind != "word":
            origin = self._origin(expr)
            if isinstance(origin, ast.Name) and not (kind == "bool" and value in ("True", "False")):
                self.unknown_name(origin)
                return POISON
            hint = f"write `{value.lower()}`" if value in ("True", "False") else None
            self.problems.append(
                error("E020", f"{what} must be {TYPE_WORDS[kind]}, found {describe(value)}",
                      expr.span, help=hint)
            )
            return POISON
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                self.problems.append(error("E021", f"{what} is far out of range", expr.span))
                return POISON
        if kind == "bool" and isinstance(value, bool):
            return value
        hint = None
        if kind == "int" and isinstance(value, float) and value.is_integer():
            hint = f"write `{int(value)}`"
        if kind == "bool" and value in (0, 1) and not isinstance(value, bool):
            hint = f"write `{'true' if value else 'false'}`"
        if isinstance(value, bool) and isinstance(self._origin(expr),
                                                  ast.Comparison | ast.Logic | ast.Not):
            hint = ("a comparison gives `true` or `false`, not a value: to choose a value, "
                    "write `A if CONDITION else B`")
        self.problems.append(
            error("E020", f"{what} must be {TYPE_WORDS[kind]}, found {describe(value)}",
                  expr.span, help=hint)
        )
        return POISON

    def in_range(self, value, span: Span, what: str, minimum=None, maximum=None) -> object:
        if value is POISON:
            return POISON
        if isinstance(value, tuple):  # a pair: each value in range
            checked = tuple(self.in_range(v, span, what, minimum, maximum) for v in value)
            return POISON if POISON in checked else checked
        low = minimum is not None and value < minimum
        high = maximum is not None and value > maximum
        if low or high:
            if isinstance(minimum, float) and maximum is not None:
                bound = f"between {minimum:g} and {maximum:g}"  # dropout: a probability
            elif low:
                bound = f"at least {minimum}"
            else:
                bound = f"at most {maximum:,}"
            shown = value if abs(value) < 10**20 else f"a number of {len(str(abs(value)))} digits"
            self.problems.append(error("E021", f"{what} must be {bound}, found {shown}", span))
            return POISON
        return value


def pair(evaluator: Evaluator, expr, what: str) -> object:
    """A 2-D layer's pair: `[a, b]`, or one integer meaning both (PyTorch's
    `kernel_size=3`); a tuple of two ints, or POISON."""
    if not isinstance(expr, ast.ListValue):
        value = evaluator.typed(expr, "int", what)
        return POISON if value is POISON else (value, value)
    if len(expr.items) != 2:
        evaluator.problems.append(
            error("E020", f"{what} must be a pair `[features, time]` or one integer, "
                  f"found {len(expr.items)} values", expr.span))
        return POISON
    values = tuple(evaluator.typed(item, "int", what) for item in expr.items)
    return POISON if POISON in values else values


def _report_cycle(evaluator: Evaluator, cycle: list[str]) -> None:
    """Constants that depend on themselves: each poisoned, the cycle reported once."""
    for name in cycle:
        evaluator.values[name] = POISON
    lets = evaluator.lets
    chain = " -> ".join(f"`{n}`" for n in cycle)
    notes = [Note(f"`{n}` is defined here", lets[n].name_span) for n in cycle[1:-1]]
    evaluator.problems.append(
        error("E013", f"constant `{cycle[0]}` depends on itself: {chain}", lets[cycle[0]].name_span,
              notes=notes, help="give one of these constants a value that does not refer back")
    )
