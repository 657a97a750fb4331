"""Values of expressions and `let` constants, and their conversion to the types the
checker asks for. Every problem becomes a diagnostic; a value that already produced one
is `POISON`, which later steps pass over silently (one error per root cause)."""

from __future__ import annotations

import math
import operator

from . import ast
from .diagnostics import Diagnostic, Note, Span, error
from .names import suggest

# Values beyond this are refused: they are never meaningful sizes, and capping them keeps
# exact parameter counts (products of a few sizes) printable as decimal text.
MAX_MAGNITUDE = 10**500


_ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv}


class Word(str):
    """A bare word such as `tanh`, as opposed to a constant's value."""


class _Poison:
    def __repr__(self):
        return "POISON"


POISON = _Poison()

TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "`true` or `false`",
              "word": "a word"}


def describe(value) -> str:
    if isinstance(value, bool):
        return f"`{'true' if value else 'false'}`"
    if isinstance(value, Word):
        return f"the word `{value}`"
    if isinstance(value, int):
        return f"the integer `{value}`" if abs(value) < 10**20 else "an integer"
    return f"the number `{value!r}`"


def names_in(expr) -> list[ast.Name]:
    """Every name an expression mentions, without recursion (chains can be long)."""
    found, pending = [], [expr]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Name):
            found.append(node)
        elif isinstance(node, ast.Negation):
            pending.append(node.operand)
        elif isinstance(node, ast.Chain):
            pending.append(node.first)
            pending.extend(operand for _, _, operand in node.rest)
        elif isinstance(node, ast.Call):
            pending.extend(argument.value for argument in node.arguments)
    return found


class Evaluator:
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
                    self._report_cycle(path[path.index(child):] + [child])
                elif child not in state:
                    state[child] = "active"
                    path.append(child)
                    pending.append(iter(self._dependencies(child)))

    def _dependencies(self, name: str) -> list[str]:
        return [n.name for n in names_in(self.lets[name].value) if n.name in self.lets]

    def _report_cycle(self, cycle: list[str]) -> None:
        for name in cycle:
            self.values[name] = POISON
        first = self.lets[cycle[0]]
        chain = " -> ".join(f"`{n}`" for n in cycle)
        notes = [Note(f"`{n}` is defined here", self.lets[n].name_span) for n in cycle[1:-1]]
        self.problems.append(
            error("E013", f"constant `{cycle[0]}` depends on itself: {chain}", first.name_span,
                  notes=notes, help="give one of these constants a value that does not refer back")
        )

    # ------------------------------------------------------------------- expressions

    def evaluate(self, expr) -> object:
        """The value of `expr`: int, float, bool, Word, or POISON after a diagnostic."""
        if isinstance(expr, ast.Integer | ast.Float | ast.Boolean):
            return expr.value
        if isinstance(expr, ast.Invalid):
            return POISON
        if isinstance(expr, ast.Name):
            if expr.name in self.lets:
                return self.values.get(expr.name, POISON)
            return Word(expr.name)
        if isinstance(expr, ast.Call):
            self.problems.append(
                error("E074", f"`{expr.name}(...)` is not a value here: functions belong to "
                      "the equations of a `cell`", expr.span))
            return POISON
        if isinstance(expr, ast.Negation):
            value = self._number(self.evaluate(expr.operand), expr.operand)
            if value is POISON:
                return POISON
            return -value if expr.signs % 2 else value
        return self._chain(expr)

    def _chain(self, chain: ast.Chain):
        result = self._number(self.evaluate(chain.first), chain.first)
        for symbol, symbol_span, operand in chain.rest:
            if symbol not in _ARITHMETIC:  # `/` and `@`: the equations of a cell only
                self.problems.append(
                    error("E074", f"`{symbol}` belongs to the equations of a `cell`",
                          symbol_span, help="sizes and constants divide with `//`"
                          if symbol == "/" else None))
                return POISON
            value = self._number(self.evaluate(operand), operand)
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
        self.problems.append(
            error("E020", f"{what} must be {TYPE_WORDS[kind]}, found {describe(value)}",
                  expr.span, help=hint)
        )
        return POISON

    def in_range(self, value, span: Span, what: str, minimum=None, maximum=None) -> object:
        if value is POISON:
            return POISON
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
