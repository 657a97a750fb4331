"""The shape algebra: sizes as polynomials over the size names (rnnspec.cells.shapes.Size).

Ring laws, canonical form, exact division, evaluation, and printing that reads back
through the language's own parser to the same size."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rnnspec import check_source
from rnnspec.cells.shapes import Size, format_shape, quotient

NAMES = ("input_size", "hidden_size", "proj", "k")

sizes = st.recursive(
    st.one_of(st.integers(-5, 9).map(Size.of), st.sampled_from(NAMES).map(Size.of)),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: p[0] + p[1]),
        st.tuples(inner, inner).map(lambda p: p[0] - p[1]),
        st.tuples(inner, inner).map(lambda p: p[0] * p[1]),
    ),
    max_leaves=8,
)
values = st.fixed_dictionaries({name: st.integers(-20, 20) for name in NAMES})


@given(sizes, sizes, sizes)
def test_ring_laws(a, b, c):
    assert a + b == b + a and a * b == b * a
    assert (a + b) + c == a + (b + c) and (a * b) * c == a * (b * c)
    assert a * (b + c) == a * b + a * c
    assert a + 0 == a and a * 1 == a and a * 0 == Size.of(0)
    negated = -a
    assert a - a == Size.of(0) and -negated == a and a - b == a + (-b)
    assert hash(a + b) == hash(b + a)


@given(sizes, sizes, values)
def test_evaluation_is_a_homomorphism(a, b, at):
    assert (a + b).evaluate(at) == a.evaluate(at) + b.evaluate(at)
    assert (a * b).evaluate(at) == a.evaluate(at) * b.evaluate(at)
    assert (a - b).evaluate(at) == a.evaluate(at) - b.evaluate(at)


def test_canonical_form_is_how_people_write_sizes():
    h, i = Size.of("hidden_size"), Size.of("input_size")
    assert 4 * h == h * 2 * 2
    assert str(4 * h) == "4 * hidden_size"
    assert str(i + h) == str(h + i) == "hidden_size + input_size"
    assert str(h * h - 1) == "hidden_size * hidden_size - 1"
    assert str(Size.of(0)) == "0" and str(-h) == "-hidden_size"
    assert format_shape([4 * h, i]) == "[4 * hidden_size, input_size]"


@given(sizes, st.integers(1, 7))
def test_exact_division(a, divisor):
    assert (a * divisor).exact_div(divisor) == a
    divided = a.exact_div(divisor)
    if divided is not None:
        assert divided * divisor == a
    else:
        assert any(c % divisor for _, c in a.terms)


def test_a_quotient_is_floor_division_and_reads_back():
    total = Size.of("input_size") + Size.of("hidden_size")
    half = quotient(total, 2)
    assert half.names == {"(hidden_size + input_size) // 2"}
    assert half.evaluate({"input_size": 7, "hidden_size": 9}) == 8
    assert half.evaluate({"input_size": 7, "hidden_size": 8}) == 7  # floor, as `//` is
    assert quotient(4 * Size.of("hidden_size"), 2) == 2 * Size.of("hidden_size")


@settings(max_examples=60, deadline=None)
@given(sizes)
def test_printing_reads_back_through_the_parser(size):
    """`str(size)` written as a parameter's dimension in a cell is the same size again."""
    text = (f"cell C(proj, k) {{\n    state h[hidden_size]\n    param p[{size}]\n"
            "    h = tanh(h)\n}\n")
    result = check_source(text, "sizes.rnn")
    assert not [d for d in result.diagnostics if d.is_error], result.diagnostics
    (cell,) = result.cells
    (parameter,) = cell.parameters
    assert parameter.dims == (size,)


# ----------------------------------------------------------------------------- the time axis


def test_the_time_axis_is_an_expression_that_reads_as_t():
    import copy
    import json
    import pickle

    from rnnspec.cells.shapes import TIME, Size, Time, bind_dims, format_shape, sequence_shape

    assert isinstance(TIME, Time) and TIME == "T" and TIME.size == Size.of("T")
    assert {"T": 7}[TIME] == 7 and format_shape(sequence_shape(20, False)) == "[T, B, 20]"
    assert sequence_shape(20, True)[1] is TIME
    assert json.dumps(list(sequence_shape(20, False))) == '["T", "B", 20]'
    for copied in (copy.deepcopy(TIME), pickle.loads(pickle.dumps(TIME))):
        assert isinstance(copied, Time) and copied == "T" and copied.size == TIME.size
    # an axis that is not T itself is evaluated at the bound T (the next layers make these)
    halved = Time(Size.of("T") * 2 + 1)
    assert halved == "2 * T + 1" and halved.evaluate(10) == 21
    assert bind_dims((halved, "B", 5), {"T": 10, "B": 3}) == [21, 3, 5]
    assert bind_dims((halved, "B", 5), {"T": None, "B": 3}) == [None, 3, 5]


def test_every_entry_of_a_checked_stack_carries_the_time_axis():
    from rnnspec.cells.shapes import Time
    from rnnspec.check.checker import check_text

    text = ("stack S {\n    input_size = 8\n    batch_first = true\n"
            "    a = lstm(hidden_size = 4, bidirectional = true)\n"
            "    b = gru(hidden_size = 3)\n}\n")
    result = check_text(text, "s.rnn")
    assert result.ok
    stack = result.stacks[0]
    assert isinstance(stack.input[1], Time) and isinstance(stack.output[1], Time)
    for entry in stack.entries:
        assert isinstance(entry.time, Time) and entry.time == "T"
