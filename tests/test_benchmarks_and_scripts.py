"""Smoke tests: every benchmark runs once at tiny sizes (no timing is asserted), and the
fuzz script runs, saves what fails, and replays it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT))


@pytest.mark.slow
def test_benchmarks_quick_run(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "results.md"
    run = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    text = out.read_text()
    for heading in ("## 1. CLI start-up", "## 2. Scaling", "## 3. Generation",
                    "## 4. Generated models, fused", "## 5. Generated models, explicit",
                    "## 9. Padded batches", "## 12. torch.compile"):
        assert heading in text
    from benchmarks.onnx_rows import available

    assert ("## 6. Exported ONNX" in text) == available()
    assert "shows torch or jinja2: neither" in text
    assert "Machine: cpu:" in text


def test_flop_count_matches_the_usual_formula():
    from benchmarks.models import flops

    assert flops("lstm", T=100, B=64, inputs=512, H=512, layers=1) == 8 * 512 * 1024 * 100 * 64
    assert flops("gru", T=1, B=1, inputs=20, H=50, layers=2) == 6 * 50 * 70 + 6 * 50 * 100


def test_fuzz_script_runs_and_saves_failures(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    import fuzz

    counts = fuzz.run(minutes=0.02, out=tmp_path / "none", seed=3)
    assert counts["inputs"] > 0 and counts["crashes"] == counts["hangs"] == 0
    assert not (tmp_path / "none").exists()

    def broken(data, compile_generated=True):
        raise RuntimeError("planted defect")

    monkeypatch.setitem(fuzz.SURFACES, "spec", fuzz.SURFACES["spec"]._replace(exercise=broken))
    counts = fuzz.run(minutes=0.005, out=tmp_path / "found", seed=4)
    assert counts["crashes"] == counts["inputs"] > 0
    saved = sorted((tmp_path / "found").glob("crash-*.rnn"))
    assert saved and "planted defect" in saved[0].with_suffix(".txt").read_text()
    monkeypatch.undo()
    assert fuzz.replay(tmp_path / "found") == 0  # the inputs themselves are handled fine


def test_fuzz_command_line(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "fuzz.py"), "--minutes",
                          "0.02", "--seed", "5", "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"crashes": 0' in run.stdout


def test_fuzz_output_surface_runs_clean_and_its_oracle_catches_planted_defects(
        tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    import fuzz

    import rnnspec.tools.files as files

    counts = fuzz.run(minutes=0.05, out=tmp_path / "none", seed=3, surface="output")
    assert counts["inputs"] > 20 and counts["crashes"] == counts["hangs"] == 0, counts
    assert counts.get("refused", 0) > 0 and counts.get("written", 0) > 0, counts
    assert not (tmp_path / "none").exists()

    # a guard that forgets "rnnspec did not write this": foreign files clobbered
    monkeypatch.setattr(files, "check_output",
                        lambda path, **kw: files.output_target(path, kw.get("inputs", ())))
    counts = fuzz.run(minutes=0.05, out=tmp_path / "clobbers", seed=4, surface="output")
    assert counts["crashes"] > 0, counts
    texts = [p.read_text() for p in (tmp_path / "clobbers").glob("crash-*.txt")]
    assert any("exit 0 writing" in text for text in texts), texts[:1]
    monkeypatch.undo()

    # a guard blind to FIFOs and devices: a FIFO opened (a hang), a device replaced
    monkeypatch.setattr(files, "special_kind", lambda path, status=None: None)
    monkeypatch.setitem(fuzz.SURFACES, "output", fuzz.SURFACES["output"]._replace(timeout=2))
    counts = fuzz.run(minutes=0.1, out=tmp_path / "blind", seed=5, surface="output")
    assert counts["hangs"] + counts["crashes"] > 0, counts
    assert sorted((tmp_path / "blind").glob("*.output"))
    monkeypatch.undo()
    assert fuzz.replay(tmp_path / "blind", "output") == 0  # handled by the real guard
