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
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            UNPICKLE,
            str(tmp_path / "model.pt"),
            str(tmp_path / "x.pt"),
            str(tmp_path / "y.pt"),
        ],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == module.__name__
    assert torch.equal(torch.load(tmp_path / "y.pt"), model(x)[0])


def test_two_specs_with_one_stem_get_different_module_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "net.rnn").write_text(
        "stack S {\n  input_size = 3\n  r = lstm(hidden_size = 4)\n}\n"
    )
    (tmp_path / "b" / "net.rnn").write_text(
        "stack S {\n  input_size = 3\n  r = gru(hidden_size = 4)\n}\n"
    )
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
def test_autocast_gives_every_backend_the_same_dtypes_and_float32_numbers(name, tmp_path, device):
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


# ------------------------------------------------------------------------------- DDP

DDP_SPECS = {
    "explicit": "stack S {\n    input_size = 3\n"
    "    lstm(hidden_size = 4, num_layers = 2, bidirectional = true)\n}\n",
    "user_cell": AUTOCAST_SPECS["user_cell"],
}


def _ddp_loss(output: torch.Tensor, batch: int) -> torch.Tensor:
    """A per-sequence mean: DDP averages the ranks' gradients, so each rank divides by its
    own share of the batch and the average is the full batch's gradient."""
    return output.square().sum() / batch


def _ddp_worker(rank: int, world: int, port: int, folder: str) -> None:
    import datetime

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60)
    )
    try:
        x, lengths = torch.load(os.path.join(folder, "batch.pt"))
        share = x.shape[1] // world
        part = slice(rank * share, (rank + 1) * share)
        grads = {}
        for name in sorted(DDP_SPECS):
            module = rnnspec.load(os.path.join(folder, f"{name}.rnn"), backend="explicit")
            model = module.S()
            model.load_state_dict(torch.load(os.path.join(folder, f"{name}.pt")))
            ddp = DistributedDataParallel(model)
            output, _ = ddp(x[:, part], lengths=lengths[part])
            _ddp_loss(output, share).backward()
            grads[name] = {key: p.grad for key, p in model.named_parameters()}
        torch.save(grads, os.path.join(folder, f"grads{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_over_gloo_with_two_processes_gives_the_full_batch_gradients(tmp_path):
    """DistributedDataParallel (gloo, 2 local processes, each half of a padded batch) gives
    the gradients of one process on the whole batch: a written-out block and a user cell."""
    import time

    import torch.multiprocessing as mp

    torch.manual_seed(0)
    x, lengths = torch.randn(7, 6, 3), torch.tensor([7, 2, 5, 0, 7, 3])
    torch.save((x, lengths), tmp_path / "batch.pt")
    want = {}
    for name, text in DDP_SPECS.items():
        (tmp_path / f"{name}.rnn").write_text(text)
        model = rnnspec.load(str(tmp_path / f"{name}.rnn"), backend="explicit").S()
        torch.save(model.state_dict(), tmp_path / f"{name}.pt")
        output, _ = model(x, lengths=lengths)
        _ddp_loss(output, x.shape[1]).backward()
        want[name] = {key: p.grad for key, p in model.named_parameters()}
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _environment()["PYTHONPATH"]  # the workers import this file
    try:
        context = mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    deadline = time.monotonic() + 180  # never hang: a stuck rendezvous fails the test
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the DDP workers did not finish within 180 s")
    for rank in range(2):
        got = torch.load(tmp_path / f"grads{rank}.pt")
        assert sorted(got) == sorted(want)
        for name in want:
            assert sorted(got[name]) == sorted(want[name])
            for key, grad in want[name].items():
                assert grad.abs().max() > 0, (name, key)  # every parameter takes part
                torch.testing.assert_close(got[name][key], grad, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------- quantisation

# what each backend's quantize_dynamic leaves in floating point, with a warning
FLOAT_KEPT = {("fused", "rnn"): "an int8 RNN", ("fused", "lstm_proj"): "projections"}


@pytest.mark.parametrize("backend", ["fused", "explicit"])
@pytest.mark.parametrize("name", sorted(AUTOCAST_SPECS))
def test_quantize_dynamic_gives_int8_weights_close_to_float(name, backend, tmp_path):
    """`model.quantize_dynamic()`: a copy with int8 weights and activations quantised at
    each call, within 0.05 of float32 (outputs of size about 0.5), padded or not; the
    model itself is left as it was; a written-out block keeps its state-dict keys."""
    import warnings

    torch.manual_seed(0)
    model = _loaded(AUTOCAST_SPECS[name], backend, tmp_path).S().eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    kept = FLOAT_KEPT.get((backend, name))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantized = model.quantize_dynamic()
    said = [str(w.message) for w in caught if "stays in floating point" in str(w.message)]
    assert len(said) == (kept is not None) and all(kept in text for text in said), said
    x = torch.randn(7, 4, 3)
    for lengths in (None, torch.tensor([7, 3, 0, 5])):
        with torch.no_grad():
            want, got = _leaves(model(x, lengths=lengths)), _leaves(quantized(x, lengths=lengths))
        worst = max((a - b).abs().max().item() for a, b in zip(got, want))
        assert worst < 0.05, worst
        if kept is None:
            assert worst > 0, "quantize_dynamic changed nothing"
        else:
            assert worst == 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    written_out = [m for m in quantized.modules() if hasattr(m, "quantize_int8")]
    assert all(m.int8 for m in written_out)
    if backend == "explicit" and name != "network":  # torch.ao's Linear has its own keys
        assert list(quantized.state_dict()) == list(before)


@pytest.mark.parametrize("backend", ["fused", "explicit"])
def test_torch_quantize_dynamic_says_what_it_leaves_in_float(backend, tmp_path):
    """torch.ao.quantization.quantize_dynamic cannot swap a written-out block: it warns and
    names the method to call (the fused backend's nn.LSTM it quantises, without a word)."""
    import warnings

    model = _loaded(
        AUTOCAST_SPECS["user_cell"] + AUTOCAST_SPECS["lstm"].replace(" S ", " L "),
        backend,
        tmp_path,
    )
    specs = {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.ao.quantization.quantize_dynamic(model.L(), specs)
        lstm_said = [str(w.message) for w in caught if "written-out" in str(w.message)]
        torch.ao.quantization.quantize_dynamic(model.S(), specs)
        said = [str(w.message) for w in caught if "written-out" in str(w.message)]
    assert len(lstm_said) == (backend == "explicit")
    assert len(said) == 1 + (backend == "explicit")
    assert "`_CellNormed`" in said[-1] and "quantize_dynamic()" in said[-1]
    with warnings.catch_warnings():  # after the stack's own quantize_dynamic: no warning
        warnings.simplefilter("error", UserWarning)
        torch.ao.quantization.quantize_dynamic(model.S().quantize_dynamic(), specs)


# -------------------------------------------------------------------------- TorchScript


@pytest.mark.parametrize("backend", ["fused", "explicit"])
@pytest.mark.parametrize("name", ["lstm", "user_cell", "network"])
def test_torchscript_is_refused_with_a_clear_error(name, backend, tmp_path):
    """torch.jit.script (deprecated) does not take generated modules: a TypeError that says
    what to use instead, on every backend (docs/using.md)."""
    import warnings

    model = _loaded(AUTOCAST_SPECS[name], backend, tmp_path).S()
    with warnings.catch_warnings(), pytest.raises(TypeError, match="torch.compile, torch.export"):
        warnings.simplefilter("ignore")  # torch.jit.script's deprecation warning
        torch.jit.script(model)
