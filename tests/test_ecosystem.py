"""Generated modules in the PyTorch ecosystem: pickling, autocast, quantisation, DDP."""

from __future__ import annotations

import io
import multiprocessing
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import rnnspec  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PADDED = os.path.join(ROOT, "examples", "padded.rnn")

UNPICKLE = """
import sys, torch
model = torch.load(sys.argv[1], weights_only=False)
x = torch.load(sys.argv[2])
torch.save(model.eval()(x)[0], sys.argv[3])
print(type(model).__module__)
"""


def _environment():
    env = dict(os.environ)
    paths = [ROOT, os.path.join(ROOT, "tests"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(paths)  # a spawned worker imports this file
    return env


@pytest.mark.parametrize("backend", ["fused", "explicit"])
def test_a_loaded_model_unpickles_in_a_fresh_process_without_its_spec(tmp_path, backend):
    spec = tmp_path / "padded.rnn"
    spec.write_text(open(PADDED).read())
    module = rnnspec.load(str(spec), backend=backend)
    model = module.Encoder().eval()
    x = torch.randn(2, 5, 40)
    torch.save(model, tmp_path / "model.pt")
    torch.save(x, tmp_path / "x.pt")
    spec.unlink()  # the pickle carries the generated source
    done = subprocess.run([sys.executable, "-c", UNPICKLE, str(tmp_path / "model.pt"),
                           str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                          capture_output=True, text=True, env=_environment(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == module.__name__
    assert torch.equal(torch.load(tmp_path / "y.pt"), model(x)[0])


def test_two_specs_with_one_stem_get_different_module_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "net.rnn").write_text("stack S {\n  input_size = 3\n"
                                           "  r = lstm(hidden_size = 4)\n}\n")
    (tmp_path / "b" / "net.rnn").write_text("stack S {\n  input_size = 3\n"
                                           "  r = gru(hidden_size = 4)\n}\n")
    first = rnnspec.load(str(tmp_path / "a" / "net.rnn"))
    second = rnnspec.load(str(tmp_path / "b" / "net.rnn"))
    assert first.__name__ != second.__name__
    assert sys.modules[first.__name__] is first and sys.modules[second.__name__] is second
    again = rnnspec.load(str(tmp_path / "a" / "net.rnn"))
    assert again.__name__ == first.__name__
    for module in (first, second):  # each class pickles, in memory, as its own
        copy = torch.load(io.BytesIO(_saved(module.S())), weights_only=False)
        assert type(copy).__name__ == "S" and type(copy).__module__ == module.__name__


def _saved(model) -> bytes:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    return buffer.getvalue()


def _run_in_worker(model, x, path):
    torch.save(model.eval()(x)[0], path)


@pytest.mark.slow
def test_a_loaded_model_goes_to_a_spawned_worker(tmp_path):
    module = rnnspec.load(PADDED, backend="explicit")
    model = module.Encoder().eval()
    x = torch.randn(2, 5, 40)
    context = multiprocessing.get_context("spawn")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _environment()["PYTHONPATH"]
    try:
        worker = context.Process(target=_run_in_worker, args=(model, x, tmp_path / "y.pt"))
        worker.start()
        worker.join(timeout=120)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    assert worker.exitcode == 0
    assert torch.equal(torch.load(tmp_path / "y.pt"), model(x)[0])


# ------------------------------------------------------------------------------- autocast

AUTOCAST_SPECS = {
    "lstm": "stack S {\n    input_size = 3\n    lstm(hidden_size = 4)\n}\n",
    "gru": "stack S {\n    input_size = 3\n    gru(hidden_size = 4, num_layers = 2)\n}\n",
    "rnn": "stack S {\n    input_size = 3\n    rnn(hidden_size = 4, bidirectional = true)\n}\n",
    "lstm_proj": "stack S {\n    input_size = 3\n    lstm(hidden_size = 5, proj_size = 2)\n}\n",
    "user_cell": """cell Normed {
    state h[hidden_size], c[hidden_size]
    param weight_ih[4 * hidden_size, input_size]
    param weight_hh[4 * hidden_size, hidden_size]
    param bias[4 * hidden_size] = zeros

    gi, gf, gg, go = chunk(layer_norm(weight_ih @ x + weight_hh @ h) + bias, 4)
    c = sigmoid(gf) * c + sigmoid(gi) * tanh(gg)
    h = sigmoid(go) * tanh(c)
}
stack S {
    input_size = 3
    Normed(hidden_size = 4, bidirectional = true)
}
""",
    "network": """stack S {
    input_size = 3
    enc = lstm(hidden_size = 4, bidirectional = true)
    head = linear(5)
    out = gru(hidden_size = 3)
}
""",
}


def _loaded(text: str, backend: str, tmp_path):
    path = tmp_path / f"{backend}.rnn"
    path.write_text(text)
    return rnnspec.load(str(path), backend=backend)


def _leaves(value) -> list:
    return [leaf for leaf in torch.utils._pytree.tree_leaves(value) if leaf is not None]


@pytest.mark.parametrize("name", sorted(AUTOCAST_SPECS))
def test_autocast_gives_every_backend_the_same_dtypes_and_float32_numbers(
    name, tmp_path, device
):
    """Under autocast a recurrent block's output and final states are in autocast's dtype
    on every backend (torch.nn on CPU gives float32 for a GRU and a packed LSTM), and its
    numbers are float32's within that dtype's precision."""
    low = torch.bfloat16 if device == "cpu" else torch.float16
    torch.manual_seed(0)
    models = {}
    for backend in ("fused", "explicit"):
        models[backend] = _loaded(AUTOCAST_SPECS[name], backend, tmp_path).S().to(device)
    models["explicit"].load_state_dict(models["fused"].state_dict())
    x = torch.randn(6, 3, 3, device=device)
    for lengths in (None, torch.tensor([6, 2, 0]), torch.tensor([4, 6, 1])):
        for backend, model in models.items():
            want = _leaves(model(x, lengths=lengths))  # float32
            with torch.autocast(device, dtype=low):
                got = _leaves(model(x, lengths=lengths))
            assert [leaf.dtype for leaf in got] == [low] * len(want), (backend, lengths)
            for a, b in zip(got, want):
                torch.testing.assert_close(a.float(), b, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("name", ["lstm", "gru", "lstm_proj"])
def test_autocast_states_fed_back_to_step_stay_in_autocast_dtype(name, tmp_path):
    torch.manual_seed(0)
    for backend in ("fused", "explicit"):
        model = _loaded(AUTOCAST_SPECS[name], backend, tmp_path).S()
        x = torch.randn(2, 3, 3)
        want = model(x)[0][1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            first, states = model.step(x[0])
            second, states = model.step(x[1], states)  # bf16 states in a float32 model
        assert {leaf.dtype for leaf in _leaves((first, second, states))} == {torch.bfloat16}
        torch.testing.assert_close(second.float(), want, atol=3e-2, rtol=3e-2)


def test_autocast_compiled_scan_carries_float32_states(tmp_path):
    """The traced loop (torch's scan) needs each step's states in one dtype: under autocast
    an RNN step's matmul gives bf16, its states stay float32 from step to step."""
    module = _loaded(AUTOCAST_SPECS["rnn"], "explicit", tmp_path)
    model = module.S().eval()
    x, lengths = torch.randn(6, 3, 3), torch.tensor([6, 2, 4])
    with torch.no_grad():
        want = model(x, lengths=lengths)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch._dynamo.reset()
            got = torch.compile(model, fullgraph=True, dynamic=True)(x, lengths=lengths)
    for a, b in zip(_leaves(got), _leaves(want)):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a.float(), b, atol=3e-2, rtol=3e-2)
