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

from rnnspec.records import Record


class Op(str, enum.Enum):
    """An operation of the cell language; its value is the name `Node.op` has always had."""

    # leaves: references and numbers
    X = "x"
    STATE = "state"
    LOCAL = "local"
    PARAM = "param"
    NUMBER = "number"
    ARGUMENT = "argument"  # a number argument of the cell's header (section 11)
    # operators
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    NEG = "neg"
    MATMUL = "matmul"
    # conditions (section 11): comparisons and logic, elementwise; never values
    LESS = "less"
    LESS_EQUAL = "less_equal"
    GREATER = "greater"
    GREATER_EQUAL = "greater_equal"
    EQUAL = "equal"
    NOT_EQUAL = "not_equal"
    AND = "and"
    OR = "or"
    NOT = "not"
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
    WHERE = "where"
    DROPOUT = "dropout"
    # internal: made by the checker and the lowering pass, never written
    CHUNK_ROWS = "chunk_rows"  # `A, B = chunk(W, 2)` of a matrix parameter: its rows
    HEADS_MATMUL = "heads_matmul"  # `R @ v` of a heads parameter `R[heads, m, n]`
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


class OpRecord(Record):
    op: Op
    kind: Kind
    arity: tuple[int, int | None]  # fewest and most operands written (None: any number)
    rule: str | None = None  # the `Expressions` method that checks a call (functions)
    symbol: str | None = None  # operators: how the language writes it
    precedence: int = 0  # operators: binding strength when written back (higher binds tighter)
    verb: str | None = None  # how an error names combining two values (elementwise pairs)
    condition: bool = False  # the result is a condition (true or false per element)


def _leaf(op: Op) -> OpRecord:
    return OpRecord(op, Kind.LEAF, (0, 0))


def _operator(op: Op, symbol: str, precedence: int, verb: str | None = None,
              condition: bool = False) -> OpRecord:
    unary = op in (Op.NEG, Op.NOT)
    return OpRecord(op, Kind.OPERATOR, (1, 1) if unary else (2, 2), symbol=symbol,
                    precedence=precedence, verb=verb, condition=condition)


def _function(op: Op, rule: str, arity: tuple[int, int | None], verb: str | None = None):
    return OpRecord(op, Kind.FUNCTION, arity, rule=rule, verb=verb)


OPS: dict[Op, OpRecord] = {record.op: record for record in (
    _leaf(Op.X), _leaf(Op.STATE), _leaf(Op.LOCAL), _leaf(Op.PARAM), _leaf(Op.NUMBER),
    _leaf(Op.ARGUMENT),
    # precedences as Python's: or < and < not < comparisons < + - < * / @ < unary minus
    _operator(Op.OR, "or", 1, condition=True),
    _operator(Op.AND, "and", 2, condition=True),
    _operator(Op.NOT, "not", 3, condition=True),
    *(_operator(op, symbol, 4, "compare", condition=True) for op, symbol in (
        (Op.LESS, "<"), (Op.LESS_EQUAL, "<="), (Op.GREATER, ">"), (Op.GREATER_EQUAL, ">="),
        (Op.EQUAL, "=="), (Op.NOT_EQUAL, "!="))),
    _operator(Op.ADD, "+", 5, "add"),
    _operator(Op.SUB, "-", 5, "subtract"),
    _operator(Op.MUL, "*", 6, "multiply"),
    _operator(Op.DIV, "/", 6, "divide"),
    _operator(Op.MATMUL, "@", 6),
    _operator(Op.NEG, "-", 7),
    *(_function(op, "_unary", (1, 1)) for op in (
        Op.SIGMOID, Op.TANH, Op.RELU, Op.GELU, Op.SILU, Op.SOFTPLUS, Op.LOGSIGMOID, Op.EXP,
        Op.LOG, Op.ABS, Op.SQRT)),
    _function(Op.CLAMP, "_clamp", (3, 3)),
    _function(Op.MINIMUM, "_pair", (2, 2), "take the minimum of"),
    _function(Op.MAXIMUM, "_pair", (2, 2), "take the maximum of"),
    _function(Op.LAYER_NORM, "_layer_norm", (1, 4)),
    _function(Op.CONCAT, "_concat", (2, None)),
    _function(Op.CHUNK, "_chunk_call", (2, 2)),
    _function(Op.WHERE, "_where", (3, 3)),
    _function(Op.DROPOUT, "_dropout", (2, 3)),
    OpRecord(Op.CHUNK_ROWS, Kind.INTERNAL, (1, 1)),
    OpRecord(Op.HEADS_MATMUL, Kind.INTERNAL, (2, 2)),
    OpRecord(Op.NOT_A_MATRIX, Kind.INTERNAL, (0, 0)),
)}

# The functions of the language, in the order the docs and completions list them.
FUNCTIONS: tuple[str, ...] = tuple(r.op.value for r in OPS.values() if r.kind is Kind.FUNCTION)
# The functions of one vector that keep its size.
ELEMENTWISE: tuple[str, ...] = tuple(r.op.value for r in OPS.values() if r.rule == "_unary")
# The arithmetic operators as the language writes them (`-` is also negation, `neg`).
OPERATORS: dict[str, Op] = {r.symbol: r.op for r in OPS.values()
                            if r.kind is Kind.OPERATOR and r.arity == (2, 2)
                            and not r.condition}
# The comparisons, by symbol: `<` is `Op.LESS`.
COMPARISONS: dict[str, Op] = {r.symbol: r.op for r in OPS.values() if r.verb == "compare"}


def is_condition(node) -> bool:
    """Whether an IR node is a condition (a comparison, `and`, `or`, `not`), not a value."""
    record = OPS.get(node.op)
    return record is not None and record.condition

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
