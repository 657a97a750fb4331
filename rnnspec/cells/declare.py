"""A cell's header and declarations: its size arguments, states and parameters, each
checked and entered in the cell's `Scope`; sizes become `Size` polynomials."""

from __future__ import annotations

import keyword

from rnnspec.cells.ir import Node
from rnnspec.cells.ops import INITIALISERS, Op
from rnnspec.cells.registry import (
    COMMON_ARGUMENTS,
    ArgumentRule,
    ParameterTemplate,
    StateTemplate,
)
from rnnspec.cells.shapes import Size, exact_quotient, quotient
from rnnspec.check.evaluate import POISON, Evaluator, names_in
from rnnspec.language import ast
from rnnspec.language.diagnostics import Note, Sink, Span, error
from rnnspec.language.names import suggest

SIZE_NAMES = ("input_size", "hidden_size")


class Scope:
    """What a name means inside a cell body, and what has been read."""

    def __init__(self):
        self.kinds: dict[str, str] = {}  # name -> size / state / param / local / x
        self.spans: dict[str, Span] = {}
        self.sizes: dict[str, Size] = {}  # states and vector params: their size
        self.matrices: dict[str, tuple[Size, Size]] = {}  # rows, columns (heads: overall)
        self.heads: dict[str, tuple[Size, Size, Size]] = {}  # heads parameters: heads, m, n
        self.pieces: dict[str, tuple[str, str]] = {}  # a matrix's chunk: (unique, parent)
        self.current: dict[str, Node] = {}  # states and locals: the node a read gives
        self.read: set[str] = set()  # names of parameters and local versions read
        self.assigned_states: dict[str, Span] = {}
        self.local_versions: list[tuple[str, Span]] = []
        # `require a == b` (section 11): `a` stands for `b` in every size of the body
        self.substitution: dict[str, Size] = {}


class Part(ast.Visitor):
    """What the parts of the cell checker share: the item, the constants' values, the
    diagnostics and the scope."""

    def __init__(self, item: ast.Cell, values: Evaluator, problems: Sink, scope: Scope):
        self.item = item
        self.values = values
        self.problems = problems
        self.scope = scope

    def _error(self, code: str, message: str, span: Span, **more) -> None:
        self.problems.append(error(code, message, span, **more))


