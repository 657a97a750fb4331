"""The cell IR: the checked step of a cell as a tree of `Node`s (their ops are `ops.Op`),
and `describe`, which writes a node back in the language through the op table."""

from __future__ import annotations

from rnnspec.cells.ops import OPS, Kind, Op
from rnnspec.cells.shapes import Size
from rnnspec.language.diagnostics import Span
from rnnspec.records import Record


class Node(Record):
    """One value of the step: `op` over `args`, with its size (None: a number)."""

    op: Op  # a str enum: `node.op == "matmul"` holds for `Op.MATMUL`
    args: tuple  # child Nodes
    value: object  # a number, a name (x/state/local/param), or a function's constants
    size: Size | None
    varying: bool  # reads a state: must run inside the time loop
    batched: bool  # reads x or a state: has a batch axis
    span: Span


class Assign(Record):
    """`names = node`; several names when `node` is a chunk."""

    targets: tuple[str, ...]  # unique per assignment: a local assigned again gets a new name
    states: tuple[bool, ...]  # whether each target is a state
    node: Node
    sizes: tuple[Size, ...]
    text: str  # the statement as written in the spec, for docstrings
    span: Span


class Step(Record):
    states: tuple[str, ...]  # in declaration order; the first is the output
    params: tuple[str, ...]
    statements: tuple[Assign, ...]
    recurrent_weights: tuple[str, ...]  # matrix parameters that multiply a state
    conditions: tuple  # (size, divisor, span, text): divisibility checked per block
    numbers: tuple[str, ...] = ()  # the header's number arguments, in order (section 11)
    requires: tuple = ()  # (left Size, right Size, span, text): equal for every block
    probabilities: tuple = ()  # (number argument, span): a `dropout`'s p, in [0, 1)


def number(value) -> Node:
    return Node(Op.NUMBER, (), value, None, False, False, None)


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
        if op in (Op.NEG, Op.NOT):
            sign = "-" if op == Op.NEG else "not "
            inner = sign + self.text(node.args[0], record.precedence)
            return f"({inner})" if parent > record.precedence else inner
        if op == Op.HEADS_MATMUL:
            record = OPS[Op.MATMUL]
        if record is not None and record.kind is Kind.OPERATOR:
            level = record.precedence
            left = self.text(node.args[0], level)
            rhs = self.text(node.args[1], level, right=True)
            inner = f"{left} {record.symbol} {rhs}"
            if record.condition and op not in (Op.AND, Op.OR):  # `a < b` in `a < b < c`
                return f"({inner})" if level <= parent else inner
            return f"({inner})" if level < parent or (right and level == parent) else inner
        if op in (Op.CHUNK, Op.CHUNK_ROWS):
            return f"chunk({self.text(node.args[0])}, {node.value[0]})"
        arguments = [self.text(a) for a in node.args]
        if op == Op.DROPOUT and node.value[0]:
            arguments.append("per = step")
        if op == Op.LAYER_NORM and node.value != 1e-5:
            arguments += ["_"] * (3 - len(arguments)) + [repr(node.value)]
        return f"{op}({', '.join(arguments)})"
