"""Differential: generated modules compute what the chain of torch modules computes.

For random stacks and both backends, the parameters of torch's own modules are copied
into the generated model; outputs and final states must agree (float32 within 1e-5,
float64 within 1e-10), batched, unbatched, batch_first, with and without hx, gradients too.
Every test runs on cpu, and on cuda where there is one.
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import render, stack_specs, torch_modules

from rnnspec import check_source
from rnnspec.backends.torch.codegen import generate_source, load_source

torch = pytest.importorskip("torch")

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
HYPOTHESIS = settings(max_examples=40, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow,
                                             HealthCheck.function_scoped_fixture])


def build(spec, backend: str, device: str, dtype):
    """The generated model and the torch chain, with equal parameters, in eval mode."""
    result = check_source(render(spec), "random.rnn")
    assert result.ok, result.diagnostics
    module = load_source(generate_source(result, backend=backend), "random.rnn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generated = getattr(module, spec.name)(device=device, dtype=dtype)
        chain = torch_modules(spec, device=device, dtype=dtype)
    state = {f"{name}.{key}": value for name, m in zip(spec.block_names(), chain)
             for key, value in m.state_dict().items()}
    generated.load_state_dict(state, strict=True)
    generated.eval()
    for m in chain:
        m.eval()
    return generated, chain


def run_chain(chain, x, hx):
    states = []
    for m, h in zip(chain, hx):
        x, state = m(x, h)
        states.append(state)
    return x, states


def random_state(spec, batch, device, dtype):
    """One hx entry per block, with the shapes torch expects (None sometimes)."""
    hx = []
    for block in spec.blocks:
        rows = block.num_layers * (2 if block.bidirectional else 1)
        h_size = block.proj_size or block.hidden_size
        lead = (rows,) if batch is None else (rows, batch)
        h = torch.randn(*lead, h_size, device=device, dtype=dtype)
        if block.cell == "lstm":
            hx.append((h, torch.randn(*lead, block.hidden_size, device=device, dtype=dtype)))
        else:
            hx.append(h)
    return hx


def flatten(states):
    for s in states:
        if isinstance(s, tuple):
            yield from s
        else:
            yield s


def assert_close(a, b, dtype):
    tolerance = TOLERANCE[dtype]
    torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance)


def call_generated(generated, spec, x, hx):
    """Single-block stacks take PyTorch's own hx; several blocks take a tuple of them."""
    if len(spec.blocks) == 1:
        out, state = generated(x, None if hx is None else hx[0])
        return out, [state]
    out, states = generated(x, None if hx is None else tuple(hx))
    return out, list(states)


@HYPOTHESIS
@given(spec=stack_specs(), backend=st.sampled_from(["fused", "explicit"]),
       dtype=st.sampled_from([torch.float32, torch.float64]),
       batched=st.booleans(), with_hx=st.booleans(), data=st.data())
def test_outputs_equal_torch(device, spec, backend, dtype, batched, with_hx, data):
    generated, chain = build(spec, backend, device, dtype)
    T = data.draw(st.integers(1, 6), label="T")
    batch = data.draw(st.integers(1, 4), label="B") if batched else None
    if batch is None:
        shape = (T, spec.input_size)
    else:
        shape = (batch, T, spec.input_size) if spec.batch_first else (T, batch, spec.input_size)
    x = torch.randn(shape, device=device, dtype=dtype)
    hx = random_state(spec, batch, device, dtype) if with_hx else None
    expected, expected_states = run_chain(chain, x, hx or [None] * len(chain))
    out, states = call_generated(generated, spec, x, hx)
    assert_close(out, expected, dtype)
    for got, want in zip(flatten(states), flatten(expected_states), strict=True):
        assert_close(got, want, dtype)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(spec=stack_specs(max_blocks=2), backend=st.sampled_from(["fused", "explicit"]))
def test_gradients_equal_torch(device, spec, backend):
    dtype = torch.float64
    generated, chain = build(spec, backend, device, dtype)
    shape = (2, 4, spec.input_size)
    x1 = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    out1, _ = call_generated(generated, spec, x1, None)
    out2, _ = run_chain(chain, x2, [None] * len(chain))
    out1.square().sum().backward()
    out2.square().sum().backward()
    assert_close(x1.grad, x2.grad, dtype)
    got = dict(generated.named_parameters())
    for name, m in zip(spec.block_names(), chain):
        for key, p in m.named_parameters():
            assert_close(got[f"{name}.{key}"].grad, p.grad, dtype)


@HYPOTHESIS
@given(spec=stack_specs())
def test_fused_and_explicit_agree(device, spec):
    fused, _ = build(spec, "fused", device, torch.float64)
    explicit, _ = build(spec, "explicit", device, torch.float64)
    explicit.load_state_dict(fused.state_dict())
    shape = (3, 5, spec.input_size)
    x = torch.randn(shape, device=device, dtype=torch.float64)
    out1, states1 = call_generated(fused, spec, x, None)
    out2, states2 = call_generated(explicit, spec, x, None)
    assert_close(out1, out2, torch.float64)
    for a, b in zip(flatten(states1), flatten(states2), strict=True):
        assert_close(a, b, torch.float64)


def test_builtin_variants_in_one_module_are_one_class_each():
    """Each built-in variant is its own class, printed from its equations, named from the
    cell and the variant; blocks of one variant share it; numbers stay torch.nn's."""
    text = """stack Net {
        input_size = 3
        a = lstm(hidden_size = 6, proj_size = 2)
        b = lstm(hidden_size = 4, bias = false)
        c = gru(hidden_size = 5, bias = false)
        d = rnn(hidden_size = 4, nonlinearity = relu)
        e = gru(hidden_size = 3)
        f = lstm(hidden_size = 4)
        g = lstm(hidden_size = 4, proj_size = 3)
    }"""
    result = check_source(text, "variants.rnn")
    assert result.ok, result.diagnostics
    source = generate_source(result, backend="explicit")
    assert source == generate_source(check_source(text, "variants.rnn"), backend="explicit")
    classes = [line.split("(")[0][6:] for line in source.splitlines()
               if line.startswith("class _") and "(_Recurrent)" in line]
    assert classes == ["_LSTMProj", "_LSTMNoBias", "_GRUNoBias", "_RNNRelu", "_GRU", "_LSTM"]
    assert "declared at line" not in source
    assert source.count('"""Built-in cell `') == len(classes)
    generated = load_source(source, "variants.rnn").Net()
    torch.manual_seed(0)
    nn = torch.nn
    chain = [nn.LSTM(3, 6, proj_size=2), nn.LSTM(2, 4, bias=False), nn.GRU(4, 5, bias=False),
             nn.RNN(5, 4, nonlinearity="relu"), nn.GRU(4, 3), nn.LSTM(3, 4),
             nn.LSTM(4, 4, proj_size=3)]
    generated.load_state_dict({f"{name}.{key}": value for name, m in zip("abcdefg", chain)
                               for key, value in m.state_dict().items()}, strict=True)
    x = torch.randn(7, 2, 3)
    expected = x
    for m in chain:
        expected = m(expected)[0]
    assert_close(generated(x)[0], expected, torch.float32)