class Declarations(Part):
    """The header and declarations of one cell: `declare()`, then read `arguments`,
    `states` and `parameters`."""

    def __init__(self, item: ast.Cell, values: Evaluator, problems: Sink, scope: Scope):
        super().__init__(item, values, problems, scope)
        self.arguments: list[ArgumentRule] = []  # the header's sizes, as block arguments
        self.states: list[StateTemplate] = []
        self.parameters: list[ParameterTemplate] = []
        self.numbers: list[str] = []  # the header's number arguments (float defaults)
        self.requires: list[tuple] = []  # (left, right, span, text), as written
        self.conditions: list[tuple] = []  # divisions by a size: exact for every block

    def name(self, name: str, span: Span, kind: str) -> bool:
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
        return self.dispatch(expr, "size_")

    def size_Integer(self, expr: ast.Integer) -> Size:
        return Size.of(expr.value)

    def size_Name(self, expr: ast.Name) -> Size | None:
        if self.scope.kinds.get(expr.name) == "size":
            return Size.of(expr.name)
        if self.scope.kinds.get(expr.name) == "number":
            self._error("E020", f"`{expr.name}` is a number argument, not a size", expr.span,
                        help="sizes are integers: give a size argument an integer default "
                             f"(`{expr.name} = 2`)")
            return None
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

    def size_Negation(self, expr: ast.Negation) -> Size | None:
        inner = self.size(expr.operand)
        return None if inner is None else (-inner if expr.signs % 2 else inner)

    def size_Chain(self, expr: ast.Chain) -> Size | None:
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
            elif symbol == "//" and value.constant is None:
                # by a size (`hidden_size // heads`): exact for every block, or an error
                divided = exact_quotient(result, value)
                self.conditions.append((result, value, symbol_span,
                                        f"`{divided}` in a declaration"))
                result = divided
            else:
                self._error("E071", f"sizes combine with `+ - *` and `//` by an integer,"
                            f" not `{symbol} {value}`", symbol_span)
                result = None
        return result

    def size_Invalid(self, expr: ast.Invalid) -> None:
        return None

    def generic_visit(self, expr, *args) -> None:
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
                if self._number_argument(argument):
                    continue
                if not self.name(argument.name, argument.name_span, "size"):
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
            for require in item.requires:
                self._require(require)
            self.scope.kinds["x"] = "x"
            self.scope.sizes["x"] = self.proved(Size.of("input_size"))
            for state in item.states:
                size = self.size(state.size)
                if self.name(state.name, state.name_span, "state") and size is not None:
                    self.states.append(StateTemplate(state.name, size))  # as written
                    size = self.proved(size)
                    self.scope.sizes[state.name] = size
                    self.scope.current[state.name] = Node(
                        Op.STATE, (), state.name, size, True, True, state.name_span)
            if not item.states:
                self._error("E076", f"cell `{item.name}` declares no state", item.name_span,
                            help="add `state h[hidden_size]`: the first state is the output")
            for param in item.params:
                self._param(param)
        return not step.failed

    def proved(self, size: Size) -> Size:
        """A size as the body's rules compare it: each `require`d name replaced by the size
        it equals (`input_size` by `hidden_size`), so `x * h` checks."""
        substitution = self.scope.substitution
        return size.substitute(substitution) if substitution else size

    def _number_argument(self, argument: ast.CellArgument) -> bool:
        """A header argument whose default is a float is a number of the equations
        (section 11); True when `argument` is one (entered, or reported)."""
        default = argument.default
        if default is None or not isinstance(self.values.evaluate(default), float):
            return False
        if self.name(argument.name, argument.name_span, "number"):
            value = self.values.typed(default, "float", f"`{argument.name}`")
            if value is not POISON:
                self.numbers.append(argument.name)
                self.arguments.append(ArgumentRule(
                    argument.name, "float", value, meaning=f"a number of cell `{self.item.name}`"))
        return True

    def _require(self, require: ast.Require) -> None:
        """`require a == b`: checked for every block; inside the body, `a` is `b`."""
        condition = require.condition
        if not (isinstance(condition, ast.Comparison) and len(condition.rest) == 1
                and condition.rest[0][0] == "=="):
            self._error("E079", "`require` takes two sizes that must be equal: "
                        "`require a == b`", condition.span,
                        help="for instance `require input_size == hidden_size`")
            return
        for name in names_in(condition):
            kind = self.scope.kinds.get(name.name)
            if kind != "size" and name.name not in self.values.lets:
                what = {"number": "a number argument"}.get(kind, "not a size of the cell")
                self._error("E079", f"`require` is between sizes; `{name.name}` is {what}",
                            name.span, help="the sizes are `input_size`, `hidden_size` and "
                                            "the cell's integer arguments")
                return
        with self.problems.watch() as sizes:
            left = self.size(condition.first)
            right = self.size(condition.rest[0][2])
        if sizes.failed or left is None or right is None:
            return
        text = f"require {left} == {right}"
        self.requires.append((left, right, require.span, text))  # checked per block as written
        left, right = self.proved(left), self.proved(right)
        for name, value in ((left, right), (right, left)):
            single = name.names if len(name.terms) == 1 and name.terms[0][1] == 1 else ()
            if len(single) == 1 and len(name.terms[0][0]) == 1:
                (symbol,) = single
                if symbol not in value.names:
                    substitution = self.scope.substitution
                    for known, stands in substitution.items():
                        substitution[known] = stands.substitute({symbol: value})
                    substitution[symbol] = value
                    return

    def _param(self, param: ast.ParamDeclaration) -> None:
        dims = [self.size(d) for d in param.dims]
        if len(dims) not in (1, 2, 3):
            self._error("E076", f"parameter `{param.name}` has {len(dims)} dimensions",
                        param.dims_span,
                        help="a parameter is a vector `[n]`, a matrix `[rows, columns]` or "
                             "a matrix per head `[heads, rows, columns]`")
            return
        init = self._initialiser(param.init)
        if not self.name(param.name, param.name_span, "param") or None in dims \
                or init is None:
            return
        self.parameters.append(ParameterTemplate(param.name, tuple(dims), init=init))
        dims = [self.proved(d) for d in dims]  # the shapes blocks get stay as written
        if len(dims) == 1:
            self.scope.sizes[param.name] = dims[0]
        elif len(dims) == 2:
            self.scope.matrices[param.name] = (dims[0], dims[1])
        else:  # `R[heads, m, n]`: `R @ v` is block-diagonal, `heads * n` -> `heads * m`
            self.scope.heads[param.name] = (dims[0], dims[1], dims[2])
            self.scope.matrices[param.name] = (dims[0] * dims[1], dims[0] * dims[2])

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

