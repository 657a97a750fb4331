"""`rnnspec export`: every exported model runs in onnxruntime and equals the generated
PyTorch module (evaluation mode, same state dict) to 1e-5, at two (T, B) pairs."""

from __future__ import annotations

import os
import subprocess
import sys

import cli_process
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402
from conftest import ROOT  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx_helpers import recurrence_model  # noqa: E402
from strategies import render, stack_specs  # noqa: E402

import rnnspec  # noqa: E402
from rnnspec.backends.onnx import export as onnx_export  # noqa: E402

SIZES = [(5, 3), (1, 1)]  # two (T, B) pairs through one exported model
TOLERANCE = 1e-5

# One stack per feature of the built-in cells, named for the test ids.
CASES = {
    "lstm": "lstm(hidden_size = 6, num_layers = 2)",
    "gru": "gru(hidden_size = 5, num_layers = 2)",
    "rnn_tanh": "rnn(hidden_size = 4, num_layers = 2)",
    "rnn_relu": "rnn(hidden_size = 4, nonlinearity = relu, bidirectional = true)",
    "lstm_proj": "lstm(hidden_size = 7, proj_size = 3, num_layers = 2)",
    "lstm_proj_bidirectional": "lstm(hidden_size = 6, proj_size = 2, num_layers = 2, "
                               "bidirectional = true, dropout = 0.5)",
    "bidirectional": "encoder = lstm(hidden_size = 4, num_layers = 3, bidirectional = true)\n"
                     "    gru(hidden_size = 3, bidirectional = true)",
    "no_bias": "lstm(hidden_size = 4, bias = false, bidirectional = true)\n"
               "    gru(hidden_size = 3, bias = false)\n"
               "    rnn(hidden_size = 2, bias = false)\n"
               "    lstm(hidden_size = 5, proj_size = 2, bias = false)",
    "several_blocks": "a = rnn(hidden_size = 3)\n    b = lstm(hidden_size = 5, proj_size = 4)\n"
                      "    c = gru(hidden_size = 2, num_layers = 2)",
}


def spec_text(blocks: str, batch_first: bool, name: str = "Net", input_size: int = 3) -> str:
    return (f"stack {name} {{\n    input_size = {input_size}\n"
            f"    batch_first = {'true' if batch_first else 'false'}\n    {blocks}\n}}\n")


def write_spec(folder, text: str):
    path = folder / "spec.rnn"
    path.write_text(text, encoding="utf-8")
    return path


def exported(spec_path, stack_name: str, seed: int, **options):
    """(the generated module in eval mode, the ONNX model) with the same parameters."""
    result = rnnspec.check_file(spec_path)
    assert result.ok
    stack = onnx_export.find_stack(result, stack_name)
    torch.manual_seed(seed)
    net = getattr(rnnspec.load(spec_path), stack_name)().eval()
    weights = onnx_export.match_weights(stack, net.state_dict(), "the module")
    model = onnx_export.build_model(stack, weights, **options)
    onnx_export.validate(model)
    return stack, net, model


