"""Section 9 in generated code: padded batches (`lengths`), merged directions, residual
blocks, the recurrent regularisers and `step`, against PyTorch wherever it has the answer:
its packed path for padded batches, a plain composition of torch modules for merge and
residual, plain loops over `nn.*Cell` for the regularisers, each sequence run alone.
Every differential test runs on cpu, and on cuda where there is one."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import stack_specs
from test_generated_vs_torch import assert_close, build, random_state

from rnnspec import check_source
from rnnspec.backends.torch.codegen import generate_source, load_source

torch = pytest.importorskip("torch")
nn = torch.nn
pack = nn.utils.rnn.pack_padded_sequence
unpack = nn.utils.rnn.pad_packed_sequence

BACKENDS = ["fused", "explicit"]
HYPOTHESIS = settings(max_examples=25, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow,
                                             HealthCheck.function_scoped_fixture])


def flatten(states):
    """Every tensor of a nest of state tuples and lists, in order."""
    if isinstance(states, tuple | list):
        for state in states:
            yield from flatten(state)
    else:
        yield states


def load(text: str, backend: str):
    result = check_source(text, "section9.rnn")
    assert result.ok, result.diagnostics
    return load_source(generate_source(result, backend=backend), "section9.rnn")


def packed_chain(chain, x, hx, lengths, batch_first):
    """The torch modules on a padded batch, as a PyTorch user writes it by hand."""
    steps = x.shape[1 if batch_first else 0]
    states = []
    for module, h in zip(chain, hx):
        packed = pack(x, lengths, batch_first=batch_first, enforce_sorted=False)
        output, state = module(packed, h)
        x, _ = unpack(output, batch_first=batch_first, total_length=steps)
        states.append(state)
    return x, states


def padded_batch(data, spec, device, *, batch_min=1):
    batch = data.draw(st.integers(batch_min, 5), label="B")
    steps = data.draw(st.integers(1, 6), label="T")
    lengths = data.draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch),
                        label="lengths")
    shape = (batch, steps, spec.input_size) if spec.batch_first else (steps, batch, spec.input_size)
    return torch.randn(*shape, device=device), lengths, batch, steps


def as_given(lengths, form: str, device):
    """The lengths as a list, a CPU tensor, or a tensor on the model's device."""
    if form == "list":
        return list(lengths)
    return torch.tensor(lengths, device="cpu" if form == "cpu" else device)


# ----------------------------------------------------------------------------- padded batches


@pytest.mark.parametrize("backend", BACKENDS)
@given(spec=stack_specs(), data=st.data())
@HYPOTHESIS
def test_padded_batch_equals_the_packed_path(backend, device, spec, data):
    generated, chain = build(spec, backend, device, torch.float32)
    x, lengths, batch, _ = padded_batch(data, spec, device)
    hx = random_state(spec, batch, device, torch.float32) if data.draw(st.booleans()) else \
        [None] * len(spec.blocks)
    form = data.draw(st.sampled_from(["list", "cpu", "device"]), label="form")
    expected, expected_states = packed_chain(chain, x, hx, torch.tensor(lengths),
                                             spec.batch_first)
    given_hx = hx[0] if len(spec.blocks) == 1 else tuple(hx)
    output, states = generated(x, given_hx, lengths=as_given(lengths, form, device))
    states = [states] if len(spec.blocks) == 1 else list(states)
    assert_close(output, expected, torch.float32)
    for got, want in zip(flatten(states), flatten(expected_states)):
        assert_close(got, want, torch.float32)


def _sequence(x, index, length, batch_first):
    return x[index, :length] if batch_first else x[:length, index]


