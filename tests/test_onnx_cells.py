"""`rnnspec export` for user cells (language section 8) and section 9's merge, residual,
zoneout and padded batches (`lengths`): every exported model runs in onnxruntime and equals
the generated PyTorch module (evaluation mode, same state dict) to 1e-5 at two (T, B)
pairs."""

from __future__ import annotations

import re

import cli_process
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402
from conftest import ROOT  # noqa: E402

import rnnspec  # noqa: E402
from rnnspec.backends.onnx import export as onnx_export  # noqa: E402
from rnnspec.cells.registry import state_keys  # noqa: E402

SIZES = [(6, 4), (3, 1)]  # two (T, B) pairs through one exported model
TOLERANCE = 1e-5
LIBRARY = (ROOT / "examples" / "cells.rnn").read_text(encoding="utf-8")
# Every `cell` item of the library, by name, as written
CELLS = {m.group(1): m.group(0) for m in re.finditer(r"(?ms)^cell (\w+).*?^\}\n", LIBRARY)}
EXTRA = {"TorchLSTMP": ", proj_size = 3", "ClippedLSTM": ", cell_size = 5",
         "MultiHeadSLSTM": ", heads = 2"}
# SRU's `require input_size == hidden_size`: as many input features as hidden units, and
# one direction (a later layer reads both directions)
SQUARE = {"SRU"}


def spec_text(blocks: str, *, batch_first: bool = False, input_size: int = 5,
              cells: tuple[str, ...] = ()) -> str:
    declared = "".join(CELLS[name] + "\n" for name in cells)
    return (f"{declared}stack Net {{\n    input_size = {input_size}\n"
            f"    batch_first = {'true' if batch_first else 'false'}\n    {blocks}\n}}\n")


def exported(tmp_path, text: str, seed: int, **options):
    path = tmp_path / "spec.rnn"
    path.write_text(text, encoding="utf-8")
    result = rnnspec.check_file(path)
    assert result.ok, [d.message for d in result.diagnostics]
    stack = result.stacks[0]
    torch.manual_seed(seed)
    net = rnnspec.load(path).Net().eval()
    weights = onnx_export.match_weights(stack, net.state_dict(), "the module")
    model = onnx_export.build_model(stack, weights, **options)
    onnx_export.validate(model)
    return stack, net, model


def assert_same(stack, net, model, *, initial_states: bool, padded: bool, seed: int,
                conditioned: bool = False):
    """Both at every (T, B) of SIZES (random unsorted lengths when `lengths`): the output
    and every final state within 1e-5. `conditioned` (for random equations, which may
    amplify rounding step after step): within 1e-5 plus ten times PyTorch's own float32
    error on that tensor, measured against the same module in float64."""
    import copy

    exact = copy.deepcopy(net).double() if conditioned else None
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    names = [o.name for o in session.get_outputs()]
    for T, B in SIZES:
        shape = (B, T, stack.input_size) if stack.batch_first else (T, B, stack.input_size)
        x = torch.randn(shape, generator=generator)
        feeds = {"input": x.numpy()}
        lengths = None
        if padded:
            lengths = torch.randint(1, T + 1, (B,), generator=generator)
            lengths[torch.randint(0, B, (1,), generator=generator)] = T  # one full sequence
            feeds["lengths"] = lengths.numpy().astype(np.int64)
        hx = []
        for block in stack.blocks:
            values = []
            for key, dims in block.states.items():
                value = torch.randn([B if d == "B" else d for d in dims], generator=generator)
                feeds[f"{key}.{block.name}"] = value.numpy()
                values.append(value)
            hx.append(tuple(values) if len(values) > 1 else values[0])
        if not initial_states:
            feeds = {k: v for k, v in feeds.items() if k in ("input", "lengths")}
        given = None
        if initial_states:
            given = hx[0] if len(stack.blocks) == 1 else tuple(hx)
        expected = _outputs(stack, net, x, given, lengths)
        got = dict(zip(names, session.run(None, feeds)))
        assert set(got) == set(expected)
        slack = {name: 0.0 for name in expected}
        if exact is not None:
            wide = None if given is None else _double(given)
            truth = _outputs(stack, exact, x.double(), wide, lengths)
            slack = {name: _rounding(expected[name].numpy(), truth[name].numpy())
                     for name in expected}
        for name, value in expected.items():
            assert got[name].shape == tuple(value.shape), (name, T, B)
            where = f"{name} at T={T}, B={B}, lengths={lengths}"
            if exact is None:
                np.testing.assert_allclose(got[name], value.numpy(), atol=TOLERANCE, rtol=1e-5,
                                           err_msg=where)
            else:
                _within(got[name], value.numpy(), slack[name], where)


def _outputs(stack, net, x, given, lengths) -> dict:
    with torch.no_grad():
        output, states = net(x, given, lengths=lengths)
    if len(stack.blocks) == 1:
        states = (states,)
    expected = {"output": output}
    for block, state in zip(stack.blocks, states):
        state = state if isinstance(state, tuple) else (state,)
        for name, value in zip(block.state_names, state):
            expected[f"{state_keys(name)[1]}.{block.name}"] = value
    return expected