def assert_same(stack, net, model, initial_states: bool, seed: int) -> None:
    """Run both at every (T, B) of SIZES; outputs and every final state within 1e-5."""
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    names = [o.name for o in session.get_outputs()]
    for T, B in SIZES:
        shape = (B, T, stack.input_size) if stack.batch_first else (T, B, stack.input_size)
        x = torch.randn(shape, generator=generator)
        feeds = {"input": x.numpy()}
        hx = []
        for block in stack.blocks:
            state = {}
            for key, dims in block.states.items():
                value = torch.randn([B if d == "B" else d for d in dims], generator=generator)
                if initial_states:
                    feeds[f"{key}.{block.name}"] = value.numpy()
                    state[key] = value
            hx.append((state["h0"], state["c0"]) if "c0" in state else state.get("h0"))
        with torch.no_grad():
            if not initial_states:
                output, states = net(x)
            elif len(stack.blocks) == 1:
                output, states = net(x, hx[0])
            else:
                output, states = net(x, tuple(hx))
        if len(stack.blocks) == 1:
            states = (states,)
        expected = {"output": output}
        for block, state in zip(stack.blocks, states):
            if "c0" in block.states:
                expected[f"h_n.{block.name}"], expected[f"c_n.{block.name}"] = state
            else:
                expected[f"h_n.{block.name}"] = state
        got = dict(zip(names, session.run(None, feeds)))
        assert set(got) == set(expected)
        for name, value in expected.items():
            assert got[name].shape == tuple(value.shape), (name, T, B)
            np.testing.assert_allclose(got[name], value.numpy(), atol=TOLERANCE, rtol=0,
                                       err_msg=f"{name} at T={T}, B={B}")


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("initial_states", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_builtin_stacks_equal_torch(tmp_path, case, batch_first, initial_states):
    spec = write_spec(tmp_path, spec_text(CASES[case], batch_first))
    stack, net, model = exported(spec, "Net", seed=1, initial_states=initial_states)
    ops = {node.op_type for node in model.graph.node}
    # A projected LSTM is what ONNX's LSTM operator cannot express: a Scan.
    assert ("Scan" in ops) == any(block.proj_size for block in stack.blocks)
    assert bool(ops & {"LSTM", "GRU", "RNN"}) == any(not b.proj_size for b in stack.blocks)
    assert_same(stack, net, model, initial_states, seed=2)


@pytest.mark.parametrize("case", sorted(CASES))
def test_scan_builder_equals_torch_for_every_cell(tmp_path, case):
    """The Scan path (the one user cells will take) on every built-in cell's equations."""
    spec = write_spec(tmp_path, spec_text(CASES[case], batch_first=False))
    stack, net, model = exported(spec, "Net", seed=3, initial_states=True,
                                 scan_everything=True)
    ops = {node.op_type for node in model.graph.node}
    assert "Scan" in ops and not ops & {"LSTM", "GRU", "RNN"}
    assert_same(stack, net, model, initial_states=True, seed=4)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=stack_specs(), initial_states=st.booleans(), seed=st.integers(0, 2**16))
def test_random_stacks_equal_torch(tmp_path, spec, initial_states, seed):
    path = write_spec(tmp_path, render(spec))
    stack, net, model = exported(path, spec.name, seed=seed, initial_states=initial_states)
    assert_same(stack, net, model, initial_states, seed=seed + 1)


@pytest.mark.parametrize("opset", [onnx_export.MIN_OPSET, 18, onnx_export.MAX_OPSET])
def test_every_supported_opset_runs(tmp_path, opset):
    spec = write_spec(tmp_path, spec_text(CASES["several_blocks"], batch_first=True))
    stack, net, model = exported(spec, "Net", seed=5, opset=opset, initial_states=True)
    assert model.opset_import[0].version == opset
    assert_same(stack, net, model, initial_states=True, seed=6)


def test_gate_layout_of_the_lstm_operator(tmp_path):
    """W of ONNX's LSTM is PyTorch's weight_ih with its gates i,f,g,o reordered to i,o,f,c."""
    spec = write_spec(tmp_path, spec_text("lstm(hidden_size = 2)", batch_first=False,
                                          input_size=1))
    result = rnnspec.check_file(spec)
    stack = result.stacks[0]
    rows = np.arange(8, dtype=np.float32).reshape(8, 1)
    weights = {"lstm0.weight_ih_l0": rows, "lstm0.weight_hh_l0": np.zeros((8, 2), np.float32),
               "lstm0.bias_ih_l0": np.zeros(8, np.float32),
               "lstm0.bias_hh_l0": np.ones(8, np.float32)}
    model = onnx_export.build_model(stack, weights)
    W = next(i for i in model.graph.initializer if i.name == "lstm0.W_l0")
    B = next(i for i in model.graph.initializer if i.name == "lstm0.B_l0")
    W = onnx.numpy_helper.to_array(W)
    assert W.shape == (1, 8, 1)
    assert W[0, :, 0].tolist() == [0, 1, 6, 7, 2, 3, 4, 5]  # i, o, f, c
    assert onnx.numpy_helper.to_array(B).shape == (1, 16)


