"""Section 11, `reverse = true`: a block's one direction run backwards, against PyTorch.
One layer: the reverse direction of `nn.LSTM(bidirectional=True)` (its `_reverse` weights
copied into the forward names), packed for a padded batch. Three layers: each sequence
flipped within its length, run through `nn.LSTM` forward, flipped back, one at a time.
Both torch backends, a stack with layers, on cpu and on cuda where there is one."""

from __future__ import annotations

import warnings

import pytest

from rnnspec import check_source
from rnnspec.backends.torch.codegen import generate_source, load_source

torch = pytest.importorskip("torch")
nn = torch.nn
pack = nn.utils.rnn.pack_padded_sequence
unpack = nn.utils.rnn.pad_packed_sequence

BACKENDS = ["fused", "explicit"]


def load(text: str, backend: str):
    result = check_source(text, "reverse.rnn")
    assert result.ok, result.diagnostics
    return load_source(generate_source(result, backend=backend), "reverse.rnn")


def build(text: str, name: str, backend: str, device: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(load(text, backend), name)(device=device).eval()


def forward_names(state: dict) -> dict:
    """A bidirectional module's `_reverse` parameters under the forward names."""
    return {key.removesuffix("_reverse"): value for key, value in state.items()
            if key.endswith("_reverse")}


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_one_layer_is_pytorchs_reverse_direction(backend, batch_first, padded, device):
    text = (f"stack Back {{\n    input_size = 5\n    batch_first = {str(batch_first).lower()}\n"
            "    lstm(hidden_size = 7, reverse = true)\n}\n")
    model = build(text, "Back", backend, device)
    torch.manual_seed(1)
    reference = nn.LSTM(5, 7, bidirectional=True, batch_first=batch_first, device=device)
    model.load_state_dict({f"lstm0.{k}": v for k, v in
                           forward_names(reference.state_dict()).items()})
    assert [name for name, _ in model.named_parameters()] == \
        ["lstm0.weight_ih_l0", "lstm0.weight_hh_l0", "lstm0.bias_ih_l0", "lstm0.bias_hh_l0"]
    x = torch.randn(*((4, 6) if batch_first else (6, 4)), 5, device=device)
    h0 = torch.randn(1, 4, 7, device=device)
    c0 = torch.randn(1, 4, 7, device=device)
    both = (torch.cat([torch.zeros_like(h0), h0]), torch.cat([torch.zeros_like(c0), c0]))
    lengths = torch.tensor([6, 2, 1, 5]) if padded else None
    with torch.no_grad():
        out, (h, c) = model(x, (h0, c0), lengths)
        if padded:
            packed, (rh, rc) = reference(pack(x, lengths, batch_first=batch_first,
                                              enforce_sorted=False), both)
            expected, _ = unpack(packed, batch_first=batch_first, total_length=6)
        else:
            expected, (rh, rc) = reference(x, both)
    close(out, expected[..., 7:])
    close(h, rh[1:])
    close(c, rc[1:])


def flipped_reference(reference, x, hx, lengths):
    """Each sequence alone: flipped within its length, run forward, flipped back."""
    steps, batch, _ = x.shape
    outputs = torch.zeros(steps, batch, reference.hidden_size, device=x.device)
    finals = []
    for b in range(batch):
        n = steps if lengths is None else int(lengths[b])
        state = tuple(s[:, b:b + 1] for s in hx)
        output, final = reference(x[:n, b:b + 1].flip(0), state)
        outputs[:n, b] = output.flip(0)[:, 0]
        finals.append(final)
    return outputs, tuple(torch.cat(parts, 1) for parts in zip(*finals))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padded", [False, True])
def test_three_layers_run_each_layer_reversed(backend, padded, device):
    text = ("stack Back {\n    input_size = 5\n"
            "    enc = lstm(hidden_size = 6, num_layers = 3, reverse = true)\n}\n")
    model = build(text, "Back", backend, device)
    torch.manual_seed(2)
    reference = nn.LSTM(5, 6, num_layers=3, device=device)
    model.load_state_dict({f"enc.{k}": v for k, v in reference.state_dict().items()})
    x = torch.randn(7, 3, 5, device=device)
    hx = (torch.randn(3, 3, 6, device=device), torch.randn(3, 3, 6, device=device))
    lengths = torch.tensor([3, 7, 1]) if padded else None
    with torch.no_grad():
        out, (h, c) = model(x, hx, lengths)
        expected, (rh, rc) = flipped_reference(reference, x, hx, lengths)
    close(out, expected)
    close(h, rh)
    close(c, rc)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reverse_in_a_stack_with_layers_and_blocks(backend, device):
    """A reverse GRU after a linear layer and before a forward block (the network class
    and the several-block stack)."""
    text = ("stack Net {\n    input_size = 4\n    proj = linear(6)\n"
            "    back = gru(hidden_size = 5, reverse = true)\n}\n"
            "stack Two {\n    input_size = 4\n    back = gru(hidden_size = 5, reverse = true)\n"
            "    ahead = rnn(hidden_size = 3)\n}\n")
    torch.manual_seed(3)
    gru = nn.GRU(6, 5, bidirectional=True, device=device)
    x = torch.randn(5, 2, 4, device=device)
    lengths = torch.tensor([5, 3])
    net = build(text, "Net", backend, device)
    net.back.load_state_dict(forward_names(gru.state_dict()), strict=False)
    with torch.no_grad():
        out, h = net(x, None, lengths)
        packed, rh = gru(pack(net.proj(x), lengths, enforce_sorted=False))
        expected, _ = unpack(packed, total_length=5)
    close(out, expected[..., 5:])
    close(h, rh[1:])

    two = build(text, "Two", backend, device)
    gru4 = nn.GRU(4, 5, bidirectional=True, device=device)
    rnn = nn.RNN(5, 3, device=device)
    two.load_state_dict({**{f"back.{k}": v for k, v in forward_names(gru4.state_dict()).items()},
                         **{f"ahead.{k}": v for k, v in rnn.state_dict().items()}})
    with torch.no_grad():
        out, (h_back, h_ahead) = two(x, None, lengths)
        packed, rh = gru4(pack(x, lengths, enforce_sorted=False))
        middle, _ = unpack(packed, total_length=5)
        packed, rh2 = rnn(pack(middle[..., 5:], lengths, enforce_sorted=False))
        expected, _ = unpack(packed, total_length=5)
    close(out, expected)
    close(h_back, rh[1:])
    close(h_ahead, rh2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_reverse_block_has_no_step(backend):
    """A reverse block starts at the end of the sequence, which a step does not have."""
    text = ("stack S {\n    input_size = 3\n    back = gru(hidden_size = 4, reverse = true)\n}\n"
            "stack N {\n    input_size = 3\n    fc = linear(3)\n"
            "    back = gru(hidden_size = 4, reverse = true)\n}\n")
    for name in ("S", "N"):
        model = build(text, name, backend, "cpu")
        with pytest.raises(TypeError, match="`back` runs in reverse"):
            model.step(torch.randn(2, 3))


def test_fused_reverse_takes_a_packed_sequence():
    text = "stack S {\n    input_size = 3\n    lstm(hidden_size = 4, reverse = true)\n}\n"
    model = build(text, "S", "fused", "cpu")
    x = torch.randn(5, 3, 3)
    lengths = torch.tensor([2, 5, 4])
    with torch.no_grad():
        padded, (h, c) = model(x, lengths=lengths)
        packed, (ph, pc) = model(pack(x, lengths, enforce_sorted=False))
    close(unpack(packed, total_length=5)[0], padded)
    close(ph, h)
    close(pc, c)


def test_reverse_with_bidirectional_is_e092():
    text = ("stack S {\n    input_size = 3\n"
            "    lstm(hidden_size = 4, bidirectional = true, reverse = true)\n}\n")
    result = check_source(text, "e092.rnn")
    [problem] = result.diagnostics
    assert (problem.code, problem.span.line, problem.span.column) == ("E092", 3, 49)
    assert problem.notes[0].span.column == 27


@pytest.mark.parametrize("scan", [False, True])
@pytest.mark.parametrize("lengths", [False, True])
def test_export_of_a_reverse_stack_equals_the_module(scan, lengths):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import numpy as np

    from rnnspec.backends.onnx import export as onnx_export

    text = ("stack Back {\n    input_size = 5\n"
            "    enc = lstm(hidden_size = 6, num_layers = 3, reverse = true)\n"
            "    out = rnn(hidden_size = 2, reverse = true)\n}\n")
    model = build(text, "Back", "fused", "cpu")
    stack = check_source(text, "reverse.rnn").stacks[0]
    weights = onnx_export.match_weights(stack, model.state_dict(), "the module")
    exported = onnx_export.build_model(stack, weights, lengths=lengths, scan_everything=scan)
    onnx_export.validate(exported)
    ops = {node.op_type for node in exported.graph.node}
    assert ("Scan" in ops) == scan
    if not scan:
        directions = {a.s for n in exported.graph.node if n.op_type in ("LSTM", "RNN")
                      for a in n.attribute if a.name == "direction"}
        assert directions == {b"reverse"}
    session = ort.InferenceSession(exported.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = torch.randn(7, 3, 5)
    sizes = torch.tensor([7, 2, 5])
    feeds = {"input": x.numpy(), **({"lengths": sizes.numpy()} if lengths else {})}
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    with torch.no_grad():
        out, ((h, c), h_out) = model(x, None, sizes if lengths else None)
    for name, value in (("output", out), ("h_n.enc", h), ("c_n.enc", c), ("h_n.out", h_out)):
        np.testing.assert_allclose(got[name], value.numpy(), atol=1e-5, rtol=0, err_msg=name)