def _double(states):
    if isinstance(states, tuple):
        return tuple(_double(s) for s in states)
    return states.double()


def _rounding(single, double) -> np.ndarray:
    """Ten times PyTorch's own float32 error on this tensor, at each element or the largest
    of them, whichever is more: equations that amplify rounding (a division by a small
    number) do so wherever that happens to fall, in both runtimes."""
    with np.errstate(invalid="ignore"):
        error = np.abs(single - double)
    finite = error[np.isfinite(error)]
    largest = finite.max() if finite.size else 0.0
    return 10 * np.maximum(error, largest)


def _within(got, expected, slack, message):
    """|got - expected| <= 1e-5 + 1e-5 |expected| + slack, elementwise; equal infinities and
    NaN where both are (a log of a negative number); anything where float64 itself gives NaN
    (no bound)."""
    slack = np.nan_to_num(slack, nan=np.inf)
    with np.errstate(invalid="ignore"):
        error = np.abs(got - expected)
        ok = (got == expected) | (np.isnan(got) & np.isnan(expected)) | np.isinf(slack)
        ok |= error <= TOLERANCE + 1e-5 * np.abs(expected) + slack
    assert ok.all(), (message, got[~ok][:5], expected[~ok][:5])


# ----------------------------------------------------------------------------- user cells


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_library_cell_exports_and_equals_torch(tmp_path, cell):
    directions = "" if cell in SQUARE else ", bidirectional = true"
    blocks = f"a = {cell}(hidden_size = 6, num_layers = 2{directions}{EXTRA.get(cell, '')})"
    text = spec_text(blocks, cells=(cell,), input_size=6 if cell in SQUARE else 5)
    stack, net, model = exported(tmp_path, text, seed=1, initial_states=True)
    ops = {node.op_type for node in model.graph.node}
    assert "Scan" in ops and not ops & {"LSTM", "GRU", "RNN"}
    assert_same(stack, net, model, initial_states=True, padded=False, seed=2)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_library_cell_with_lengths(tmp_path, cell):
    directions = "" if cell in SQUARE else ", bidirectional = true"
    blocks = f"a = {cell}(hidden_size = 4{directions}{EXTRA.get(cell, '')})"
    text = spec_text(blocks, cells=(cell,), batch_first=True,
                     input_size=4 if cell in SQUARE else 5)
    stack, net, model = exported(tmp_path, text, seed=3, lengths=True)
    assert_same(stack, net, model, initial_states=False, padded=True, seed=4)


def test_cells_mixed_with_builtins_and_zero_states(tmp_path):
    blocks = ("a = SLSTM(hidden_size = 4)\n    b = lstm(hidden_size = 3, proj_size = 2)\n"
              "    c = MinGRU(hidden_size = 5, num_layers = 2)\n    d = gru(hidden_size = 2)")
    stack, net, model = exported(tmp_path, spec_text(blocks, cells=("SLSTM", "MinGRU")),
                                 seed=5)
    assert_same(stack, net, model, initial_states=False, padded=False, seed=6)


FUNCTIONS = """
cell Everything(k = 2) {
    state h[hidden_size], c[hidden_size]
    param w[2 * hidden_size, input_size + hidden_size]
    param u[hidden_size, hidden_size]
    param g[2 * hidden_size] = ones, b[2 * hidden_size] = zeros
    param v[k], s[hidden_size]
    param m[hidden_size, k + 2 * hidden_size]

    a = layer_norm(w @ concat(x, h), g, b)
    p, q = chunk(a, 2)
    bounded = clamp(p, -0.5, 0.5) + minimum(q, 0.25) - maximum(q, h)
    smooth = gelu(bounded) + silu(q) + softplus(p) - logsigmoid(q) + abs(p) / 2
    grown = sqrt(exp(-abs(q)) + 1) * log(sigmoid(p) + 1)
    c = relu(smooth) * c + tanh(grown) - u @ s
    side = concat(v, s)
    h = layer_norm(c + u @ h, s) + -c + m @ concat(side, c) / 4
}
"""


@pytest.mark.parametrize("opset", [14, 17, 20])
def test_every_function_of_the_language(tmp_path, opset):
    """The whole section 8 vocabulary, parameters concatenated with nothing batched,
    a parameter-only term, every opset's way of writing layer_norm and gelu."""
    text = FUNCTIONS + spec_text("e = Everything(hidden_size = 4, bidirectional = true)")
    stack, net, model = exported(tmp_path, text, seed=7, opset=opset, initial_states=True)
    assert_same(stack, net, model, initial_states=True, padded=False, seed=8)


# ----------------------------------------------------------------------------- section 9