def test_exported_graph_signature(tmp_path):
    spec = write_spec(tmp_path, spec_text(CASES["bidirectional"], batch_first=True))
    _, _, model = exported(spec, "Net", seed=0, initial_states=True)

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs = {i.name: dims(i) for i in model.graph.input}
    outputs = {o.name: dims(o) for o in model.graph.output}
    assert inputs == {"input": ["B", "T", 3], "h0.encoder": [6, "B", 4],
                      "c0.encoder": [6, "B", 4], "h0.gru1": [2, "B", 3]}
    assert outputs == {"output": ["B", "T", 6], "h_n.encoder": [6, "B", 4],
                       "c_n.encoder": [6, "B", 4], "h_n.gru1": [2, "B", 3]}
    assert model.producer_name == "rnnspec"


# ----------------------------------------------------------------------------- the CLI


def rnnspec_cli(*args, cwd=None):
    return cli_process.run(*args, cwd=cwd)


def run_model(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


@pytest.fixture
def two_stacks(tmp_path):
    return write_spec(tmp_path, spec_text(CASES["lstm_proj"], False, name="Proj")
                      + spec_text(CASES["gru"], True, name="Gru"))


def test_cli_export_with_seed_equals_the_module(tmp_path, two_stacks):
    out = tmp_path / "proj.onnx"
    run = rnnspec_cli("export", two_stacks, "--stack", "Proj", "-o", out, "--seed", "7")
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stderr
    onnx.checker.check_model(str(out), full_check=True)
    torch.manual_seed(7)
    net = rnnspec.load(two_stacks).Proj().eval()
    x = torch.randn(4, 2, 3)
    with torch.no_grad():
        expected = net(x)[0].numpy()
    np.testing.assert_allclose(run_model(out, x.numpy()), expected, atol=TOLERANCE, rtol=0)
    # The same command again replaces the file it wrote.
    again = rnnspec_cli("export", two_stacks, "--stack", "Proj", "-o", out, "--seed", "8")
    assert again.returncode == 0, again.stderr
    assert not np.allclose(run_model(out, x.numpy()), expected)


@pytest.mark.parametrize("form", ["torch", "torch_nested", "safetensors"])
def test_cli_export_with_weights(tmp_path, two_stacks, form):
    torch.manual_seed(11)
    net = rnnspec.load(two_stacks).Gru().eval()
    state = net.state_dict()
    checkpoint = tmp_path / ("w.safetensors" if form == "safetensors" else "w.pt")
    if form == "safetensors":
        save_file = pytest.importorskip("safetensors.torch").save_file

        save_file(dict(state), str(checkpoint))
    else:
        torch.save({"state_dict": state, "epoch": 3} if form == "torch_nested" else state,
                   checkpoint)
    out = tmp_path / "gru.onnx"
    run = rnnspec_cli("export", two_stacks, "--stack", "Gru", "-o", out, "--weights",
                      checkpoint)
    assert run.returncode == 0, run.stderr
    x = torch.randn(2, 6, 3)  # batch_first
    with torch.no_grad():
        expected = net(x)[0].numpy()
    np.testing.assert_allclose(run_model(out, x.numpy()), expected, atol=TOLERANCE, rtol=0)


LAYERED = ("stack T {\n    input_size = 4\n    enc = lstm(hidden_size = 8)\n"
           "    dec = gru(hidden_size = 5)\n    out = linear(out_features = 3)\n}\n")
ONE_BLOCK = "stack S {\n    input_size = 4\n    lstm(hidden_size = 8)\n}\n"


def _checkpoint_forms(name: str, state: dict):
    """The ways training scripts save `state` (the generated module's state dict)."""
    if name == "model":
        return {"model": state, "epoch": 3}
    if name == "module":  # nn.DataParallel's prefix, inside a `state_dict` entry
        return {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    # inside a bigger model, beside tensors of other modules
    return {**{f"encoder.{k}": v for k, v in state.items()}, "decoder.weight": torch.ones(2, 2)}


@pytest.mark.parametrize("form", ["model", "module", "encoder"])
def test_export_loads_what_check_weights_accepts(tmp_path, form):
    spec = write_spec(tmp_path, LAYERED)
    torch.manual_seed(5)
    net = rnnspec.load(spec).T().eval()
    checkpoint = tmp_path / "w.pt"
    torch.save(_checkpoint_forms(form, net.state_dict()), checkpoint)
    checked = rnnspec_cli("check", spec, "--weights", checkpoint)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "10 matched, 0 missing, 0 unexpected, 0 mismatched" in checked.stdout
    out = tmp_path / "t.onnx"
    run = rnnspec_cli("export", spec, "-o", out, "--weights", checkpoint)
    assert run.returncode == 0, run.stderr
    x = torch.randn(6, 2, 4)
    with torch.no_grad():
        expected = net(x)[0].numpy()
    np.testing.assert_allclose(run_model(out, x.numpy()), expected, atol=TOLERANCE, rtol=0)


def test_export_loads_a_bare_nn_lstm_under_a_prefix(tmp_path):
    """A one-block stack matches a bare module's keys (`encoder.rnn.weight_ih_l0`), as
    check --weights matches them; --prefix names the same prefix explicitly."""
    spec = write_spec(tmp_path, ONE_BLOCK)
    torch.manual_seed(6)
    lstm = torch.nn.LSTM(4, 8).eval()
    state = {f"encoder.rnn.{k}": v for k, v in lstm.state_dict().items()}
    state["head.weight"] = torch.ones(3, 8)
    checkpoint = tmp_path / "w.pt"
    torch.save({"model_state_dict": state}, checkpoint)
    checked = rnnspec_cli("check", spec, "--weights", checkpoint)
    assert checked.returncode == 0 and "key prefix `encoder.rnn.`" in checked.stdout, \
        checked.stdout
    x = torch.randn(5, 3, 4)
    with torch.no_grad():
        expected = lstm(x)[0].numpy()
    for extra in ([], ["--prefix", "encoder.rnn."]):
        out = tmp_path / "s.onnx"
        run = rnnspec_cli("export", spec, "-o", out, "--weights", checkpoint, *extra)
        assert run.returncode == 0, run.stderr
        np.testing.assert_allclose(run_model(out, x.numpy()), expected, atol=TOLERANCE,
                                   rtol=0)
    run = rnnspec_cli("export", spec, "-o", tmp_path / "x.onnx", "--weights", checkpoint,
                      "--prefix", "decoder.")
    assert run.returncode == 1 and "does not match stack `S`" in run.stderr, run.stderr
    run = rnnspec_cli("export", spec, "-o", tmp_path / "x.onnx", "--prefix", "encoder.")
    assert run.returncode == 2 and "--prefix goes with --weights" in run.stderr


def assert_refused(run, out, status: int, *words):
    assert run.returncode == status, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    for word in words:
        assert word in run.stderr
    assert not os.path.exists(out)
    assert not [p for p in os.listdir(os.path.dirname(out)) if p.startswith(".rnnspec-")]


def test_cli_unknown_stack(tmp_path, two_stacks):
    out = tmp_path / "x.onnx"
    run = rnnspec_cli("export", two_stacks, "--stack", "Prog", "-o", out)
    assert_refused(run, out, 2, "no stack `Prog`", "`Proj`")


def test_cli_stack_must_be_named_when_there_are_several(tmp_path, two_stacks):
    out = tmp_path / "x.onnx"
    run = rnnspec_cli("export", two_stacks, "-o", out)
    assert_refused(run, out, 2, "has 2 stacks", "--stack")


def test_cli_spec_with_errors(tmp_path):
    spec = write_spec(tmp_path, "stack A {\n    input_size = 3\n    lstm(hidden_size = 0)\n}\n")
    out = tmp_path / "x.onnx"
    run = rnnspec_cli("export", spec, "-o", out)
    assert_refused(run, out, 1, "error[E021]")


def test_cli_missing_spec(tmp_path):
    out = tmp_path / "x.onnx"
    assert_refused(rnnspec_cli("export", tmp_path / "none.rnn", "-o", out), out, 2)


def test_cli_unwritable_output(tmp_path, two_stacks):
    out = tmp_path / "missing" / "x.onnx"
    run = rnnspec_cli("export", two_stacks, "--stack", "Gru", "-o", out)
    assert run.returncode == 2 and "does not exist" in run.stderr
    assert not out.parent.exists()
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    run = rnnspec_cli("export", two_stacks, "--stack", "Gru", "-o", folder)
    assert run.returncode == 2 and "it is a folder" in run.stderr


def test_cli_refuses_to_overwrite_a_foreign_file(tmp_path, two_stacks):
    out = tmp_path / "mine.onnx"
    out.write_bytes(b"precious")
    run = rnnspec_cli("export", two_stacks, "--stack", "Gru", "-o", out)
    assert run.returncode == 2 and "refusing to overwrite" in run.stderr
    assert out.read_bytes() == b"precious"
    run = rnnspec_cli("export", two_stacks, "--stack", "Gru", "-o", out, "--force")
    assert run.returncode == 0, run.stderr
    onnx.checker.check_model(str(out))


@pytest.mark.parametrize("opset", ["13", "22", "-1"])
def test_cli_unsupported_opset(tmp_path, two_stacks, opset):
    out = tmp_path / "x.onnx"
    run = rnnspec_cli("export", two_stacks, "--stack", "Gru", "-o", out, "--opset", opset)
    assert_refused(run, out, 2, f"opset {opset} is not supported", "14 to 21")


class Exotic:
    """Not an allowed global for weights_only loading."""


def check_weights_error(spec, checkpoint, *extra) -> str:
    """What `check --weights` says of a checkpoint it cannot read (exit 2)."""
    run = rnnspec_cli("check", spec, "--weights", checkpoint, *extra)
    assert run.returncode == 2, run.stdout + run.stderr
    return run.stderr.removeprefix("rnnspec: error: ").strip()


@pytest.mark.parametrize("content", [b"not a checkpoint", None, "pickle"])
def test_cli_bad_checkpoint(tmp_path, two_stacks, content):
    checkpoint = tmp_path / "w.pt"
    if content == "pickle":  # a pickle that weights_only refuses: an arbitrary object
        torch.save({"state_dict": object.__new__(Exotic)}, checkpoint)
    elif content is not None:
        checkpoint.write_bytes(content)
    out = tmp_path / "x.onnx"
    run = rnnspec_cli("export", two_stacks, "--stack", "Gru", "-o", out, "--weights",
                      checkpoint)
    why = {"pickle": "a safe load refuses", None: "No such file"}.get(
        content, "is not a checkpoint")
    assert_refused(run, out, 2, f"`{checkpoint}`", why)
    # the one reader: check --weights says the same
    said = check_weights_error(two_stacks, checkpoint, "--stack", "Gru")
    assert said in run.stderr, (said, run.stderr)


def test_cli_truncated_safetensors(tmp_path, two_stacks):
    checkpoint = tmp_path / "w.safetensors"
    checkpoint.write_bytes(b"\xff\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    out = tmp_path / "x.onnx"
    run = rnnspec_cli("export", two_stacks, "--stack", "Gru", "-o", out, "--weights",
                      checkpoint)
    assert_refused(run, out, 2, "is truncated")
    assert check_weights_error(two_stacks, checkpoint, "--stack", "Gru") in run.stderr


def test_cli_checkpoint_of_another_stack(tmp_path, two_stacks):
    checkpoint = tmp_path / "w.pt"
    torch.manual_seed(0)
    state = rnnspec.load(two_stacks).Proj().state_dict()
    torch.save(state, checkpoint)
    out = tmp_path / "x.onnx"
    run = rnnspec_cli("export", two_stacks, "--stack", "Gru", "-o", out, "--weights",
                      checkpoint)
    # matched as check --weights matches: the one block's module is `lstm0.`, whose
    # tensors have an LSTM's shapes
    assert_refused(run, out, 1, "does not match stack `Gru` (key prefix `lstm0.`)",
                   "`lstm0.weight_ih_l0` is [", "rnnspec check")


def test_check_path_does_not_import_onnx():
    code = ("import sys, rnnspec.cli as c; c.main(['check', sys.argv[1]]); "
            "print(sorted(m for m in ('onnx', 'torch', 'onnxruntime') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code, str(ROOT / "examples" / "seed.rnn")],
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.strip().endswith("[]"), run.stdout + run.stderr



# ----------------------------------------------------------------------------- step statements


def _layer_norm_cell(features: int = 3, H: int = 4):
    """A cell written with most of the statement vocabulary (what user cells will use); each
    statement carries its outputs' sizes, as the lowering pass gives them."""
    S = onnx_export.Stmt
    return [
        S("concat", ("x", "h"), "xh", sizes=(features + H,)),
        S("matmul", ("weight", "xh"), "a", sizes=(2 * H,)),
        S("layer_norm", ("a", "ln_weight", "ln_bias"), "a", {"eps": 1e-5}, (2 * H,)),
        S("chunk", ("a",), ("u", "v"), {"n": 2}, (H, H)),
        S("sigmoid", ("u",), "gate", sizes=(H,)),
        S("neg", ("v",), "nv", sizes=(H,)),
        S("relu", ("nv",), "r", sizes=(H,)),
        S("sub", (1.0, "gate"), "keep", sizes=(H,)),
        S("mul", ("keep", "c"), "kc", sizes=(H,)),
        S("mul", ("gate", "r"), "gr", sizes=(H,)),
        S("add", ("kc", "gr"), "c", sizes=(H,)),
        S("layer_norm", ("c",), "cn", sizes=(H,)),
        S("tanh", ("cn",), "t", sizes=(H,)),
        S("div", ("t", 2.0), "half", sizes=(H,)),
        S("maximum", ("half", "h"), "m", sizes=(H,)),
        S("abs", ("m",), "am", sizes=(H,)),
        S("neg", ("am",), "nm", sizes=(H,)),
        S("exp", ("nm",), "e", sizes=(H,)),
        S("sub", ("e", 1.0), "h", sizes=(H,)),
        S("matmul", ("proj", "x"), "px", sizes=(H,)),  # reads x only: computed before the loop
        S("add", ("h", "px"), "h", sizes=(H,)),
    ]


def _reference(params, x, h, c, reverse):
    import torch.nn.functional as F

    p = {k: torch.from_numpy(v) for k, v in params.items()}
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    ys = [None] * x.shape[0]
    for t in steps:
        a = torch.cat([x[t], h], -1) @ p["weight"].T
        a = F.layer_norm(a, a.shape[-1:], p["ln_weight"], p["ln_bias"], 1e-5)
        u, v = a.chunk(2, -1)
        gate = torch.sigmoid(u)
        c = (1 - gate) * c + gate * torch.relu(-v)
        half = torch.tanh(F.layer_norm(c, c.shape[-1:], eps=1e-5)) / 2
        h = torch.exp(-torch.abs(torch.maximum(half, h))) - 1 + x[t] @ p["proj"].T
        ys[t] = h
    return torch.stack(ys), h, c


@pytest.mark.parametrize("opset", [14, 17, 18])
@pytest.mark.parametrize("reverse", [False, True])
def test_step_statements_equal_a_torch_loop(opset, reverse):
    rng = np.random.default_rng(opset + reverse)
    features, H = 3, 4
    params = {"weight": rng.standard_normal((2 * H, features + H)).astype(np.float32),
              "ln_weight": rng.standard_normal(2 * H).astype(np.float32),
              "ln_bias": rng.standard_normal(2 * H).astype(np.float32),
              "proj": rng.standard_normal((H, features)).astype(np.float32)}
    model = recurrence_model(_layer_norm_cell(), x_size=features,
                                         states=[("h", H), ("c", H)], params=params,
                                         opset=opset, reverse=reverse)
    onnx_export.validate(model)
    scan = next(n for n in model.graph.node if n.op_type == "Scan")
    body = onnx.helper.get_attribute_value(
        next(a for a in scan.attribute if a.name == "body"))
    # `proj @ x` was hoisted out of the loop: one MatMul per step, one before the loop.
    assert [n.op_type for n in body.node].count("MatMul") == 1
    assert [n.op_type for n in model.graph.node].count("MatMul") == 1
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    for T, B in SIZES:
        x = rng.standard_normal((T, B, features)).astype(np.float32)
        h0 = rng.standard_normal((B, H)).astype(np.float32)
        c0 = rng.standard_normal((B, H)).astype(np.float32)
        y, h_n, c_n = session.run(["y", "h_n", "c_n"], {"x": x, "h0": h0, "c0": c0})
        expected = _reference(params, torch.from_numpy(x), torch.from_numpy(h0),
                              torch.from_numpy(c0), reverse)
        for got, want in zip((y, h_n, c_n), expected):
            np.testing.assert_allclose(got, want.numpy(), atol=TOLERANCE, rtol=1e-5)
