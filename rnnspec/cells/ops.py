"""The op table of the cell language: every operation a step computes, as one record.

`Op` names each operation (a `str` enum: `Op.MATMUL == "matmul"`, so code that compares
`node.op` with a string keeps working). `OPS` gives each op its record: how many operands
it takes, the checker's shape rule for it (the name of an `expressions.Expressions`
method, looked up once per call: the table, not a ladder of names, decides), and how it
is written in the language (its spelling and precedence, which `describe` reads).

Everything that lists the language's vocabulary derives from this table: `FUNCTIONS`
(the completions of the LSP, the TextMate grammar's test), `ELEMENTWISE`, `OPERATORS`.
A new function is one `Op` member and one record here, one shape rule in `cells/expressions.py`
(often an existing one: `_unary`), and one entry per backend.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class Op(str, enum.Enum):
    """An operation of the cell language; its value is the name `Node.op` has always had."""

    # leaves: references and numbers
    X = "x"
    STATE = "state"
    LOCAL = "local"
    PARAM = "param"
    NUMBER = "number"
    # operators
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    NEG = "neg"
    MATMUL = "matmul"
    # functions
    SIGMOID = "sigmoid"
    TANH = "tanh"
    RELU = "relu"
    GELU = "gelu"
    SILU = "silu"
    SOFTPLUS = "softplus"
    LOGSIGMOID = "logsigmoid"
    EXP = "exp"
    LOG = "log"
    ABS = "abs"
    SQRT = "sqrt"
    CLAMP = "clamp"
    MINIMUM = "minimum"
    MAXIMUM = "maximum"
    LAYER_NORM = "layer_norm"
    CONCAT = "concat"
    CHUNK = "chunk"
    # the checker's marker for a value on the left of `@` that is not a matrix
    NOT_A_MATRIX = "not-a-matrix"

    # print as the plain name (Python 3.12 would print `Op.ADD` for a str mix-in)
    __str__ = str.__str__
    __format__ = str.__format__


class Kind(str, enum.Enum):
    LEAF = "leaf"
    OPERATOR = "operator"
    FUNCTION = "function"
    INTERNAL = "internal"


class OpRecord(NamedTuple):
    op: Op
    kind: Kind
    arity: tuple[int, int | None]  # fewest and most operands written (None: any number)
    rule: str | None = None  # the `Expressions` method that checks a call (functions)
    symbol: str | None = None  # operators: how the language writes it
    precedence: int = 0  # operators: binding strength when written back (higher binds tighter)
    verb: str | None = None  # how an error names combining two values (elementwise pairs)


def _leaf(op: Op) -> OpRecord:
    return OpRecord(op, Kind.LEAF, (0, 0))


def _operator(op: Op, symbol: str, precedence: int, verb: str | None = None) -> OpRecord:
    return OpRecord(op, Kind.OPERATOR, (1, 1) if op is Op.NEG else (2, 2), symbol=symbol,
                    precedence=precedence, verb=verb)


def _function(op: Op, rule: str, arity: tuple[int, int | None], verb: str | None = None):
    return OpRecord(op, Kind.FUNCTION, arity, rule=rule, verb=verb)


OPS: dict[Op, OpRecord] = {record.op: record for record in (
    _leaf(Op.X), _leaf(Op.STATE), _leaf(Op.LOCAL), _leaf(Op.PARAM), _leaf(Op.NUMBER),
    _operator(Op.ADD, "+", 1, "add"),
    _operator(Op.SUB, "-", 1, "subtract"),
    _operator(Op.MUL, "*", 2, "multiply"),
    _operator(Op.DIV, "/", 2, "divide"),
    _operator(Op.MATMUL, "@", 2),
    _operator(Op.NEG, "-", 3),
    *(_function(op, "_unary", (1, 1)) for op in (
        Op.SIGMOID, Op.TANH, Op.RELU, Op.GELU, Op.SILU, Op.SOFTPLUS, Op.LOGSIGMOID, Op.EXP,
        Op.LOG, Op.ABS, Op.SQRT)),
    _function(Op.CLAMP, "_clamp", (3, 3)),
    _function(Op.MINIMUM, "_pair", (2, 2), "take the minimum of"),
    _function(Op.MAXIMUM, "_pair", (2, 2), "take the maximum of"),
    _function(Op.LAYER_NORM, "_layer_norm", (1, 4)),
    _function(Op.CONCAT, "_concat", (2, None)),
    _function(Op.CHUNK, "_chunk_call", (2, 2)),
    OpRecord(Op.NOT_A_MATRIX, Kind.INTERNAL, (0, 0)),
)}

# The functions of the language, in the order the docs and completions list them.
FUNCTIONS: tuple[str, ...] = tuple(r.op.value for r in OPS.values() if r.kind is Kind.FUNCTION)
# The functions of one vector that keep its size.
ELEMENTWISE: tuple[str, ...] = tuple(r.op.value for r in OPS.values() if r.rule == "_unary")
# The binary operators as the language writes them (`-` is also negation, written `neg`).
OPERATORS: dict[str, Op] = {r.symbol: r.op for r in OPS.values()
                            if r.kind is Kind.OPERATOR and r.op is not Op.NEG}

# Parameter initialisers and how many numbers each takes (fewest, most).
INITIALISERS: dict[str, tuple[int, int]] = {"uniform": (0, 2), "zeros": (0, 0), "ones": (0, 0),
                                            "normal": (2, 2)}


def function(name: str) -> OpRecord | None:
    """The record of the function called `name`, or None when there is none."""
    try:
        record = OPS[Op(name)]
    except ValueError:
        return None
    return record if record.kind is Kind.FUNCTION else None
