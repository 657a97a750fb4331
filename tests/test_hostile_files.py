"""Hostile checkpoints and output paths (issue 19): FIFOs, devices, huge layer indices,
deep JSON, bad dtypes and offsets, truncated pickles, draw -o over foreign files. Every CLI
run is a subprocess with a timeout, so a regression fails instead of hanging."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import cli_process
import pytest
from conftest import ROOT

SPEC = "stack s {\n    input_size = 4\n    lstm(hidden_size = 8)\n}\n"


def rnnspec(*args, cwd=None, timeout=60):
    return cli_process.run(*args, cwd=cwd, timeout=timeout)


def safetensors(path, header: dict | bytes, data: bytes = b""):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "s.rnn"
    path.write_text(SPEC)
    return path


def commands(spec, checkpoint, tmp_path):
    return [("check", spec, "--weights", checkpoint), ("infer", checkpoint),
            ("export", spec, "--weights", checkpoint, "-o", tmp_path / "out.onnx")]


def test_a_fifo_as_checkpoint_is_refused_at_once(spec, tmp_path):
    fifo = tmp_path / "w.safetensors"
    os.mkfifo(fifo)
    for command in commands(spec, fifo, tmp_path):
        done = rnnspec(*command, timeout=30)
        assert done.returncode == 2, (command, done.stderr)
        assert "FIFO" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_dev_zero_is_a_device_not_an_empty_file(spec, tmp_path):
    for command in commands(spec, "/dev/zero", tmp_path)[:2]:
        done = rnnspec(*command, timeout=30)
        assert done.returncode == 2
        assert "device" in done.stderr and "empty" not in done.stderr, done.stderr
        assert "-8" not in done.stderr


@pytest.mark.parametrize("index", [10**6, 10**20])
def test_a_huge_layer_index_is_answered_quickly(spec, tmp_path, index):
    path = safetensors(tmp_path / "w.safetensors", {
        f"weight_ih_l{index}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}})
    assert path.stat().st_size < 300
    for command in commands(spec, path, tmp_path)[:2]:
        done = rnnspec(*command, timeout=30)
        assert done.returncode == 2, done.stderr
        assert "names layer" in done.stderr, done.stderr


def test_deeply_nested_json_header_is_an_error_not_a_recursion(spec, tmp_path):
    path = safetensors(tmp_path / "w.safetensors", b"[" * 100_000 + b"]" * 100_000)
    for command in commands(spec, path, tmp_path)[:2]:
        done = rnnspec(*command, timeout=30)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and "nests JSON" in done.stderr, done.stderr


@pytest.mark.parametrize("dtype", ["F99", "FLOAT32"])
def test_dtypes_that_do_not_exist_are_refused(tmp_path, dtype):
    from rnnspec.tools.checkpoints.read import CheckpointError, read_checkpoint

    path = safetensors(tmp_path / "w.safetensors", {
        "weight_ih_l0": {"dtype": dtype, "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    with pytest.raises(CheckpointError, match=f"dtype `{dtype}`"):
        read_checkpoint(str(path))


def test_overlapping_offsets_are_refused(tmp_path):
    from rnnspec.tools.checkpoints.read import CheckpointError, read_checkpoint

    entry = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    path = safetensors(tmp_path / "w.safetensors",
                       {"weight_ih_l0": entry, "weight_hh_l0": entry}, b"\0" * 4)
    with pytest.raises(CheckpointError, match="overlaps"):
        read_checkpoint(str(path))


def test_a_truncated_legacy_torch_file_is_called_truncated(tmp_path):
    torch = pytest.importorskip("torch")
    from rnnspec.tools.checkpoints.read import CheckpointError, read_checkpoint

    whole = tmp_path / "whole.pt"
    torch.save({"weight_ih_l0": torch.zeros(32, 4)}, whole, _use_new_zipfile_serialization=False)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:60])
    with pytest.raises(CheckpointError, match="truncated") as caught:
        read_checkpoint(str(cut))
    assert "refuses" not in str(caught.value)


def test_a_nested_tensor_checkpoint_is_an_error(spec, tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "n.pt"
    nested = torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])
    torch.save({"weight_ih_l0": nested}, path)
    (message,) = said_by_each(spec, path, tmp_path)  # check, infer and export alike
    assert "nested" in message, message


@pytest.mark.parametrize("command", ["generate", "draw"])
def test_a_fifo_as_output_is_refused_without_opening_it(spec, tmp_path, command):
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    for extra in ([], ["--force"]):
        done = rnnspec(command, spec, "-o", fifo, *extra, timeout=30)
        assert done.returncode == 2, done.stderr
        assert "FIFO" in done.stderr, done.stderr
    assert (tmp_path / "out").is_fifo()


def test_draw_does_not_overwrite_a_foreign_file_or_its_spec(spec, tmp_path):
    mine = tmp_path / "notes.svg"
    mine.write_text("hand-written\n")
    done = rnnspec("draw", spec, "-o", mine, timeout=60)
    assert done.returncode == 2 and "refusing" in done.stderr, done.stderr
    assert mine.read_text() == "hand-written\n"
    done = rnnspec("draw", spec, "-o", spec, "--force", timeout=60)
    assert done.returncode == 2 and spec.read_text() == SPEC
    out = tmp_path / "pic.svg"
    assert rnnspec("draw", spec, "-o", out, timeout=60).returncode == 0
    assert rnnspec("draw", spec, "-o", out, timeout=60).returncode == 0  # its own: replaced
    assert rnnspec("draw", spec, "-o", mine, "--force", timeout=60).returncode == 0
    assert mine.read_text().startswith("<?xml")


def _unusable_values():
    torch = pytest.importorskip("torch")
    return {
        "meta": torch.zeros(32, 4, device="meta"),
        "sparse": torch.zeros(32, 4).to_sparse(),
        "quantised": torch.quantize_per_tensor(torch.zeros(32, 4), 0.1, 0, torch.qint8),
        "complex": torch.zeros(32, 4, dtype=torch.complex64),
        "tensor": None,  # a non-tensor value under a matching key
    }


def said_by_each(spec, checkpoint, tmp_path) -> set[str]:
    """The one-line error of check --weights, infer and export on `checkpoint` (exit 2,
    no traceback, nothing written)."""
    said = set()
    for command in commands(spec, checkpoint, tmp_path):
        done = rnnspec(*command, timeout=120)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        (line,) = [x for x in done.stderr.splitlines() if "error" in x]
        said.add(line.split("error: ", 1)[1])
    assert not (tmp_path / "out.onnx").exists()
    return said


@pytest.mark.parametrize("kind", ["meta", "sparse", "quantised", "complex", "tensor"])
def test_weights_no_command_can_use_are_refused_alike(spec, tmp_path, kind):
    torch = pytest.importorskip("torch")
    state = {k: v.detach() for k, v in torch.nn.LSTM(4, 8).state_dict().items()}
    state["weight_ih_l0"] = _unusable_values()[kind] if kind != "tensor" else "oops"
    path = tmp_path / "w.pt"
    torch.save({"model": state}, path)
    (message,) = said_by_each(spec, path, tmp_path)  # the same from all three
    assert "weight_ih_l0" in message and kind.rstrip("d") in message, message


def test_non_string_keys_are_refused_alike(spec, tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "w.pt"
    torch.save({0: torch.zeros(1), "weight_ih_l0": torch.zeros(32, 4)}, path)
    (message,) = said_by_each(spec, path, tmp_path)
    assert "not a string" in message, message


def test_complex_safetensors_are_refused_alike(spec, tmp_path):
    path = safetensors(tmp_path / "w.safetensors", {
        "weight_ih_l0": {"dtype": "C64", "shape": [32, 4], "data_offsets": [0, 1024]}},
        b"\0" * 1024)
    (message,) = said_by_each(spec, path, tmp_path)
    assert "complex" in message and "weight_ih_l0" in message, message


def test_a_safetensors_checkpoint_exports_its_own_bytes(spec, tmp_path):
    """export reads safetensors data itself, at the offsets the validated header gives."""
    torch = pytest.importorskip("torch")
    save_file = pytest.importorskip("safetensors.torch").save_file
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(3)
    lstm = torch.nn.LSTM(4, 8).eval()
    state = {k: v.detach().to(torch.float16 if "bias" in k else torch.float64)
             for k, v in lstm.state_dict().items()}
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    out = tmp_path / "out.onnx"
    done = rnnspec("export", spec, "--weights", path, "-o", out, timeout=120)
    assert done.returncode == 0, done.stderr
    lstm.load_state_dict({k: v.float() for k, v in state.items()})
    x = torch.randn(5, 2, 4)
    with torch.no_grad():
        expected = lstm(x)[0].numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x.numpy()})[0]
    assert abs(got - expected).max() < 1e-5


_WRITER = """
import sys
from rnnspec.tools.files import replace_atomically
print("ready", flush=True)
for i in range(10**9):
    replace_atomically(sys.argv[1], (b"A" if i % 2 else b"B") * (4_000_000 + i % 2))
