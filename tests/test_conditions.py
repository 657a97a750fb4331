"""Conditional values (issue 13): comparisons, `and`/`or`/`not` and `A if C else B` in the
expression language, against Python's own evaluation; type errors located."""

from __future__ import annotations

import ast as pyast
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnspec.check.checker import Checker, check_text
from rnnspec.language.parse import MAX_NESTING, parse

# ----------------------------------------------------------------------------- Python's trees
# Well-typed random expressions as Python ASTs: numbers where numbers go, booleans where
# booleans go (rnnspec refuses Python's mixing, such as `True + 1`). `ast.unparse` writes
# them with Python's precedence and no more parentheses than Python needs, so the text
# only means the same in rnnspec if rnnspec's precedence is Python's.

_ARITHMETIC = [pyast.Add(), pyast.Sub(), pyast.Mult(), pyast.FloorDiv()]
_ORDER = [pyast.Lt(), pyast.LtE(), pyast.Gt(), pyast.GtE(), pyast.Eq(), pyast.NotEq()]

numbers_leaf = st.one_of(
    st.integers(0, 12).map(pyast.Constant),
    st.sampled_from([0.5, 1.5, 2.0, 0.25, 3.0, 1e-3]).map(pyast.Constant),
)
booleans_leaf = st.booleans().map(pyast.Constant)


def _extend(children):
    numbers, booleans = children
    return st.one_of(
        st.tuples(numbers, st.sampled_from(_ARITHMETIC), numbers).map(
            lambda t: pyast.BinOp(t[0], t[1], t[2])),
        numbers.map(lambda n: pyast.UnaryOp(pyast.USub(), n)),
        st.tuples(numbers, booleans, numbers).map(lambda t: pyast.IfExp(t[1], t[0], t[2])),
    ), st.one_of(
        st.tuples(numbers, st.lists(st.tuples(st.sampled_from(_ORDER), numbers), min_size=1,
                                    max_size=3)).map(
            lambda t: pyast.Compare(t[0], [op for op, _ in t[1]], [n for _, n in t[1]])),
        st.tuples(booleans, st.sampled_from([pyast.Eq(), pyast.NotEq()]), booleans).map(
            lambda t: pyast.Compare(t[0], [t[1]], [t[2]])),
        st.tuples(st.sampled_from([pyast.And(), pyast.Or()]),
                  st.lists(booleans, min_size=2, max_size=4)).map(
            lambda t: pyast.BoolOp(t[0], t[1])),
        booleans.map(lambda b: pyast.UnaryOp(pyast.Not(), b)),
        st.tuples(booleans, booleans, booleans).map(lambda t: pyast.IfExp(t[1], t[0], t[2])),
    )


@st.composite
def expressions(draw, depth: int = 4):
    """A (numbers, booleans) pair of strategies `depth` levels deep; draw one kind."""
    numbers, booleans = numbers_leaf, booleans_leaf
    for _ in range(depth):
        extended_numbers, extended_booleans = _extend((numbers, booleans))
        numbers = st.one_of(numbers_leaf, extended_numbers)
        booleans = st.one_of(booleans_leaf, extended_booleans)
    return draw(st.one_of(numbers, booleans))


def _rnnspec_text(tree) -> str:
    text = pyast.unparse(tree)
    return text.replace("True", "true").replace("False", "false")


def _evaluate(text: str):
    spec, problems = parse(f"let X = {text}\n", "expr.rnn")
    assert spec is not None and not problems, problems
    checker = Checker(spec)
    return checker.values.values["X"], list(checker.problems)


@settings(max_examples=400, deadline=None)
@given(expressions())
def test_evaluation_agrees_with_python(tree):
    text = _rnnspec_text(tree)
    python_text = pyast.unparse(tree)
    try:
        expected = eval(python_text, {"__builtins__": {}})  # noqa: S307 - our own trees
    except ZeroDivisionError:
        expected = ZeroDivisionError
    value, problems = _evaluate(text)
    if expected is ZeroDivisionError:
        # Python stops at the first; rnnspec reports every division by zero it evaluates
        assert problems and {p.code for p in problems} == {"E022"}, (text, problems)
        return
    assert not problems, (text, problems)
    assert value == expected and type(value) is type(expected), (text, value, expected)


@pytest.mark.parametrize(("text", "expected"), [
    ("1 < 2 < 3", True),
    ("3 > 2 > 2", False),
    ("not 1 < 2", False),  # `not` binds more loosely than a comparison
    ("not true == false", True),  # ... so this is not (true == false)
    ("true or false and false", True),  # `and` binds more tightly than `or`
    ("1 if false else 2 if true else 3", 2),  # the conditional chains to the right
    ("1 + 2 if 1 > 2 else 3 * 4", 12),  # and binds more loosely than arithmetic
    ("-1 if true else 2", -1),
    ("0.4 if 2 > 1 else 0", 0.4),
    ("not not true", True),
    ("1 // 0 if false else 7", 7),  # the branch not taken is not evaluated
    ("false and 1 // 0 == 0", False),  # `and` stops at the first false
    ("true or 1 // 0 == 0", True),
    ("1 > 2 < 1 // 0", False),  # a chain stops at the first false comparison
])
def test_python_semantics(text, expected):
    value, problems = _evaluate(text)
    assert not problems
    assert value == expected and type(value) is type(expected)
    assert eval(text.replace("true", "True").replace("false", "False"),  # noqa: S307
                {"__builtins__": {}}) == expected


def _only(text: str):
    result = check_text(text, "spec.rnn")
    assert len(result.diagnostics) == 1, result.diagnostics
    return result.diagnostics[0]


