"""Differential tests of user-declared cells (language.md section 8; issue 9).

- The library's re-expressions of PyTorch's cells (examples/cells.rnn: TorchLSTM,
  TorchLSTMP, TorchGRU, TorchRNN, TorchRNNReLU), loaded with the state dict of a random
  `nn.LSTM`/`nn.GRU`/`nn.RNN`, give that module's outputs, final states and gradients.
- Every other library cell equals a plain PyTorch loop (`user_cells.run_reference`) of a
  step written in tests/cell_references.py from the cited source's equations.
- The reference runner itself is checked against PyTorch's modules (runs today).

Tests that need user cells are skipped, with the reason, only while a `cell` item is a
syntax error; they run as soon as the feature lands. Every device-dependent test runs on
cpu, and on cuda where there is one (`device` fixture of conftest.py).
"""

from __future__ import annotations

import math
import re
import warnings

import pytest

torch = pytest.importorskip("torch")

from cell_references import REFERENCES  # noqa: E402
from user_cells import (  # noqa: E402
    BACKENDS,
    LIBRARY,
    as_tuple,
    check_clean,
    generated_module,
    library,
    needs_user_cells,
    params_by_layer_dir,
    run_reference,
    stack_source,
)

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
TORCH_CELLS = [name for name, ref in REFERENCES.items() if ref.torch_module]
OTHER_CELLS = [name for name, ref in REFERENCES.items() if not ref.torch_module]

# (num_layers, bidirectional, batch_first, batched, with_hx)
CONFIGS = [
    (1, False, False, True, False),
    (1, False, False, True, True),
    (2, True, False, True, True),
    (3, True, True, True, False),
    (2, False, True, True, True),
    (2, True, False, False, True),
    (1, True, True, False, False),
]
CONFIG_IDS = [f"L{c[0]}{'-bi' if c[1] else ''}{'-bf' if c[2] else ''}"
              f"{'' if c[3] else '-unbatched'}{'-hx' if c[4] else ''}" for c in CONFIGS]
T, B, INPUT, HIDDEN = 5, 3, 6, 4


def assert_close(got, want, dtype):
    tolerance = TOLERANCE[dtype]
    torch.testing.assert_close(got, want, rtol=tolerance, atol=tolerance)


def input_shape(batched, batch_first, features=INPUT):
    if not batched:
        return (T, features)
    return (B, T, features) if batch_first else (T, B, features)


def random_states(ref, rows, batched, device, dtype, hidden=HIDDEN):
    like = torch.empty(0, device=device, dtype=dtype)
    return tuple(ref.initial_state(name, (rows, B, size) if batched else (rows, size), like)
                 for name, size in zip(ref.states, ref.state_sizes(hidden), strict=True))


def zero_states(ref, rows, batched, device, dtype, hidden=HIDDEN):
    return tuple(torch.zeros((rows, B, size) if batched else (rows, size), device=device,
                             dtype=dtype) for size in ref.state_sizes(hidden))


def single_block_model(cell, layers, bidirectional, batch_first, backend, device, dtype,
                       hidden=HIDDEN):
    """The generated stack `S` with one block `rec` of library cell `cell`, in eval mode."""
    ref = REFERENCES[cell]
    arguments = {"hidden_size": hidden, **ref.arguments, "num_layers": layers,
                 "bidirectional": bidirectional}
    source = stack_source("S", INPUT, batch_first, [("rec", cell, arguments)])
    module = generated_module(source, backend)
    model = module.S(device=device, dtype=dtype)
    model.eval()
    return model


