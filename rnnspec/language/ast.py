"""The syntax of a .rnn file as immutable records. Every node carries a `Span`.

The records are `Record`s (named tuples built without compiling code) rather than frozen
dataclasses: as immutable, but far cheaper to declare, which `rnnspec check` pays on
every start.
"""

from __future__ import annotations

from rnnspec.language.diagnostics import Span
from rnnspec.records import Record

# ----------------------------------------------------------------------------- expressions


class Integer(Record):
    value: int
    span: Span


class Float(Record):
    value: float
    span: Span


class Boolean(Record):
    value: bool
    span: Span


class Name(Record):
    """A constant's name or a bare word (`tanh`), or `_` in a shape."""

    name: str
    span: Span


class Negation(Record):
    operand: Expr
    signs: int  # `--x` is one node with two signs, so long runs of minus signs stay flat
    span: Span


class Chain(Record):
    """`a + b - c` or `a * b // c`: one operator precedence level, kept flat."""

    first: Expr
    rest: tuple[tuple[str, Span, Expr], ...]  # (operator, operator span, operand)
    span: Span


class Comparison(Record):
    """`a < b <= c`: chained as in Python (`a < b and b <= c`, each operand evaluated once)."""

    first: Expr
    rest: tuple[tuple[str, Span, Expr], ...]  # (operator, operator span, operand)
    span: Span


class Logic(Record):
    """`a and b and c` or `a or b`: one operator, kept flat; evaluated left to right and
    stopping as soon as the result is known, as in Python."""

    operator: str  # "and" or "or"
    operands: tuple[Expr, ...]
    span: Span


class Not(Record):
    operand: Expr
    count: int  # `not not x` is one node, as `Negation` keeps runs of minus signs flat
    span: Span


class Conditional(Record):
    """`a if c else b if d else e`: the value of the first branch whose condition is true,
    else `otherwise`. Only the values needed are evaluated, as in Python."""

    branches: tuple[tuple[Expr, Expr], ...]  # (value, condition)
    otherwise: Expr
    span: Span


class Invalid(Record):
    """A literal that was already reported (say, out of range); evaluates silently to nothing."""

    span: Span


class Call(Record):
    """`name(arguments)`: a function in a cell's equations (`tanh(c)`), or, standing as a
    stack entry, a block (the parser turns those into `Block`)."""

    name: str
    name_span: Span
    arguments: tuple[Argument, ...]
    span: Span


class ListValue(Record):
    """`[a, b]`: a pair of a 2-D layer's arguments (`kernel_size = [41, 11]`)."""

    items: tuple
    span: Span


Expr = (Integer | Float | Boolean | Name | Negation | Chain | Comparison | Logic | Not
        | Conditional | Invalid | Call | ListValue)

# ----------------------------------------------------------------------------- items


class Argument(Record):
    name: str | None  # None for a positional argument (always an error)
    name_span: Span | None
    value: Expr
    span: Span


class Block(Record):
    name: str | None  # None when written as a bare call: the checker names it
    name_span: Span | None
    cell: str
    cell_span: Span
    arguments: tuple[Argument, ...]
    span: Span


class Property(Record):
    name: str
    name_span: Span
    value: Expr
    span: Span


class Stack(Record):
    name: str
    name_span: Span
    properties: tuple[Property, ...]
    blocks: tuple[Block, ...]
    span: Span


class Let(Record):
    name: str
    name_span: Span
    value: Expr
    span: Span


class Selector(Record):
    value: str | int
    span: Span


class ExpectEntry(Record):
    key: str
    key_span: Span
    selector: Selector | None
    dims: tuple[Expr, ...]
    dims_span: Span
    span: Span


class Expect(Record):
    stack: str
    stack_span: Span
    entries: tuple[ExpectEntry, ...]
    span: Span


# ----------------------------------------------------------------------------- cells


class CellArgument(Record):
    """A size argument of a cell's header: `proj_size` or `proj_size = 64`."""

    name: str
    name_span: Span
    default: Expr | None
    span: Span


class StateDeclaration(Record):
    name: str
    name_span: Span
    size: Expr
    span: Span


class ParamDeclaration(Record):
    name: str
    name_span: Span
    dims: tuple[Expr, ...]
    dims_span: Span
    init: Call | Name | None  # `zeros`, `uniform(-0.1, 0.1)`; None: uniform, PyTorch's
    span: Span


class Require(Record):
    """`require input_size == hidden_size`: a condition on a cell's sizes."""

    condition: Expr
    span: Span


class Statement(Record):
    """`h = tanh(...)` or `i, f, g, o = chunk(..., 4)`."""

    targets: tuple[tuple[str, Span], ...]
    value: Expr
    span: Span


class Cell(Record):
    name: str
    name_span: Span
    arguments: tuple[CellArgument, ...]
    states: tuple[StateDeclaration, ...]
    params: tuple[ParamDeclaration, ...]
    statements: tuple[Statement, ...]
    span: Span
    requires: tuple[Require, ...] = ()


class SpecFile(Record):
    path: str
    lets: tuple[Let, ...]
    stacks: tuple[Stack, ...]
    expects: tuple[Expect, ...]
    cells: tuple[Cell, ...] = ()


# ----------------------------------------------------------------------------- visitors


class Visitor:
    """Dispatch on a node's type, in the manner of `ast.NodeVisitor`: `visit(node)` calls
    `visit_<Type>(node)` (`visit_Chain`, `visit_Name`, ...), else `generic_visit(node)`.
    `dispatch(node, prefix)` does the same for another family of methods, for a walker
    with more than one question to ask of each node (the evaluator's leaves and operands).
    """

    def visit(self, node, *args):
        return self.dispatch(node, "visit_", *args)

    def dispatch(self, node, prefix: str, *args):
        method = getattr(self, prefix + type(node).__name__, None)
        if method is None:
            return self.generic_visit(node, *args)
        return method(node, *args)

    def generic_visit(self, node, *args):
        return None