BUILTIN = {
    "lstm": "lstm(hidden_size = 4, num_layers = 2, bidirectional = true)",
    "gru": "gru(hidden_size = 3, num_layers = 2, bidirectional = true)",
    "rnn_relu": "rnn(hidden_size = 4, nonlinearity = relu, bidirectional = true)",
    "no_bias": "lstm(hidden_size = 4, bias = false)\n    gru(hidden_size = 3, bias = false, "
               "bidirectional = true)",
    "lstm_proj": "lstm(hidden_size = 5, proj_size = 2, num_layers = 2, bidirectional = true)",
}


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("case", sorted(BUILTIN))
def test_builtin_blocks_with_lengths(tmp_path, case, batch_first):
    """ONNX's operators take the lengths as `sequence_lens` (outputs past a sequence's end
    are zero, the final states those of its last valid step, the reverse direction starts
    at each sequence's own end): the packed PyTorch module's numbers."""
    stack, net, model = exported(tmp_path, spec_text(BUILTIN[case], batch_first=batch_first),
                                 seed=11, lengths=True, initial_states=True)
    ops = {node.op_type for node in model.graph.node}
    assert ("Scan" in ops) == (case == "lstm_proj")
    assert_same(stack, net, model, initial_states=True, padded=True, seed=12)


MERGED = {
    "sum": "a = lstm(hidden_size = 5, bidirectional = true, merge = sum, residual = true)",
    "mean": "a = gru(hidden_size = 3, bidirectional = true, merge = mean)\n"
            "    b = rnn(hidden_size = 3, residual = true)",
    "mul": "a = lstm(hidden_size = 4, proj_size = 2, bidirectional = true, merge = mul)\n"
           "    b = MinGRU(hidden_size = 2, bidirectional = true, merge = sum, residual = true,"
           " num_layers = 2)",
    "residual": "a = SLSTM(hidden_size = 5, residual = true)\n"
                "    b = lstm(hidden_size = 5, num_layers = 2, residual = true)",
}


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("case", sorted(MERGED))
def test_merge_and_residual(tmp_path, case, padded):
    text = spec_text(MERGED[case], cells=("MinGRU", "SLSTM"), batch_first=padded)
    stack, net, model = exported(tmp_path, text, seed=13, lengths=padded)
    assert_same(stack, net, model, initial_states=False, padded=padded, seed=14)


@pytest.mark.parametrize("padded", [False, True])
def test_zoneout_in_evaluation_mode(tmp_path, padded):
    """Zoneout in evaluation keeps p of the previous first state: a Scan for every cell."""
    blocks = ("a = lstm(hidden_size = 4, zoneout = 0.3, bidirectional = true, "
              "recurrent_dropout = 0.2, weight_dropout = 0.1)\n"
              "    b = PeepholeLSTM(hidden_size = 3, zoneout = 0.5, num_layers = 2)\n"
              "    c = gru(hidden_size = 3, zoneout = 0.1)")
    stack, net, model = exported(tmp_path, spec_text(blocks, cells=("PeepholeLSTM",)),
                                 seed=15, lengths=padded, initial_states=True)
    ops = [node.op_type for node in model.graph.node]
    assert "LSTM" not in ops and "GRU" not in ops
    assert_same(stack, net, model, initial_states=True, padded=padded, seed=16)


# ----------------------------------------------------------------------------- random cells

from cell_strategies import cells, render_cell  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


# derandomize: random equations may divide by numbers near zero, where float32 rounding in
# two runtimes legitimately drifts apart beyond any fixed bound (about one draw in a
# thousand); a fixed set of draws keeps CI's verdict the same from run to run
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cell=cells(), bidirectional=st.booleans(), padded=st.booleans(),
       seed=st.integers(0, 2**16))
def test_random_cells_equal_torch(tmp_path, cell, bidirectional, padded, seed):
    """Random cells over the whole vocabulary (NaN where both compute one: a log of a
    negative number is the cell's own business)."""
    text = render_cell(cell).text + spec_text(
        f"r = Random(hidden_size = 3, input_size = 2, num_layers = 2, "
        f"bidirectional = {'true' if bidirectional else 'false'})", input_size=2)
    stack, net, model = exported(tmp_path, text, seed=seed, lengths=padded)
    assert_same(stack, net, model, initial_states=False, padded=padded, seed=seed + 1,
                conditioned=True)


def test_cli_export_of_user_cells_with_lengths(tmp_path):

    spec = tmp_path / "spec.rnn"
    spec.write_text(spec_text("a = SLSTM(hidden_size = 4, bidirectional = true, merge = sum)",
                              cells=("SLSTM",)), encoding="utf-8")
    out = tmp_path / "net.onnx"
    run = cli_process.run("export", spec, "-o", out, "--lengths", "--seed", "3")
    assert run.returncode == 0, run.stderr
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input", "lengths"]
    torch.manual_seed(3)
    net = rnnspec.load(spec).Net().eval()
    x, lengths = torch.randn(5, 3, 5), torch.tensor([2, 5, 1])
    with torch.no_grad():
        expected = net(x, lengths=lengths)[0].numpy()
    got = session.run(["output"], {"input": x.numpy(), "lengths": lengths.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=1e-5)
