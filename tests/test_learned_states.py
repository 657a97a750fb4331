"""Section 11, `initial_state = learned`: parameters `h0_l0`, `c0_l0`, ... that start what
`hx` leaves out. Against PyTorch (nn.GRU/nn.LSTM given hx = the learned vectors expanded),
through the checker, the state dict of both torch backends, gradients, the ONNX export
(onnxruntime), `check --weights` and `infer`."""

from __future__ import annotations

import os

import pytest
from checkpoint_files import write_safetensors_header
from user_cells import built

from rnnspec import check_source
from rnnspec.tools.checkpoints.compare import compare
from rnnspec.tools.checkpoints.infer import cell_shape, infer_modules, match_cell
from rnnspec.tools.checkpoints.read import read_checkpoint

torch = pytest.importorskip("torch")
nn = torch.nn
BACKENDS = ["fused", "explicit"]

GRU = ("stack Enc {\n    input_size = 4\n"
       "    encoder = gru(hidden_size = 6, num_layers = 2, bidirectional = true, "
       "initial_state = learned)\n}\n")
LSTM = ("stack Enc {\n    input_size = 4\n"
        "    encoder = lstm(hidden_size = 5, initial_state = learned)\n}\n")


def build(text: str, backend: str, device: str = "cpu", name: str = "Enc"):
    return built(text, backend, device, name, "learned.rnn")


def randomise(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)


def expanded(model, key: str, batch: int, rows: list[str]):
    return torch.stack([getattr(model.encoder, f"{key}_{r}") for r in rows]) \
        .unsqueeze(1).expand(-1, batch, -1)


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_the_checker_lists_the_learned_vectors():
    result = check_source(GRU, "learned.rnn")
    (block,) = result.stacks[0].blocks
    learned = [(p.name, p.shape) for p in block.parameters if p.role == "h0"]
    assert learned == [("h0_l0", (6,)), ("h0_l0_reverse", (6,)), ("h0_l1", (6,)),
                       ("h0_l1_reverse", (6,))]
    assert block.parameter_count == sum(p.numel for p in block.weights) + 24
    lstm = check_source(LSTM, "learned.rnn").stacks[0].blocks[0]
    assert [p.name for p in lstm.parameters][-2:] == ["h0_l0", "c0_l0"]


def test_an_unknown_word_is_located_with_a_suggestion():
    result = check_source(LSTM.replace("learned)", "lerned)"), "learned.rnn")
    [problem] = result.diagnostics
    assert problem.code == "E021" and "`zeros` or `learned`" in problem.message
    assert "learned" in problem.help and problem.span.column == 53


