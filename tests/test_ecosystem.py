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