def _columns(diagnostic, line: str) -> str:
    return line[diagnostic.span.column - 1:diagnostic.span.end_column - 1]


@pytest.mark.parametrize(("value", "code", "located", "message"), [
    ("A if 3 else B", "E020", "3", "condition must be `true` or `false`, found the integer `3`"),
    ("not 3", "E020", "3", "operand of `not` must be `true` or `false`, found the integer `3`"),
    ("true and 0.5", "E020", "0.5", "operand of `and` must be `true` or `false`"),
    ("1 or true", "E020", "1", "operand of `or` must be `true` or `false`"),
    ("true < false", "E020", "true", "`<` compares numbers, found `true`"),
    ("1 < true", "E020", "true", "`<` compares numbers, found `true`"),
    ("true == 1", "E020", "true == 1", "`==` cannot compare `true` with the integer `1`"),
    ("(1 < 2) + 1", "E020", "1 < 2", "arithmetic needs numbers, found `true`"),
    ("-(1 < 2)", "E020", "1 < 2", "arithmetic needs numbers, found `true`"),
    ("HIDEN > 1", "E010", "HIDEN", "unknown name `HIDEN`"),
    ("True if true else false", None, None, None),
    ("1 if True else 2", "E020", "True", "condition must be `true` or `false`, found the word"),
    ("1 if 2 > 1 else 1 // 0", None, None, None),
    ("1 // 0 if 2 > 1 else 1", "E022", "0", "division by zero"),
])
def test_type_errors_are_located(value, code, located, message):
    line = f"let X = {value}"
    result = check_text(f"let A = 1\nlet B = 2\nlet HIDDEN = 3\n{line}\n", "spec.rnn")
    if code is None:
        # a word in a branch is a word (fine for a constant); a branch not taken is not evaluated
        assert result.diagnostics == []
        return
    (diagnostic,) = result.diagnostics
    assert diagnostic.code == code
    assert diagnostic.span.line == 4 and _columns(diagnostic, line) == located
    assert diagnostic.message.startswith(message)


def test_a_comparison_is_not_a_size():
    line = "    lstm(hidden_size = 3 < 4)"
    diagnostic = _only(f"stack Net {{\n    input_size = 3\n{line}\n}}\n")
    assert diagnostic.code == "E020" and diagnostic.span.line == 3
    assert _columns(diagnostic, line) == "3 < 4"
    assert "if CONDITION else" in diagnostic.help


def test_a_comparison_through_a_constant_is_not_a_size_either():
    diagnostic = _only("let BIG = 3 > 2\nstack Net {\n    input_size = 3\n"
                       "    lstm(hidden_size = BIG)\n}\n")
    assert diagnostic.code == "E020" and diagnostic.span.line == 4
    assert "if CONDITION else" in diagnostic.help


def test_conditions_choose_arguments():
    text = """\
let LAYERS = 3
let WIDE = LAYERS >= 3 and not false
stack Net {
    input_size = 8
    batch_first = LAYERS > 2
    lstm(hidden_size = 64 if WIDE else 32, num_layers = LAYERS,
         dropout = 0.4 if LAYERS > 1 else 0, bidirectional = 1 < LAYERS < 4)
}
"""
    result = check_text(text, "spec.rnn")
    assert result.ok and not result.diagnostics
    (stack,) = result.stacks
    block = stack.blocks[0]
    assert stack.batch_first is True
    assert (block.hidden_size, block.num_layers, block.dropout, block.bidirectional) == (
        64, 3, 0.4, True)


def test_cycles_through_conditions_are_found():
    result = check_text("let A = 1 if B > 0 else 2\nlet B = A\n", "spec.rnn")
    assert [d.code for d in result.diagnostics] == ["E013"]


def test_keywords_come_from_the_grammar():
    from rnnspec.language.parse import language_words

    assert {"if", "else", "and", "or", "not"} <= language_words()
    diagnostic = _only("let if = 3\n")
    assert diagnostic.code == "E001"


def test_deep_expressions_do_not_recurse():
    """Every level of the grammar at every one of the 64 parentheses: nothing recurses."""
    def level(inner):
        return f"(1 if not (true and (false or (1 < -(1 + 2 * ({inner}))))) else 2)"

    text = "3"
    for _ in range(MAX_NESTING // 6):
        text = level(text)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(150)  # far below what a recursive walk of this tree needs
    try:
        value, problems = _evaluate(text)
    finally:
        sys.setrecursionlimit(limit)
    assert (value, problems) == (1, [])


@pytest.mark.parametrize(("joiner", "node", "width"), [
    (" and ", "Logic", lambda n: len(n.operands)),
    (" or ", "Logic", lambda n: len(n.operands)),
    (" < ", "Comparison", lambda n: len(n.rest) + 1),
    (" if true else ", "Conditional", lambda n: len(n.branches) + 1),
])
def test_long_chains_stay_flat(joiner, node, width):
    terms = 5000
    operand = "1" if node == "Comparison" else "true"
    text = joiner.join([operand] * terms) if node != "Comparison" else \
        joiner.join(str(i) for i in range(terms))
    spec, problems = parse(f"let X = {text}\n", "t.rnn")
    assert not problems
    (let,) = spec.lets
    assert type(let.value).__name__ == node and width(let.value) == terms
    value, problems = _evaluate(text)
    assert value is True and not problems


def test_nesting_limit_still_holds():
    text = "(" * (MAX_NESTING + 1) + "1 < 2" + ")" * (MAX_NESTING + 1)
    diagnostic = _only(f"let X = {text}\n")
    assert diagnostic.code == "E003"