"""


def test_a_killed_writer_leaves_no_temporary_file_and_no_torn_target(tmp_path):
    """SIGKILL at random moments of a writer replacing a 4 MB file over and over: after
    the next write no `.rnnspec-*.tmp` is left, and the target is always one whole
    version (issue 19)."""
    import random
    import time

    from rnnspec.tools.files import replace_atomically

    target = tmp_path / "big.bin"
    versions = {b"A" * 4_000_001, b"B" * 4_000_000}
    previous = b"old"
    target.write_bytes(previous)
    chance = random.Random(19)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for run in range(30):
        child = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], env=env,
                                 stdout=subprocess.PIPE)
        assert child.stdout.readline() == b"ready\n"
        time.sleep(chance.uniform(0, 0.1))
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
        content = target.read_bytes()
        assert content == previous or content in versions, (run, len(content))
        previous = f"next {run}".encode()
        replace_atomically(str(target), previous)  # the next write, by a live process
        left = [p.name for p in tmp_path.iterdir() if p.name != "big.bin"]
        assert not left, (run, left)
        assert target.read_bytes() == previous


def test_a_write_removes_only_dead_writers_temporary_files(tmp_path, monkeypatch):
    """Where there is no O_TMPFILE the temporary file is named; what a killed writer left
    beside the same target (its pid gone) is removed by the next write, nothing else."""
    from rnnspec.tools import files

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".rnnspec-out.txt.{dead}.k1ll3d.tmp"
    alive = tmp_path / f".rnnspec-out.txt.{os.getppid()}.wr1t1ng.tmp"
    other = tmp_path / f".rnnspec-other.txt.{dead}.k1ll3d.tmp"
    for path in (stale, alive, other):
        path.write_text("partial")
    monkeypatch.delattr(files.os, "O_TMPFILE", raising=False)
    files.replace_atomically(str(tmp_path / "out.txt"), "whole\n")
    assert (tmp_path / "out.txt").read_text() == "whole\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [alive.name, other.name, "out.txt"])


@pytest.mark.parametrize("header", [
    {"weight_ih_l0": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}},
    {"weight_ih_l0": {"dtype": "FLOAT32", "shape": [1], "data_offsets": [0, 4]}},
    {"weight_ih_l0": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
     "weight_hh_l0": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
], ids=["F99", "FLOAT32", "overlapping"])
def test_headers_safetensors_refuses_are_refused_by_every_command(spec, tmp_path, header):
    path = safetensors(tmp_path / "w.safetensors", header, b"\0" * 4)
    (message,) = said_by_each(spec, path, tmp_path)  # check, infer and export alike
    assert "dtype `F" in message or "overlaps" in message, message


def test_dev_zero_is_a_device_for_export_too(spec, tmp_path):
    done = rnnspec(*commands(spec, "/dev/zero", tmp_path)[2], timeout=30)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "device" in done.stderr and "empty" not in done.stderr, done.stderr
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("keep", [0.05, 0.3, 0.6, 0.99])
def test_a_legacy_torch_file_cut_anywhere_is_called_truncated(spec, tmp_path, keep):
    torch = pytest.importorskip("torch")
    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.LSTM(4, 8).state_dict(), whole, _use_new_zipfile_serialization=False)
    data = whole.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[:max(2, int(len(data) * keep))])
    for message in said_by_each(spec, cut, tmp_path):
        assert "truncated" in message and "refus" not in message, message