def torch_module(cell, layers, bidirectional, batch_first, device, dtype, hidden=HIDDEN):
    ref = REFERENCES[cell]
    cls = getattr(torch.nn, ref.torch_module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = cls(INPUT, hidden, num_layers=layers, bidirectional=bidirectional,
                batch_first=batch_first, device=device, dtype=dtype, **ref.torch_kwargs)
    return m.eval()


def torch_hx(ref, states):
    if states is None:
        return None
    return states if len(ref.states) > 1 else states[0]


# ----------------------------------------------------------------------------- the oracle


@pytest.mark.parametrize("cell", TORCH_CELLS)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_reference_runner_equals_torch_modules(device, cell, config):
    """run_reference with PyTorch's equations gives nn.LSTM/GRU/RNN's numbers: the runner
    (layers, directions, batch_first, unbatched, state layout) is right."""
    layers, bidirectional, batch_first, batched, with_hx = config
    dtype = torch.float64
    ref = REFERENCES[cell]
    m = torch_module(cell, layers, bidirectional, batch_first, device, dtype)
    rows = layers * (2 if bidirectional else 1)
    x = torch.randn(input_shape(batched, batch_first), device=device, dtype=dtype)
    h0 = random_states(ref, rows, batched, device, dtype) if with_hx else None
    want_out, want_state = m(x, torch_hx(ref, h0))
    params = params_by_layer_dir(dict(m.named_parameters()))
    assert len(params) == layers and len(params[0]) == rows // layers
    start = h0 if with_hx else zero_states(ref, rows, batched, device, dtype)
    out, finals = run_reference(ref.step, params, x, start, batch_first=batch_first)
    assert_close(out, want_out, dtype)
    for got, want in zip(finals, as_tuple(want_state), strict=True):
        assert_close(got, want, dtype)


def test_every_library_cell_has_a_reference():
    """examples/cells.rnn and the reference steps name the same cells: none goes untested."""
    assert list(library()) == list(REFERENCES)


def test_library_items_are_whole():
    for name, text in library().items():
        assert text.startswith(f"cell {name}") and text.endswith("}")
        assert text.count("{") == text.count("}")
        assert "state " in text and "param " in text


# ----------------------------------------------------------------------------- the library


@needs_user_cells
def test_library_checks_clean_with_its_expectations():
    from rnnspec import check_source

    text = LIBRARY.read_text(encoding="utf-8")
    result = check_source(text, str(LIBRARY))
    assert [d for d in result.diagnostics] == [], result.diagnostics
    assert result.expectations and all(e.ok for e in result.expectations)
    # the built-in cells appear too, in the section-11 stacks at the end of the library
    cells = {block.cell for stack in result.stacks for block in stack.blocks
             if block.spec.step is not None}
    assert cells == set(REFERENCES), "every library cell is used by a stack"


@needs_user_cells
def test_library_json_lists_the_cells_in_order():
    import json

    from rnnspec import check_source
    from rnnspec.check.report import json_report

    result = check_source(LIBRARY.read_text(encoding="utf-8"), str(LIBRARY))
    document = json.loads(json_report([result]))
    assert [c["name"] for c in document["cells"]] == list(REFERENCES)
    lstm = next(c for c in document["cells"] if c["name"] == "TorchLSTM")
    assert list(lstm["states"]) == ["h", "c"]
    assert list(lstm["parameters"]) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    projected = next(c for c in document["cells"] if c["name"] == "TorchLSTMP")
    assert projected["arguments"] == {"proj_size": None}


@needs_user_cells
@pytest.mark.parametrize("backend", BACKENDS)
def test_library_initialisers(backend):
    """Parameters start as declared: PyTorch's uniform by default, ones/zeros as written."""
    hidden = 16
    model = single_block_model("HasteLayerNormLSTM", 1, False, False, backend, "cpu",
                               torch.float64, hidden=hidden)
    state = model.state_dict()
    bound = 1 / math.sqrt(hidden)
    assert state["rec.kernel_l0"].abs().max() <= bound
    assert state["rec.kernel_l0"].std() > 0
    for name in ("gamma_x", "gamma_r", "bias_f", "gamma_h"):
        assert torch.equal(state[f"rec.{name}_l0"], torch.ones_like(state[f"rec.{name}_l0"]))
    for name in ("bias_i", "bias_g", "bias_o", "beta_h"):
        assert torch.equal(state[f"rec.{name}_l0"], torch.zeros_like(state[f"rec.{name}_l0"]))
    model = single_block_model("LayerNormLSTM", 2, True, False, backend, "cpu", torch.float64,
                               hidden=hidden)
    state = model.state_dict()
    f64 = torch.float64
    assert torch.equal(state["rec.layernorm_c_weight_l1_reverse"], torch.ones(hidden, dtype=f64))
    assert torch.equal(state["rec.layernorm_i_bias_l1"], torch.zeros(4 * hidden, dtype=f64))
    assert state["rec.weight_ih_l1"].shape == (4 * hidden, 2 * hidden)
    assert state["rec.weight_ih_l1"].abs().max() > 1 / math.sqrt(hidden), "normal(0, 1)"


# ----------------------------------------------------------------------------- vs torch


@needs_user_cells
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_torch_cells_equal_torch_modules(device, cell, config, backend, dtype):
    """An nn.LSTM/GRU/RNN state dict loads into the re-expressed cell (strict) and the
    outputs and final states are the module's."""
    layers, bidirectional, batch_first, batched, with_hx = config
    ref = REFERENCES[cell]
    m = torch_module(cell, layers, bidirectional, batch_first, device, dtype)
    model = single_block_model(cell, layers, bidirectional, batch_first, backend, device, dtype)
    model.load_state_dict({f"rec.{k}": v for k, v in m.state_dict().items()}, strict=True)
    rows = layers * (2 if bidirectional else 1)
    x = torch.randn(input_shape(batched, batch_first), device=device, dtype=dtype)
    h0 = random_states(ref, rows, batched, device, dtype) if with_hx else None
    want_out, want_state = m(x, torch_hx(ref, h0))
    out, state = model(x, torch_hx(ref, h0))
    assert_close(out, want_out, dtype)
    assert isinstance(state, tuple) == (len(ref.states) > 1)
    for got, want in zip(as_tuple(state), as_tuple(want_state), strict=True):
        assert_close(got, want, dtype)


@needs_user_cells
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS[1:5], ids=CONFIG_IDS[1:5])
@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_torch_cells_gradients_equal_torch_modules(device, cell, config, backend):
    """After one backward of the squared outputs and final states: the same gradients for
    the input, the initial states and every parameter."""
    layers, bidirectional, batch_first, batched, with_hx = config
    dtype = torch.float64
    ref = REFERENCES[cell]
    m = torch_module(cell, layers, bidirectional, batch_first, device, dtype)
    model = single_block_model(cell, layers, bidirectional, batch_first, backend, device, dtype)
    model.load_state_dict({f"rec.{k}": v for k, v in m.state_dict().items()}, strict=True)
    rows = layers * (2 if bidirectional else 1)
    x1 = torch.randn(input_shape(batched, batch_first), device=device, dtype=dtype,
                     requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    h1 = random_states(ref, rows, batched, device, dtype) if with_hx else None
    h1 = tuple(h.requires_grad_(True) for h in h1) if h1 else None
    h2 = tuple(h.detach().clone().requires_grad_(True) for h in h1) if h1 else None
    for net, x, h in ((model, x1, h1), (m, x2, h2)):
        out, state = net(x, torch_hx(ref, h))
        loss = out.square().sum() + sum(s.square().sum() for s in as_tuple(state))
        loss.backward()
    assert_close(x1.grad, x2.grad, dtype)
    for a, b in zip(h1 or (), h2 or (), strict=True):
        assert_close(a.grad, b.grad, dtype)
    got = dict(model.named_parameters())
    assert set(got) == {f"rec.{k}" for k, _ in m.named_parameters()}
    for key, p in m.named_parameters():
        assert_close(got[f"rec.{key}"].grad, p.grad, dtype)


@needs_user_cells
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_first", [False, True])
def test_stack_of_torch_cells_equals_chain_of_modules(device, backend, batch_first):
    """Several blocks: the hx tuple (with None entries) and the returned tuple, one entry
    per block, in each block's own convention."""
    dtype = torch.float64
    blocks = [("enc", "TorchLSTM", dict(hidden_size=5, num_layers=2, bidirectional=True)),
              ("mid", "TorchGRU", dict(hidden_size=4)),
              ("out", "TorchRNN", dict(hidden_size=3, num_layers=2))]
    source = stack_source("Chain", INPUT, batch_first, blocks)
    model = generated_module(source, backend).Chain(device=device, dtype=dtype).eval()
    kw = dict(batch_first=batch_first, device=device, dtype=dtype)
    chain = [torch.nn.LSTM(INPUT, 5, num_layers=2, bidirectional=True, **kw),
             torch.nn.GRU(10, 4, **kw), torch.nn.RNN(4, 3, num_layers=2, **kw)]
    model.load_state_dict({f"{name}.{k}": v for (name, _, _), m in zip(blocks, chain)
                           for k, v in m.state_dict().items()}, strict=True)
    x = torch.randn(input_shape(True, batch_first), device=device, dtype=dtype)
    hx = ((torch.randn(4, B, 5, device=device, dtype=dtype),
           torch.randn(4, B, 5, device=device, dtype=dtype)),
          None,
          torch.randn(2, B, 3, device=device, dtype=dtype))
    want_states, y = [], x
    for m, h in zip(chain, hx):
        y, state = m.eval()(y, h)
        want_states.append(state)
    out, states = model(x, hx)
    assert_close(out, y, dtype)
    assert isinstance(states, tuple) and len(states) == 3
    for got, want in zip(states, want_states, strict=True):
        for a, b in zip(as_tuple(got), as_tuple(want), strict=True):
            assert_close(a, b, dtype)
    out_none, _ = model(x)
    want_none = x
    for m in chain:
        want_none, _ = m(want_none)
    assert_close(out_none, want_none, dtype)


# ----------------------------------------------------------------------------- vs the papers


def _randomise(model, generator_seed=0):
    """Every parameter drawn again (ones and zeros would hide a misplaced gain or bias)."""
    gen = torch.Generator().manual_seed(generator_seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) * 1.6 - 0.8)