@pytest.mark.parametrize("backend", BACKENDS)
def test_gru_equals_pytorch_from_the_learned_states(backend, device):
    model, result = build(GRU, backend, device)
    names = [p.name for p in result.stacks[0].blocks[0].parameters]
    assert list(model.state_dict()) == [f"encoder.{n}" for n in names]
    for name in ("h0_l0", "h0_l1_reverse"):
        assert torch.equal(model.state_dict()[f"encoder.{name}"], torch.zeros(6, device=device))
    randomise(model)
    reference = nn.GRU(4, 6, num_layers=2, bidirectional=True, device=device)
    reference.load_state_dict({k.removeprefix("encoder."): v for k, v in
                               model.state_dict().items() if "h0_" not in k})
    x = torch.randn(7, 3, 4, device=device)
    hx = expanded(model, "h0", 3, ["l0", "l0_reverse", "l1", "l1_reverse"])
    with torch.no_grad():
        out, h = model(x)
        expected, rh = reference(x, hx)
    close(out, expected)
    close(h, rh)
    given = torch.randn(4, 3, 6, device=device)  # a given hx wins
    with torch.no_grad():
        close(model(x, given)[0], reference(x, given)[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_lstm_fills_the_states_hx_leaves_out(backend):
    model, _ = build(LSTM, backend)
    randomise(model)
    reference = nn.LSTM(4, 5)
    learned = ("encoder.h0_l0", "encoder.c0_l0")
    reference.load_state_dict({k.removeprefix("encoder."): v for k, v in
                               model.state_dict().items() if k not in learned})
    x = torch.randn(6, 2, 4)
    h0, c0 = expanded(model, "h0", 2, ["l0"]), expanded(model, "c0", 2, ["l0"])
    mine = torch.randn(1, 2, 5)
    lengths = torch.tensor([6, 3])
    with torch.no_grad():
        for hx, full in [(None, (h0, c0)), ((mine, None), (mine, c0)),
                         ((None, mine), (h0, mine))]:
            out, (h, c) = model(x, hx, lengths)
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
            y, (rh, rc) = reference(packed, full)
            close(out, nn.utils.rnn.pad_packed_sequence(y, total_length=6)[0])
            close(h, rh)
            close(c, rc)
        unbatched, (h, _) = model(x[:, 0])
        close(unbatched, reference(x[:, :1], (h0[:, :1], c0[:, :1]))[0][:, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_reach_the_learned_states(backend):
    model, _ = build(LSTM, backend)
    model.train()
    out, (h, c) = model(torch.randn(5, 3, 4))
    (out.sum() + c.sum()).backward()
    for name in ("h0_l0", "c0_l0"):
        grad = getattr(model.encoder, name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_reset_of_the_written_out_block_zeroes_the_learned_states():
    model, _ = build(LSTM, "explicit")
    randomise(model)
    model.encoder.reset_parameters()
    assert torch.equal(model.encoder.h0_l0, torch.zeros(5))


def test_onnx_export_defaults_to_the_learned_states(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import numpy as np

    from rnnspec.backends.onnx import export as onnx_export

    model, result = build(LSTM, "fused")
    randomise(model)
    stack = result.stacks[0]
    weights = onnx_export.match_weights(stack, model.state_dict(), "the module")
    x = torch.randn(5, 3, 4)
    mine = torch.randn(1, 3, 5)
    for scan in (False, True):
        exported = onnx_export.build_model(stack, weights, initial_states=True,
                                           scan_everything=scan)
        onnx_export.validate(exported)
        session = ort.InferenceSession(exported.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        for feeds, hx in [({}, None), ({"h0.encoder": mine.numpy()}, (mine, None))]:
            got = dict(zip(names, session.run(None, {"input": x.numpy(), **feeds})))
            with torch.no_grad():
                out, (h, c) = model(x, hx)
            for name, value in (("output", out), ("h_n.encoder", h), ("c_n.encoder", c)):
                np.testing.assert_allclose(got[name], value.numpy(), atol=1e-5, rtol=0)


def _header(tmp_path, shapes):
    path = os.path.join(str(tmp_path), "c.safetensors")
    write_safetensors_header(path, shapes)
    return path


def test_check_weights_reports_the_learned_states(tmp_path):
    learned = check_source(LSTM, "learned.rnn")
    zeros = check_source(LSTM.replace(", initial_state = learned", ""), "zeros.rnn")
    weights = {f"encoder.{p.name}": p.shape for p in zeros.stacks[0].blocks[0].parameters}
    both = dict(weights, **{"encoder.h0_l0": (5,), "encoder.c0_l0": (5,)})
    same = compare(learned, learned.stacks[0], read_checkpoint(_header(tmp_path, both)), "c")
    assert not same.missing and not same.unexpected and not same.diagnostics
    lacking = compare(learned, learned.stacks[0],
                      read_checkpoint(_header(tmp_path, weights)), "c")
    assert lacking.missing == ["encoder.h0_l0", "encoder.c0_l0"]
    assert [d.code for d in lacking.diagnostics] == ["E060"]
    assert "`initial_state = zeros`" in lacking.diagnostics[0].message
    extra = compare(zeros, zeros.stacks[0], read_checkpoint(_header(tmp_path, both)), "c")
    assert extra.unexpected == ["encoder.h0_l0", "encoder.c0_l0"]
    assert "add `initial_state = learned`" in extra.diagnostics[0].help


def test_infer_reads_learned_states():
    tensors = {"rnn.weight_ih_l0": ((12, 3), "float32"), "rnn.weight_hh_l0": ((12, 4), "float32"),
               "rnn.h0_l0": ((4,), "float32")}
    modules, skipped = infer_modules(tensors)
    assert not skipped
    assert modules[0].cell == "gru" and modules[0].arguments["initial_state"] == "learned"
    cells = check_source("cell Min {\n    state h[hidden_size]\n"
                         "    param w[hidden_size, input_size]\n    h = tanh(w @ x + h)\n}\n"
                         "stack S {\n    input_size = 3\n    Min(hidden_size = 4)\n}\n", "c.rnn")
    shape = cell_shape(cells.cells[0])
    found = match_cell({"w_l0": (4, 3), "h0_l0": (4,)}, shape)
    assert found == ({"hidden_size": 4, "initial_state": "learned"}, 3)
    assert match_cell({"w_l0": (4, 3), "h0_l0": (5,)}, shape) is None
