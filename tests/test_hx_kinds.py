"""Generated `forward` (and `step`) checks the *kind* of `hx` before its shape (issue 19):
a tensor for a block of one state, a tuple or list of its states for a block of several
(named as the cell names them), one entry per block for several blocks. A wrong kind is a
ValueError saying what the stack takes and what was given (a tensor's shape), never a
misleading shape message or Python's "too many values to unpack". The real generated
modules of every kind: fused and explicit backends, a declared cell, a layered network."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from rnnspec import check_source  # noqa: E402
from rnnspec.backends.torch.codegen import generate_source, load_source  # noqa: E402

SPEC = """
cell Pair {
    state h[hidden_size], c[hidden_size]
    param w[hidden_size, input_size]
    c = tanh(w @ x) + c
    h = tanh(c)
}

stack Long {
    input_size = 4
    lstm(hidden_size = 5, num_layers = 2)
}

stack Gated {
    input_size = 4
    gru(hidden_size = 5)
}

stack Two {
    input_size = 4
    first = gru(hidden_size = 5)
    second = lstm(hidden_size = 5)
}

stack Declared {
    input_size = 4
    pair = Pair(hidden_size = 5)
}

stack Layered {
    input_size = 4
    rnn = lstm(hidden_size = 5)
    linear(3)
}

stack LayeredTwo {
    input_size = 4
    low = gru(hidden_size = 5)
    linear(4)
    high = lstm(hidden_size = 5)
}
"""
T, B, H = 3, 2, 5
BACKENDS = ("fused", "explicit")


@pytest.fixture(scope="module", params=BACKENDS)
def generated(request):
    result = check_source(SPEC, "hx_kinds.rnn")
    assert result.ok, result.diagnostics
    return load_source(generate_source(result, backend=request.param), "hx_kinds.rnn")


def _x():
    return torch.randn(T, B, 4)


def _raises(call, *parts: str) -> str:
    with pytest.raises(ValueError) as info:  # noqa: PT011 - the message is checked below
        call()
    message = str(info.value)
    for part in parts:
        assert part in message, message
    assert "unpack" not in message, message
    return message


def _state(rows: int = 1):
    return torch.zeros(rows, B, H)


def test_an_lstm_block_takes_h0_and_c0(generated):
    model = generated.Long()
    wanted = "Long: hx must be a tuple or list (h0, c0), the states of lstm block"
    # h0 alone, of exactly the right shape: the message is about the kind, not the shape
    message = _raises(lambda: model(_x(), _state(2)), wanted, "got a tensor of shape [2, 2, 5]")
    assert "must be [2, B, 5]" not in message
    _raises(lambda: model(_x(), _state(3)), wanted, "got a tensor of shape [3, 2, 5]")
    _raises(lambda: model(_x(), (_state(2),)), wanted, "got a tuple of 1")
    _raises(lambda: model(_x(), [_state(2)] * 3), wanted, "got a list of 3")
    _raises(lambda: model(_x(), "h0"), wanted, "got str")
    _raises(lambda: model.step(torch.randn(B, 4), _state(2)), wanted, "got a tensor")
    output, (h, c) = model(_x(), (_state(2), _state(2)))
    assert output.shape == (T, B, H) and h.shape == c.shape == (2, B, H)
    output, _ = model(_x(), [_state(2), None])  # a list, and a state left out, still work
    assert output.shape == (T, B, H)
    output, _ = model.step(torch.randn(B, 4), (_state(2), _state(2)))
    assert output.shape == (B, H)


def test_a_gru_block_takes_one_tensor(generated):
    model = generated.Gated()
    wanted = "Gated: hx must be a tensor h0, the state of gru block"
    _raises(lambda: model(_x(), (_state(), _state())), wanted, "got a tuple of 2")
    _raises(lambda: model(_x(), [_state()]), wanted, "got a list of 1")
    _raises(lambda: model.step(torch.randn(B, 4), (_state(),)), wanted, "got a tuple of 1")
    # the right kind, a wrong shape: the shape message, as before
    _raises(lambda: model(_x(), _state(2)), "Gated: h0 must be [1, B, 5] = [1, 2, 5]")
    assert model(_x(), _state())[1].shape == (1, B, H)


def test_several_blocks_take_one_entry_per_block(generated):
    model = generated.Two()
    wanted = "Two: hx must be a tuple or list (first, second), one entry per block"
    _raises(lambda: model(_x(), _state()), wanted, "got a tensor of shape [1, 2, 5]")
    _raises(lambda: model(_x(), (_state(),)), wanted, "got a tuple of 1")
    _raises(lambda: model(_x(), (None, None, None)), wanted, "got a tuple of 3")
    _raises(lambda: model.step(torch.randn(B, 4), _state()), wanted, "got a tensor")
    # each entry is of its block's kind
    _raises(lambda: model(_x(), (None, _state())),
            "Two: hx[1] must be a tuple or list (h0, c0), the states of lstm block `second`",
            "got a tensor of shape [1, 2, 5]")
    _raises(lambda: model(_x(), ((_state(), _state()), None)),
            "Two: hx[0] must be a tensor h0, the state of gru block `first`", "got a tuple of 2")
    output, (first, (h, c)) = model(_x(), (_state(), (_state(), _state())))
    assert output.shape == (T, B, H) and first.shape == h.shape == c.shape == (1, B, H)


def test_a_declared_cell_takes_its_states_by_name(generated):
    model = generated.Declared()
    wanted = "Declared: hx must be a tuple or list (h0, c0), the states of Pair block `pair`"
    _raises(lambda: model(_x(), _state()), wanted, "got a tensor of shape [1, 2, 5]")
    _raises(lambda: model(_x(), (_state(),) * 3), wanted, "got a tuple of 3")
    output, (h, c) = model(_x(), (_state(), _state()))
    assert output.shape == (T, B, H) and h.shape == c.shape == (1, B, H)


def test_layered_networks_check_the_kind_too(generated):
    one = generated.Layered()
    wanted = "Layered: hx must be a tuple or list (h0, c0), the states of lstm block `rnn`"
    _raises(lambda: one(_x(), _state()), wanted, "got a tensor of shape [1, 2, 5]")
    _raises(lambda: one.step(torch.randn(B, 4), _state()), wanted, "got a tensor")
    assert one(_x(), (_state(), _state()))[0].shape == (T, B, 3)
    two = generated.LayeredTwo()
    _raises(lambda: two(_x(), _state()),
            "LayeredTwo: hx must be a tuple or list (low, high), one entry per block",
            "got a tensor of shape [1, 2, 5]")
    _raises(lambda: two(_x(), (None, _state())),
            "LayeredTwo: hx[1] must be a tuple or list (h0, c0), the states of lstm block "
            "`high`", "got a tensor")
    output, (low, (h, c)) = two(_x(), (_state(), (_state(), _state())))
    assert output.shape == (T, B, H) and low.shape == h.shape == c.shape == (1, B, H)