@pytest.mark.parametrize("backend", BACKENDS)
@given(spec=stack_specs(), data=st.data())
@HYPOTHESIS
def test_each_sequence_as_if_alone(backend, device, spec, data):
    """Section 9 in one sentence: each sequence's outputs and final states equal those of
    the same stack run on that sequence alone, cut to its length; padding gives zeros."""
    generated, _ = build(spec, backend, device, torch.float32)
    x, lengths, batch, _ = padded_batch(data, spec, device)
    output, states = generated(x, lengths=lengths)
    for index, length in enumerate(lengths):
        alone, alone_states = generated(_sequence(x, index, length, spec.batch_first))
        assert_close(_sequence(output, index, length, spec.batch_first), alone, torch.float32)
        padding = output[index, length:] if spec.batch_first else output[length:, index]
        assert bool((padding == 0).all())
        for got, want in zip(flatten([states]), flatten([alone_states])):
            assert_close(got.select(-2, index), want, torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_through_a_padded_batch_equal_the_packed_path(backend, device):
    text = """stack Net {
        input_size = 3
        enc = lstm(hidden_size = 5, num_layers = 2, bidirectional = true, proj_size = 2)
        dec = gru(hidden_size = 4)
    }"""
    module = load(text, backend)
    generated = module.Net(device=device)
    chain = [nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, device=device),
             nn.GRU(4, 4, device=device)]
    generated.load_state_dict({**{f"enc.{k}": v for k, v in chain[0].state_dict().items()},
                               **{f"dec.{k}": v for k, v in chain[1].state_dict().items()}})
    lengths = [4, 1, 6, 3]
    x = torch.randn(6, 4, 3, device=device, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    output, (state, h_n) = generated(x, lengths=lengths)
    (output.sum() + state[0].sum() + state[1].sum() + h_n.sum()).backward()
    expected, (ref_state, ref_h) = packed_chain(chain, x_ref, [None, None],
                                                torch.tensor(lengths), False)
    (expected.sum() + ref_state[0].sum() + ref_state[1].sum() + ref_h.sum()).backward()
    assert_close(x.grad, x_ref.grad, torch.float32)
    ours = dict(generated.named_parameters())
    for prefix, reference in zip(("enc", "dec"), chain):
        for name, parameter in reference.named_parameters():
            assert_close(ours[f"{prefix}.{name}"].grad, parameter.grad, torch.float32)


def test_packed_sequence_input_on_a_one_block_fused_stack():
    module = load("stack Net {\n input_size = 3\n lstm(hidden_size = 4, num_layers = 2)\n}\n",
                  "fused")
    generated = module.Net().eval()
    reference = nn.LSTM(3, 4, num_layers=2)
    generated.load_state_dict({f"lstm0.{k}": v for k, v in reference.state_dict().items()})
    packed = pack(torch.randn(5, 3, 3), [5, 2, 4], enforce_sorted=False)
    output, (h_n, c_n) = generated(packed)
    expected, (ref_h, ref_c) = reference(packed)
    assert isinstance(output, nn.utils.rnn.PackedSequence)
    assert_close(output.data, expected.data, torch.float32)
    assert_close(h_n, ref_h, torch.float32)
    with pytest.raises(ValueError, match="Net: a PackedSequence carries its own lengths"):
        generated(packed, lengths=[5, 2, 4])


# ----------------------------------------------------------------------------- bad lengths

BAD_LENGTHS = {
    "wrong count": ([3, 2], "must hold 3 values"),
    "above T": ([3, 5, 1], r"in 0\.\.4 \(T\), got 5"),
    "negative": (torch.tensor([3, -1, 1]), r"in 0\.\.4 \(T\), got -1"),
    "float tensor": (torch.tensor([3.0, 2.0, 1.0]), "must be integers"),
    "floats in a list": ([3.0, 2.0, 1.0], "must be integers"),
    "bool tensor": (torch.tensor([True, True, True]), "must be integers"),
    "2-D": (torch.ones(3, 1, dtype=torch.long), "must hold 3 values"),
    "not numbers": (["a", "b", "c"], "1-D integer tensor or a list of ints"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(BAD_LENGTHS))
def test_bad_lengths_raise_a_value_error_naming_the_stack(backend, case):
    lengths, message = BAD_LENGTHS[case]
    text = "stack Net {\n input_size = 2\n gru(hidden_size = 3)\n lstm(hidden_size = 2)\n}\n"
    module = load(text, backend)
    with pytest.raises(ValueError, match="^Net: .*" + message):
        module.Net()(torch.randn(4, 3, 2), lengths=lengths)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lengths_with_unbatched_input_raise(backend):
    module = load("stack Net {\n input_size = 2\n gru(hidden_size = 3)\n}\n", backend)
    with pytest.raises(ValueError, match="^Net: lengths are for a padded batch"):
        module.Net()(torch.randn(4, 2), lengths=[4])


# ----------------------------------------------------------------------------- merge, residual

MERGES = {"sum": lambda a, b: a + b, "mean": lambda a, b: (a + b) / 2, "mul": lambda a, b: a * b}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("merge", sorted(MERGES))
@pytest.mark.parametrize("padded", [False, True])
def test_merge_and_residual_against_torch_modules(backend, merge, padded, device):
    text = f"""stack Net {{
        input_size = 4
        batch_first = true
        bi = gru(hidden_size = 4, bidirectional = true, num_layers = 2, merge = {merge},
                 residual = true)
        top = lstm(hidden_size = 4, residual = true)
        out = rnn(hidden_size = 3, bidirectional = true, merge = {merge})
    }}"""
    generated = load(text, backend).Net(device=device).eval()
    bi = nn.GRU(4, 4, num_layers=2, bidirectional=True, batch_first=True, device=device)
    top = nn.LSTM(4, 4, batch_first=True, device=device)
    out = nn.RNN(4, 3, bidirectional=True, batch_first=True, device=device)
    state = {f"{prefix}.{k}": v for prefix, m in (("bi", bi), ("top", top), ("out", out))
             for k, v in m.state_dict().items()}
    generated.load_state_dict(state)
    x = torch.randn(3, 5, 4, device=device)
    lengths = [5, 2, 4] if padded else None

    def run(module, inputs):
        if lengths is None:
            return module(inputs)
        output, states = module(pack(inputs, torch.tensor(lengths), batch_first=True,
                                     enforce_sorted=False))
        return unpack(output, batch_first=True, total_length=5)[0], states

    combine = MERGES[merge]
    y, h_bi = run(bi, x)
    y = combine(*y.chunk(2, -1)) + x
    if lengths is not None:  # residual adds the input where the step is valid only
        ends = torch.tensor(lengths, device=device)
        valid = torch.arange(5, device=device)[None, :] < ends[:, None]
        y = y * valid[..., None]
    z, h_top = run(top, y)
    z = z + y
    w, h_out = run(out, z)
    w = combine(*w.chunk(2, -1))
    output, (s_bi, s_top, s_out) = generated(x, lengths=lengths)
    assert_close(output, w, torch.float32)
    for got, want in zip(flatten([s_bi, s_top, s_out]), flatten([h_bi, h_top, h_out])):
        assert_close(got, want, torch.float32)


def test_merge_changes_the_checked_output_size():
    result = check_source("""stack Net {
        input_size = 4
        bi = gru(hidden_size = 6, bidirectional = true, merge = mean)
        lstm(hidden_size = 2)
    }""", "merge.rnn")
    assert result.ok
    first, second = result.stacks[0].blocks
    assert first.output_size == 6 and second.input_size == 6
    assert first.parameters[-1].shape == (18,)  # the layers' own sizes are PyTorch's


# ----------------------------------------------------------------------------- regularisers


def _cell_loop(cell, x, h, zone=None, keep=None, p=0.0, c=None):
    """A plain loop over an nn.*Cell with zoneout on h (mask or evaluation form) and
    recurrent dropout on the h the step reads."""
    outputs = []
    for t in range(x.shape[0]):
        read = h if keep is None else h * keep
        if c is None:
            new = cell(x[t], read)
        else:
            new, c = cell(x[t], (read, c))
        if zone is not None:
            new = h + zone[t] * (new - h)
        elif p:
            new = p * h + (1 - p) * new
        h = new
        outputs.append(h)
    return torch.stack(outputs), h, c


def _single(cell: str, argument: str, p: float, backend: str, device: str):
    text = f"stack Net {{\n input_size = 3\n {cell}(hidden_size = 4, {argument} = {p})\n}}\n"
    generated = load(text, backend).Net(device=device)
    cls = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[cell]
    reference = cls(3, 4, device=device)
    generated.load_state_dict({f"{cell}0.{k}_l0": v for k, v in reference.state_dict().items()})
    return generated, reference


def _initial(cell: str, device):
    h = torch.zeros(2, 4, device=device)
    return h, (torch.zeros(2, 4, device=device) if cell == "lstm" else None)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_zoneout_in_evaluation_against_a_plain_loop(backend, cell, device):
    generated, reference = _single(cell, "zoneout", 0.3, backend, device)
    generated.eval()
    x = torch.randn(6, 2, 3, device=device)
    output, _ = generated(x)
    h, c = _initial(cell, device)
    expected, _, _ = _cell_loop(reference, x, h, p=0.3, c=c)
    torch.testing.assert_close(output, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_zoneout_in_training_with_the_mask_drawn_the_same_way(backend, cell, device):
    generated, reference = _single(cell, "zoneout", 0.4, backend, device)
    generated.train()
    x = torch.randn(6, 2, 3, device=device)
    torch.manual_seed(7)
    output, states = generated(x)
    torch.manual_seed(7)
    zone = torch.bernoulli(torch.full((6, 2, 4), 0.6, device=device))
    h, c = _initial(cell, device)
    expected, h_n, _ = _cell_loop(reference, x, h, zone=zone, c=c)
    torch.testing.assert_close(output, expected, rtol=1e-6, atol=1e-6)
    final = states[0] if cell == "lstm" else states
    torch.testing.assert_close(final[0], h_n, rtol=1e-6, atol=1e-6)
    assert 0 < int((zone == 0).sum()) < zone.numel()  # the test exercises both branches


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_recurrent_dropout_one_mask_per_sequence_scaled_and_off_in_evaluation(
        backend, cell, device):
    p = 0.5
    generated, reference = _single(cell, "recurrent_dropout", p, backend, device)
    x = torch.randn(7, 2, 3, device=device)
    generated.train()
    torch.manual_seed(3)
    output, _ = generated(x)
    torch.manual_seed(3)
    keep = torch.bernoulli(torch.full((2, 4), 1 - p, device=device)) / (1 - p)
    assert set(keep.unique().tolist()) <= {0.0, 2.0}  # the scaling is 1 / (1 - p)
    h, c = _initial(cell, device)
    expected, _, _ = _cell_loop(reference, x, h, keep=keep, c=c)
    torch.testing.assert_close(output, expected, rtol=1e-6, atol=1e-6)
    generated.eval()
    h, c = _initial(cell, device)
    torch.testing.assert_close(generated(x)[0], _cell_loop(reference, x, h, c=c)[0],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_dropout_masks_only_recurrent_weights_once_per_call(backend, device):
    text = """stack Net {
        input_size = 3
        lstm(hidden_size = 4, num_layers = 2, bidirectional = true, weight_dropout = 0.5)
    }"""
    generated = load(text, backend).Net(device=device)
    reference = nn.LSTM(3, 4, num_layers=2, bidirectional=True, device=device)
    generated.load_state_dict({f"lstm0.{k}": v for k, v in reference.state_dict().items()})
    before = {k: v.clone() for k, v in generated.state_dict().items()}
    assert list(before) == [f"lstm0.{k}" for k in reference.state_dict()]
    x = torch.randn(5, 2, 3, device=device)
    generated.eval()
    assert_close(generated(x)[0], reference(x)[0], torch.float32)
    generated.train()
    torch.manual_seed(11)
    output, _ = generated(x)
    torch.manual_seed(11)
    dropped = {}
    for layer in range(2):
        for suffix in ("", "_reverse"):
            name = f"weight_hh_l{layer}{suffix}"
            dropped[name] = nn.functional.dropout(getattr(reference, name), 0.5, training=True)
    with torch.no_grad():
        for name, weight in dropped.items():
            getattr(reference, name).copy_(weight)
    assert_close(output, reference(x)[0], torch.float32)
    for key, value in generated.state_dict().items():  # the parameters themselves stay
        assert torch.equal(value, before[key])


@pytest.mark.parametrize("argument", ["recurrent_dropout", "zoneout", "weight_dropout"])
def test_a_regularised_block_is_written_out_on_the_fused_backend(argument):
    text = f"stack Net {{\n input_size = 3\n lstm(hidden_size = 4, {argument} = 0.1)\n}}\n"
    source = generate_source(check_source(text, "r.rnn"), backend="fused")
    assert "nn.LSTM(" not in source and "lstm0 = _LSTM(" in source
    assert "written out on every backend" in source


# ----------------------------------------------------------------------------- step


@pytest.mark.parametrize("backend", BACKENDS)
@given(spec=stack_specs(), data=st.data())
@HYPOTHESIS
def test_step_over_the_sequence_equals_forward(backend, device, spec, data):
    for block in spec.blocks:
        block.bidirectional = False
    generated, _ = build(spec, backend, device, torch.float32)
    batched = data.draw(st.booleans(), label="batched")
    steps = data.draw(st.integers(1, 5), label="T")
    batch = 3 if batched else None
    if batched:
        shape = (batch, steps, spec.input_size) if spec.batch_first else (steps, batch,
                                                                          spec.input_size)
    else:
        shape = (steps, spec.input_size)
    x = torch.randn(*shape, device=device)
    hx = random_state(spec, batch, device, torch.float32)
    states = hx[0] if len(spec.blocks) == 1 else tuple(hx)
    expected, expected_states = generated(x, states)
    time = 1 if batched and spec.batch_first else 0
    outputs = []
    for t in range(steps):
        output, states = generated.step(x.select(time, t), states)
        outputs.append(output)
    assert_close(torch.stack(outputs, time), expected, torch.float32)
    for got, want in zip(flatten([states]), flatten([expected_states])):
        assert_close(got, want, torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_of_a_bidirectional_stack_raises_a_type_error(backend):
    module = load("stack Net {\n input_size = 2\n enc = gru(hidden_size = 3, "
                  "bidirectional = true)\n}\n", backend)
    with pytest.raises(TypeError, match="block `enc` is bidirectional"):
        module.Net().step(torch.randn(4, 2))


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("where", ["cpu", "cuda"])
def test_lengths_on_either_device_with_a_cuda_model(backend, where):
    text = """stack Net {
        input_size = 3
        bi = lstm(hidden_size = 4, bidirectional = true, merge = sum, num_layers = 2)
        gru(hidden_size = 4, residual = true)
    }"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load(text, backend).Net().eval()
    x = torch.randn(5, 3, 3)
    lengths = torch.tensor([5, 1, 3])
    expected, _ = model(x, lengths=lengths)
    model.cuda()
    output, _ = model(x.cuda(), lengths=lengths.to(where))
    torch.testing.assert_close(output.cpu(), expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- export


@pytest.mark.parametrize("argument", ["merge = sum, bidirectional = true", "residual = true",
                                      "zoneout = 0.1"])
def test_export_writes_merge_residual_and_zoneout(argument, tmp_path):
    """Section 9 in ONNX (tests/test_onnx_cells.py has the rest): the exported graph with
    lengths equals the generated module's forward(input, lengths=...)."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from rnnspec.backends.onnx.export import export

    text = f"stack Net {{\n input_size = 4\n gru(hidden_size = 4, {argument})\n}}\n"
    path = tmp_path / "x.rnn"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "x.onnx"
    export(check_source(text, str(path)), str(out), seed=3, lengths=True)
    torch.manual_seed(3)
    net = load(text, "fused").Net().eval()
    x, lengths = torch.randn(5, 3, 4), torch.tensor([2, 5, 1])
    with torch.no_grad():
        expected = net(x, lengths=lengths)[0]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x.numpy(), "lengths": lengths.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_regularised_bidirectional_block_on_a_padded_batch_as_if_alone(backend, device):
    """Zoneout's evaluation form, with lengths, in both directions: each sequence alone."""
    text = """stack Net {
        input_size = 3
        lstm(hidden_size = 4, num_layers = 2, bidirectional = true, zoneout = 0.3,
             recurrent_dropout = 0.2, weight_dropout = 0.1)
    }"""
    generated = load(text, backend).Net(device=device).eval()
    x = torch.randn(6, 4, 3, device=device)
    lengths = [2, 6, 1, 4]
    output, (h_n, c_n) = generated(x, lengths=lengths)
    for index, length in enumerate(lengths):
        alone, (h, c) = generated(x[:length, index])
        assert_close(output[:length, index], alone, torch.float32)
        assert bool((output[length:, index] == 0).all())
        assert_close(h_n[:, index], h, torch.float32)
        assert_close(c_n[:, index], c, torch.float32)


# ----------------------------------------------------------------------------- user cells

CELLS = Path(__file__).resolve().parent.parent / "examples" / "cells.rnn"


def _cell_stacks(backend: str):
    import rnnspec

    module = rnnspec.load(str(CELLS), backend=backend)
    result = check_source(CELLS.read_text(encoding="utf-8"), str(CELLS))
    return [(stack, getattr(module, stack.name)) for stack in result.stacks]


@pytest.mark.skipif(not CELLS.exists(), reason="examples/cells.rnn is missing")
@pytest.mark.parametrize("backend", BACKENDS)
def test_user_cells_on_a_padded_batch_as_if_alone_and_step_by_step(backend):
    """The oracle for cells with no torch module: each sequence alone; step equals forward.
    Every stack of the cell library, with each of its blocks' regularisers off."""
    torch.manual_seed(0)
    stacks = _cell_stacks(backend)
    assert any(block.spec.step is not None for stack, _ in stacks for block in stack.blocks)
    for stack, cls in stacks:
        model = cls().eval()
        with torch.no_grad():
            for p in model.parameters():  # moderate weights: the cells stay in their range
                p.uniform_(-0.3, 0.3)
        steps, lengths = 5, [3, 5, 1]
        shape = (3, steps, stack.input_size) if stack.batch_first else (steps, 3,
                                                                        stack.input_size)
        x = torch.randn(*shape)
        output, states = model(x, lengths=lengths)
        for index, length in enumerate(lengths):
            alone, alone_states = model(_sequence(x, index, length, stack.batch_first))
            assert_close(_sequence(output, index, length, stack.batch_first), alone,
                         torch.float32)
            for got, want in zip(flatten(states), flatten(alone_states)):
                assert_close(got.select(-2, index), want, torch.float32)
        if any(block.bidirectional or block.reverse for block in stack.blocks):
            continue  # no step: a direction that starts at the end of the sequence
        expected, expected_states = model(x)
        time = 1 if stack.batch_first else 0
        state, outputs = None, []
        for t in range(steps):
            step_output, state = model.step(x.select(time, t), state)
            outputs.append(step_output)
        assert_close(torch.stack(outputs, time), expected, torch.float32)
        for got, want in zip(flatten(state), flatten(expected_states)):
            assert_close(got, want, torch.float32)


@pytest.mark.parametrize("argument", ["weight_dropout", "recurrent_dropout", "zoneout"])
def test_a_user_cell_regularised_as_the_built_in_cell_it_restates(argument):
    """A user cell with nn.LSTM's equations and a regulariser, in training, seeded: the same
    numbers as the built-in `lstm` with it (the same masks, drawn in the same order)."""
    text = f"""
    cell TorchLSTM {{
        state h[hidden_size], c[hidden_size]
        param weight_ih[4 * hidden_size, input_size]
        param weight_hh[4 * hidden_size, hidden_size]
        param bias_ih[4 * hidden_size], bias_hh[4 * hidden_size]

        gi, gf, gg, go = chunk(weight_ih @ x + bias_ih + weight_hh @ h + bias_hh, 4)
        c = sigmoid(gf) * c + sigmoid(gi) * tanh(gg)
        h = sigmoid(go) * tanh(c)
    }}
    stack Mine {{
        input_size = 3
        TorchLSTM(hidden_size = 4, num_layers = 2, bidirectional = true, {argument} = 0.4)
    }}
    stack Builtin {{
        input_size = 3
        lstm(hidden_size = 4, num_layers = 2, bidirectional = true, {argument} = 0.4)
    }}"""
    module = load(text, "fused")
    mine, builtin = module.Mine(), module.Builtin()
    mine.load_state_dict({k.replace("lstm0", "torch_lstm0"): v
                          for k, v in builtin.state_dict().items()})
    x = torch.randn(5, 2, 3)
    lengths = [5, 3]
    for training in (True, False):
        mine.train(training)
        builtin.train(training)
        torch.manual_seed(5)
        ours, (h, c) = mine(x, lengths=lengths)
        torch.manual_seed(5)
        theirs, (h_ref, c_ref) = builtin(x, lengths=lengths)
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(h, h_ref, rtol=1e-6, atol=1e-6)


def test_weight_dropout_on_a_user_cell_without_recurrent_matrices_changes_nothing():
    text = """
    cell IndRNN {
        state h[hidden_size]
        param weight_ih[hidden_size, input_size]
        param recurrent_scale[hidden_size]
        param bias[hidden_size] = zeros

        h = relu(weight_ih @ x + bias + recurrent_scale * h)
    }
    stack Net {
        input_size = 3
        IndRNN(hidden_size = 4, weight_dropout = 0.5)
    }"""
    model = load(text, "explicit").Net()
    x = torch.randn(5, 2, 3)
    model.train()
    trained, _ = model(x)
    model.eval()
    torch.testing.assert_close(trained, model(x)[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_dropout_of_a_projected_lstm_masks_weight_hh_only(backend):
    """DropConnect as AWD-LSTM does it: weight_hh, never the projection weight_hr."""
    text = """stack Net {
        input_size = 3
        lstm(hidden_size = 6, proj_size = 2, weight_dropout = 0.5)
    }"""
    generated = load(text, backend).Net()
    assert generated.lstm0.recurrent_weights == ("weight_hh",)
    reference = nn.LSTM(3, 6, proj_size=2)
    generated.load_state_dict({f"lstm0.{k}": v for k, v in reference.state_dict().items()})
    x = torch.randn(5, 2, 3)
    generated.train()
    torch.manual_seed(3)
    output, _ = generated(x)
    torch.manual_seed(3)
    with torch.no_grad():
        reference.weight_hh_l0.copy_(
            nn.functional.dropout(reference.weight_hh_l0, 0.5, training=True))
    assert_close(output, reference(x)[0], torch.float32)
