"""Section 11, lengths of 0: a sequence of length 0 takes no step, so its outputs are zero
and its final states are its initial states. From zero initial states that is what
onnxruntime's own LSTM, GRU and RNN operators give (one-node models built here, with
`sequence_lens` holding zeros and the weights converted from PyTorch's layout by hand); from
other initial states the torch backends and the export agree, the finals being the initial
states. The non-empty sequences of a batch equal PyTorch's packed path."""

from __future__ import annotations

import pytest
from user_cells import built

torch = pytest.importorskip("torch")
nn = torch.nn
BACKENDS = ["fused", "explicit"]
# ONNX's gate blocks in PyTorch's order: LSTM i, o, f, c from i, f, g, o; GRU z, r, h
# from r, z, n; RNN its one block
ONNX_GATES = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}
ONNX_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
LENGTHS = [5, 0, 2, 0]


def build(text: str, backend: str, device: str = "cpu", name: str = "Net"):
    return built(text, backend, device, name, "zero.rnn")


def spec(cell: str, extra: str = "") -> str:
    return f"stack Net {{\n    input_size = 3\n    {cell}(hidden_size = 4{extra})\n}}\n"


def operator_model(cell: str, state: dict, direction: str):
    """ONNX's own operator for `cell`, one node, from PyTorch's parameters `state`."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    order = ONNX_GATES[cell]
    suffixes = ["_l0", "_l0_reverse"] if direction == "bidirectional" else ["_l0"]

    def stacked(role):
        return np.stack([np.concatenate([np.split(state[role + s].numpy(), len(order))[i]
                                         for i in order]) for s in suffixes])

    inits = [numpy_helper.from_array(stacked("weight_ih"), "W"),
             numpy_helper.from_array(stacked("weight_hh"), "R"),
             numpy_helper.from_array(np.concatenate([stacked("bias_ih"), stacked("bias_hh")],
                                                    axis=1), "B")]
    outputs = ["Y", "Y_h"] + (["Y_c"] if cell == "lstm" else [])
    attributes = {"linear_before_reset": 1} if cell == "gru" else {}
    node = helper.make_node(ONNX_NAMES[cell], ["X", "W", "R", "B", "lens"], outputs,
                            hidden_size=4, direction=direction, **attributes)
    graph = helper.make_graph(
        [node], "one", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", 3]),
                        helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("cell", sorted(ONNX_GATES))
def test_equal_to_onnxruntimes_own_operators(cell, direction, backend):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import numpy as np

    extra = {"forward": "", "reverse": ", reverse = true",
             "bidirectional": ", bidirectional = true"}[direction]
    model, _ = build(spec(cell, extra), backend)
    torch.manual_seed(4)
    state = {k.split(".", 1)[1]: v for k, v in model.state_dict().items()}
    # a reverse-only block's forward names are the operator's one (reverse) direction
    onnx_model = operator_model(cell, state, direction)
    session = ort.InferenceSession(onnx_model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = torch.randn(5, 4, 3)
    got = session.run(None, {"X": x.numpy(), "lens": np.array(LENGTHS, dtype=np.int32)})
    with torch.no_grad():
        out, states = model(x, lengths=LENGTHS)
    y = got[0]  # [T, D, B, H] -> [T, B, D * H]
    y = y.transpose(0, 2, 1, 3).reshape(5, 4, -1)
    np.testing.assert_allclose(out.numpy(), y, atol=1e-5, rtol=0)
    finals = states if cell == "lstm" else (states,)
    for mine, theirs in zip(finals, got[1:]):
        np.testing.assert_allclose(mine.numpy(), theirs, atol=1e-5, rtol=0)
    assert np.all(out[:, [1, 3]].numpy() == 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_finals_are_the_initial_states_and_the_rest_is_packed(cell, backend, device):
    text = spec(cell, ", num_layers = 2, bidirectional = true")
    model, _ = build(text, backend, device)
    reference = getattr(nn, cell.upper())(3, 4, num_layers=2, bidirectional=True, device=device)
    model.load_state_dict({f"{cell}0.{k}": v for k, v in reference.state_dict().items()})
    x = torch.randn(5, 4, 3, device=device)
    h0 = torch.randn(4, 4, 4, device=device)
    hx = (h0, torch.randn(4, 4, 4, device=device)) if cell == "lstm" else h0
    lengths = torch.tensor(LENGTHS)
    with torch.no_grad():
        out, states = model(x, hx, lengths)
        keep = torch.tensor([0, 2])
        sub = tuple(s[:, keep] for s in hx) if cell == "lstm" else hx[:, keep]
        packed = nn.utils.rnn.pack_padded_sequence(x[:, keep], lengths[keep],
                                                   enforce_sorted=False)
        y, ref_states = reference(packed, sub)
    y, _ = nn.utils.rnn.pad_packed_sequence(y, total_length=5)
    torch.testing.assert_close(out[:, keep], y, atol=1e-5, rtol=1e-5)
    assert torch.all(out[:, [1, 3]] == 0)
    pairs = zip(states, hx, ref_states) if cell == "lstm" else [(states, hx, ref_states)]
    for final, initial, ref in pairs:
        torch.testing.assert_close(final[:, [1, 3]], initial[:, [1, 3]])
        torch.testing.assert_close(final[:, keep], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_of_empty_sequences(backend):
    text = spec("lstm", ", initial_state = learned") + \
        "stack Two {\n    input_size = 3\n    a = gru(hidden_size = 4, reverse = true)\n" \
        "    b = rnn(hidden_size = 2)\n}\n"
    model, _ = build(text, backend)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()
        out, (h, c) = model(torch.randn(3, 2, 3), lengths=[0, 0])
    assert torch.all(out == 0) and out.shape == (3, 2, 4)
    torch.testing.assert_close(h, model.lstm0.h0_l0.expand(1, 2, 4))
    torch.testing.assert_close(c, model.lstm0.c0_l0.expand(1, 2, 4))
    two, _ = build(text, backend, name="Two")
    h0 = (torch.randn(1, 2, 4), torch.randn(1, 2, 2))
    with torch.no_grad():
        out, states = two(torch.randn(3, 2, 3), h0, [0, 2])
    assert torch.all(out[:, 0] == 0)
    torch.testing.assert_close(states[0][:, 0], h0[0][:, 0])
    torch.testing.assert_close(states[1][:, 0], h0[1][:, 0])


def test_a_network_keeps_an_empty_sequence_empty():
    text = ("stack Net {\n    input_size = 3\n    conv = conv1d(8, kernel_size = 3, padding = 1)"
            "\n    gru(hidden_size = 4)\n}\n")
    for backend in BACKENDS:
        model, _ = build(text, backend)
        h0 = torch.randn(1, 2, 4)
        with torch.no_grad():
            out, h = model(torch.randn(6, 2, 3), h0, [6, 0])
        assert torch.all(out[:, 1] == 0)
        torch.testing.assert_close(h[:, 1], h0[:, 1])
        assert model.output_lengths([6, 0]).tolist() == [6, 0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_range_lengths_say_the_range(backend):
    model, _ = build(spec("gru"), backend)
    for bad in ([6, 1, 1, 1], [-1, 1, 1, 1]):
        with pytest.raises(ValueError, match=r"every length must be in 0\.\.5 \(T\)"):
            model(torch.randn(5, 4, 3), lengths=bad)


@pytest.mark.parametrize("scan", [False, True])
def test_export_keeps_the_initial_states_of_empty_sequences(tmp_path, scan):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import numpy as np

    from rnnspec.backends.onnx import export as onnx_export

    text = ("stack Net {\n    input_size = 3\n"
            "    a = lstm(hidden_size = 4, num_layers = 2, bidirectional = true)\n"
            "    b = gru(hidden_size = 3, reverse = true)\n    c = rnn(hidden_size = 2)\n}\n")
    model, result = build(text, "fused")
    stack = result.stacks[0]
    weights = onnx_export.match_weights(stack, model.state_dict(), "the module")
    exported = onnx_export.build_model(stack, weights, initial_states=True, lengths=True,
                                       scan_everything=scan)
    onnx_export.validate(exported)
    session = ort.InferenceSession(exported.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = torch.randn(5, 4, 3)
    hx = ((torch.randn(4, 4, 4), torch.randn(4, 4, 4)), torch.randn(1, 4, 3),
          torch.randn(1, 4, 2))
    feeds = {"input": x.numpy(), "lengths": np.array(LENGTHS), "h0.a": hx[0][0].numpy(),
             "c0.a": hx[0][1].numpy(), "h0.b": hx[1].numpy(), "h0.c": hx[2].numpy()}
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    with torch.no_grad():
        out, ((h_a, c_a), h_b, h_c) = model(x, hx, torch.tensor(LENGTHS))
    for name, value in (("output", out), ("h_n.a", h_a), ("c_n.a", c_a), ("h_n.b", h_b),
                        ("h_n.c", h_c)):
        np.testing.assert_allclose(got[name], value.numpy(), atol=1e-5, rtol=0, err_msg=name)
    np.testing.assert_array_equal(got["h_n.a"][:, [1, 3]], hx[0][0][:, [1, 3]].numpy())