@needs_user_cells
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("cell", list(REFERENCES))
def test_library_cells_equal_their_reference(device, cell, config, backend):
    """Outputs, final states and gradients (float64) equal the plain loop of the cited
    equations, fed the generated model's own parameters by their state-dict names."""
    layers, bidirectional, batch_first, batched, with_hx = config
    dtype = torch.float64
    ref = REFERENCES[cell]
    model = single_block_model(cell, layers, bidirectional, batch_first, backend, device, dtype)
    _randomise(model)
    rows = layers * (2 if bidirectional else 1)
    x1 = torch.randn(input_shape(batched, batch_first), device=device, dtype=dtype,
                     requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    h0 = random_states(ref, rows, batched, device, dtype) if with_hx else None
    hx = h0 if len(ref.states) > 1 or h0 is None else h0[0]
    out, state = model(x1, hx)
    assert isinstance(state, tuple) == (len(ref.states) > 1)
    own = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    params = params_by_layer_dir(own, prefix="rec.")
    assert len(params) == layers and len(params[0]) == rows // layers
    start = h0 if with_hx else zero_states(ref, rows, batched, device, dtype)
    want_out, want_state = run_reference(ref.step, params, x2, start, batch_first=batch_first)
    assert_close(out, want_out, dtype)
    for got, want in zip(as_tuple(state), want_state, strict=True):
        assert_close(got, want, dtype)
    for net_out, net_state in ((out, as_tuple(state)), (want_out, want_state)):
        (net_out.square().sum() + sum(s.square().sum() for s in net_state)).backward()
    assert_close(x1.grad, x2.grad, dtype)
    for key, p in model.named_parameters():
        assert_close(p.grad, own[key].grad, dtype)


@needs_user_cells
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", OTHER_CELLS)
def test_library_cells_equal_their_reference_float32(device, cell, backend):
    layers, bidirectional, batch_first = 2, True, False
    dtype = torch.float32
    ref = REFERENCES[cell]
    model = single_block_model(cell, layers, bidirectional, batch_first, backend, device, dtype)
    _randomise(model, generator_seed=1)
    x = torch.randn(input_shape(True, batch_first), device=device, dtype=dtype)
    h0 = random_states(ref, 2 * layers, True, device, dtype)
    with torch.no_grad():
        out, state = model(x, h0 if len(ref.states) > 1 else h0[0])
        params = params_by_layer_dir(dict(model.named_parameters()), prefix="rec.")
        want_out, want_state = run_reference(ref.step, params, x, h0)
    assert_close(out, want_out, dtype)
    for got, want in zip(as_tuple(state), want_state, strict=True):
        assert_close(got, want, dtype)


@needs_user_cells
@pytest.mark.parametrize("backend", BACKENDS)
def test_library_stacks_run(backend):
    """The library file itself generates under both backends and its stacks run."""
    text = LIBRARY.read_text(encoding="utf-8")
    result = check_clean(text, str(LIBRARY))
    from rnnspec.backends.torch.codegen import generate_source, load_source

    module = load_source(generate_source(result, backend=backend), str(LIBRARY))
    model = module.GruVariants()
    out, states = model(torch.randn(7, 10))
    assert out.shape == (7, 40)
    assert [s.shape for s in states] == [(3, 20), (4, 20)]
    model = module.Scalar()
    out, (h, c, n, m) = model(torch.randn(4, 2, 16))
    assert out.shape == (4, 2, 32) and h.shape == c.shape == n.shape == m.shape == (2, 2, 32)
    assert torch.isfinite(out).all()


# ----------------------------------------------------------------------------- oracle checks
# The reference steps of the cells PyTorch lacks are checked where an identity ties them to
# PyTorch or to a second formulation; these run today.


def _step_run(step, p, states, steps=6, features=INPUT, dtype=torch.float64):
    gen = torch.Generator().manual_seed(3)
    xs = torch.randn(steps, B, features, generator=gen, dtype=dtype)
    outs = []
    for t in range(steps):
        states = step(p, xs[t], states)
        outs.append(states[0])
    return torch.stack(outs), states, xs


def _rand(*shape, gen):
    return torch.rand(*shape, generator=gen, dtype=torch.float64) * 1.6 - 0.8


def test_oracle_peephole_without_peepholes_is_lstm():
    from cell_references import lstm_step, peephole_step

    gen = torch.Generator().manual_seed(0)
    p = {"weight_ih": _rand(16, INPUT, gen=gen), "weight_hh": _rand(16, 4, gen=gen),
         "bias_ih": _rand(16, gen=gen), "bias_hh": _rand(16, gen=gen)}
    zeros = {f"peep_{g}": torch.zeros(4, dtype=torch.float64) for g in "ifo"}
    start = (_rand(B, 4, gen=gen), _rand(B, 4, gen=gen))
    a, sa, _ = _step_run(peephole_step, {**p, **zeros}, start)
    b, sb, _ = _step_run(lstm_step, p, start)
    assert_close(a, b, torch.float64)
    ones = {f"peep_{g}": torch.ones(4, dtype=torch.float64) for g in "ifo"}
    c, _, _ = _step_run(peephole_step, {**p, **ones}, start)
    assert not torch.allclose(a, c), "the peepholes are read"


def test_oracle_indrnn_is_rnn_with_a_diagonal_recurrence():
    from cell_references import indrnn_step

    gen = torch.Generator().manual_seed(1)
    m = torch.nn.RNN(INPUT, 4, nonlinearity="relu", dtype=torch.float64)
    u, b = _rand(4, gen=gen), _rand(4, gen=gen)
    with torch.no_grad():
        m.weight_hh_l0.copy_(torch.diag(u))
        m.bias_ih_l0.copy_(b)
        m.bias_hh_l0.zero_()
    p = {"weight_ih": m.weight_ih_l0.detach(), "recurrent_scale": u, "bias": b}
    h0 = _rand(B, 4, gen=gen)
    out, (h,), xs = _step_run(indrnn_step, p, (h0,))
    want, want_h = m(xs, h0.unsqueeze(0))
    assert_close(out, want.detach(), torch.float64)
    assert_close(h, want_h[0].detach(), torch.float64)


def test_oracle_slstm_stabiliser_changes_nothing_but_m():
    """Without the stabiliser (plain exp gates), h is the same: c and n scale alike."""
    from cell_references import slstm_step

    gen = torch.Generator().manual_seed(2)
    p = {"weight_ih": _rand(16, INPUT, gen=gen), "weight_hh": _rand(16, 4, gen=gen),
         "bias": _rand(16, gen=gen)}

    def unstabilised(p, x, states):
        h, c, n = states
        pre = x @ p["weight_ih"].T + p["bias"] + h @ p["weight_hh"].T
        i_raw, f_raw, z_raw, o_raw = pre.chunk(4, -1)
        i, f = torch.exp(i_raw), torch.sigmoid(f_raw)
        c = f * c + i * torch.tanh(z_raw)
        n = f * n + i
        return torch.sigmoid(o_raw) * c / n, c, n

    zero = torch.zeros(B, 4, dtype=torch.float64)
    a, (h, c, n, m), _ = _step_run(slstm_step, p, (zero, zero, zero, zero))
    b, (h2, c2, n2), _ = _step_run(unstabilised, p, (zero, zero, zero))
    assert_close(a, b, torch.float64)
    assert_close(c * torch.exp(m), c2, torch.float64)
    assert_close(n * torch.exp(m), n2, torch.float64)


def test_oracle_min_lstm_gates_sum_to_one():
    """minLSTM's normalised gates: a constant candidate is a fixed point."""
    from cell_references import min_lstm_step

    gen = torch.Generator().manual_seed(4)
    p = {"weight_f": _rand(4, INPUT, gen=gen), "weight_i": _rand(4, INPUT, gen=gen),
         "weight_h": torch.zeros(4, INPUT, dtype=torch.float64)}
    out, _, _ = _step_run(min_lstm_step, p, (torch.zeros(B, 4, dtype=torch.float64),))
    assert_close(out, torch.zeros_like(out), torch.float64)
    start = torch.full((B, 4), 0.7, dtype=torch.float64)
    out, _, _ = _step_run(min_lstm_step, p, (start,))
    assert (out.abs() < 0.7).all() and (out.abs() > 0).all()


def test_oracle_original_gru_differs_from_torch_gru_only_by_the_reset_placement():
    """With the reset gate forced to one (large reset biases), both GRUs agree."""
    from cell_references import gru_step, original_gru_step

    gen = torch.Generator().manual_seed(5)
    w_ih, w_hh = _rand(12, INPUT, gen=gen), _rand(12, 4, gen=gen)
    b_ih, b_hh = _rand(12, gen=gen), _rand(12, gen=gen)
    torch_p = {"weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh}
    orig_p = {"weight_ih": w_ih, "bias_ih": b_ih, "weight_hh_rz": w_hh[:8], "bias_hh_rz": b_hh[:8],
              "weight_hh_n": w_hh[8:], "bias_hh_n": b_hh[8:]}
    start = (_rand(B, 4, gen=gen),)
    a, _, _ = _step_run(gru_step, torch_p, start)
    b, _, _ = _step_run(original_gru_step, orig_p, start)
    assert not torch.allclose(a, b)
    for params in (torch_p, orig_p):
        params["bias_ih"] = torch.cat([torch.full((4,), 60.0, dtype=torch.float64), b_ih[4:]])
    a, _, _ = _step_run(gru_step, torch_p, start)
    b, _, _ = _step_run(original_gru_step, orig_p, start)
    assert_close(a, b, torch.float64)


def test_oracle_layer_norm_lstms_differ_in_what_they_carry():
    """custom_lstms carries the normalised c, haste the raw one: with neutral gains the
    two give the same first step and part ways from the second."""
    from cell_references import custom_lstms_layer_norm_step, haste_layer_norm_step

    gen = torch.Generator().manual_seed(6)
    w_ih, w_hh = _rand(16, INPUT, gen=gen), _rand(16, 4, gen=gen)
    ones16, zeros16 = torch.ones(16, dtype=torch.float64), torch.zeros(16, dtype=torch.float64)
    ones4, zeros4 = torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    custom = {"weight_ih": w_ih, "weight_hh": w_hh, "layernorm_i_weight": ones16,
              "layernorm_i_bias": zeros16, "layernorm_h_weight": ones16,
              "layernorm_h_bias": zeros16, "layernorm_c_weight": ones4, "layernorm_c_bias": zeros4}
    # haste's gate order is i, g, f, o: permute the rows of custom's i, f, g, o.
    order = torch.cat([torch.arange(0, 4), torch.arange(8, 12), torch.arange(4, 8),
                       torch.arange(12, 16)])
    haste = {"kernel": w_ih[order], "recurrent_kernel": w_hh[order], "gamma_x": ones16,
             "gamma_r": ones16, "bias_i": zeros4, "bias_g": zeros4, "bias_f": zeros4,
             "bias_o": zeros4, "gamma_h": ones4, "beta_h": zeros4}
    start = (torch.zeros(B, 4, dtype=torch.float64), torch.zeros(B, 4, dtype=torch.float64))
    a, (_, c_custom), _ = _step_run(custom_lstms_layer_norm_step, custom, start, steps=1)
    b, (_, c_haste), _ = _step_run(haste_layer_norm_step, haste, start, steps=1)
    assert_close(a, b, torch.float64)
    assert_close(c_custom, torch.nn.functional.layer_norm(c_haste, (4,)), torch.float64)
    a, _, _ = _step_run(custom_lstms_layer_norm_step, custom, start, steps=3)
    b, _, _ = _step_run(haste_layer_norm_step, haste, start, steps=3)
    assert not torch.allclose(a, b)


# ----------------------------------------------------------------------------- the text
# The library's own equations, read by a small evaluator (user_cells.CellText), equal the
# reference steps written from the papers: the .rnn text is right before rnnspec runs it.


@pytest.mark.parametrize("cell", list(REFERENCES))
def test_library_text_equals_the_cited_equations(cell):
    from user_cells import CellText

    text = CellText(library()[cell])
    ref = REFERENCES[cell]
    assert [n for n, _ in text.states] == list(ref.states)
    assigned = text.assigned()
    assert len(assigned) == len(set(assigned)), "a name is assigned at most once per step"
    assert {n for n, _ in text.states} <= set(assigned), "every state is assigned"
    hidden, features = 4, 6
    names = {"hidden_size": hidden, "input_size": features, **ref.arguments}
    state_sizes, shapes = text.sizes(names)
    assert tuple(state_sizes.values()) == ref.state_sizes(hidden)
    gen = torch.Generator().manual_seed(11)
    p = {n: _rand(*shape, gen=gen) for n, shape in shapes.items()}
    start = tuple(ref.initial_state(n, (B, size), torch.empty(0, dtype=torch.float64))
                  for n, size in state_sizes.items())
    got, got_states, _ = _step_run(text.step(), p, start, features=features)
    want, want_states, _ = _step_run(ref.step, p, start, features=features)
    assert_close(got, want, torch.float64)
    for a, b in zip(got_states, want_states, strict=True):
        assert_close(a, b, torch.float64)
    read = " ".join(text.statements)
    unread = [n for n in shapes if not re.search(rf"\b{n}\b", read)]
    assert unread == [], "every parameter is read"
