"""The op table (`rnnspec.cells.ops`): one record per op, and the lists derived from it."""

from rnnspec.cells import ops
from rnnspec.cells.expressions import Expressions
from rnnspec.cells.ir import Node, describe
from rnnspec.cells.ops import OPS, Kind, Op
from rnnspec.cells.shapes import Size


def test_every_op_has_one_record():
    assert set(OPS) == set(Op)
    for op, record in OPS.items():
        assert record.op is op
        low, high = record.arity
        assert high is None or low <= high


def test_ops_compare_and_print_as_their_names():
    assert Op.MATMUL == "matmul" and "matmul" == Op.MATMUL
    assert {"matmul": 1}[Op.MATMUL] == 1
    assert f"{Op.LAYER_NORM}(" == "layer_norm(" and str(Op.TANH) == "tanh"


def test_lists_derive_from_the_table():
    assert ops.FUNCTIONS == tuple(r.op.value for r in OPS.values() if r.kind is Kind.FUNCTION)
    assert set(ops.ELEMENTWISE) < set(ops.FUNCTIONS)
    assert set(ops.OPERATORS) == {"+", "-", "*", "/", "@"}
    assert set(ops.COMPARISONS) == {"<", "<=", ">", ">=", "==", "!="}
    assert all(OPS[op].condition for op in ops.COMPARISONS.values())
    assert {"where", "dropout"} <= set(ops.FUNCTIONS)
    assert {"chunk", "concat", "layer_norm", "clamp", "sigmoid"} <= set(ops.FUNCTIONS)


def test_every_function_has_a_shape_rule_in_the_checker():
    for record in OPS.values():
        if record.kind is Kind.FUNCTION:
            assert callable(getattr(Expressions, record.rule))
    assert ops.function("tanh").op is Op.TANH
    assert ops.function("x") is None and ops.function("nope") is None


def test_describe_reads_precedence_from_the_table():
    h = Size.of("hidden_size")
    a = Node(Op.LOCAL, (), "a", h, False, True, None)
    b = Node(Op.LOCAL, (), "b", h, False, True, None)
    total = Node(Op.ADD, (a, b), None, h, False, True, None)
    product = Node(Op.MUL, (total, a), None, h, False, True, None)
    assert describe(product) == "(a + b) * a"
    assert describe(Node(Op.NEG, (total,), None, h, False, True, None)) == "-(a + b)"
    assert describe(Node(Op.SUB, (a, total), None, h, False, True, None)) == "a - (a + b)"
    assert describe(Node(Op.TANH, (total,), None, h, False, True, None)) == "tanh(a + b)"


def test_describe_writes_conditions_as_python_reads_them():
    h = Size.of("hidden_size")
    a = Node(Op.LOCAL, (), "a", h, False, True, None)
    zero = Node(Op.NUMBER, (), 0.0, None, False, False, None)
    less = Node(Op.LESS, (a, zero), None, h, False, True, None)
    more = Node(Op.GREATER, (a, zero), None, h, False, True, None)
    either = Node(Op.OR, (less, Node(Op.NOT, (more,), None, h, False, True, None)), None, h,
                  False, True, None)
    both = Node(Op.AND, (either, less), None, h, False, True, None)
    assert describe(both) == "(a < 0.0 or not a > 0.0) and a < 0.0"
    chosen = Node(Op.WHERE, (less, a, zero), None, h, False, True, None)
    assert describe(chosen) == "where(a < 0.0, a, 0.0)"
    assert ops.is_condition(less) and not ops.is_condition(chosen)
