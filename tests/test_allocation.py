"""Sizes that torch cannot allocate are E024 at `check` (issue 19), merely huge ones stay
warning W002, and `export` of a stack that passes check but cannot be allocated exits 2
with one line (never an allocator's traceback). Each refusal is checked against torch
itself: on the meta device (which allocates nothing) or with an allocation that fails at
once (far beyond any address space: no memory is touched)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from rnnspec.check.checker import ADDRESS_SPACE_BYTES, check_text

HUGE = 100_000_000_000  # issue 19's `lstm(hidden_size = 100000000000)`


def _stack(block: str, input_size: int = 3) -> str:
    return f"stack Net {{\n    input_size = {input_size}\n    {block}\n}}\n"


def _codes(text: str) -> list[tuple[str, int]]:
    return [(d.code, d.span.line) for d in check_text(text, "spec.rnn").diagnostics]


def _overcommit_refuses() -> bool:
    """Whether an allocation far beyond the machine fails at once (Linux's heuristic or
    strict overcommit), so that asking torch for one is harmless."""
    try:
        return Path("/proc/sys/vm/overcommit_memory").read_text().strip() in ("0", "2")
    except OSError:
        return False


def test_more_elements_than_int64_is_an_error_as_torch_refuses_it():
    torch = pytest.importorskip("torch")
    result = check_text(_stack(f"lstm(hidden_size = {HUGE})"), "spec.rnn")
    (problem,) = result.diagnostics
    assert (problem.code, problem.span.line, problem.span.column) == ("E024", 3, 5)
    assert "`weight_hh_l0` of `lstm0`" in problem.message and not result.ok
    with pytest.raises(RuntimeError, match="overflow"):
        torch.nn.LSTM(3, HUGE, device="meta")  # allocates nothing, still refuses


def test_more_bytes_than_an_address_space_is_an_error_as_torch_refuses_it():
    """`weight_ih_l0` is [4, input_size]: one element past 2^48 bytes in float32."""
    torch = pytest.importorskip("torch")
    wide = ADDRESS_SPACE_BYTES // 16 + 1
    (problem,) = check_text(_stack("lstm(hidden_size = 1)", wide), "spec.rnn").diagnostics
    assert problem.code == "E024" and "`weight_ih_l0`" in problem.message
    if not _overcommit_refuses():
        pytest.skip("this machine's overcommit policy could grant the allocation")
    with pytest.raises(RuntimeError, match="allocate"):
        torch.empty((4, wide), dtype=torch.float32)


def test_just_below_the_address_space_is_a_warning_only():
    wide = ADDRESS_SPACE_BYTES // 16 - 8
    assert _codes(_stack("lstm(hidden_size = 1)", wide)) == [("W002", 1)]


def test_a_stack_whose_tensors_together_exceed_the_address_space_is_an_error():
    # each weight is 58 TiB (under 256 TiB), eight layers of them are not
    text = _stack("lstm(hidden_size = 2000000, num_layers = 8)")
    result = check_text(text, "spec.rnn")
    (problem,) = result.diagnostics
    assert (problem.code, problem.span.line) == ("E024", 1)
    assert "the parameters of stack `Net`" in problem.message


def test_merely_huge_stays_a_warning():
    assert _codes(_stack("lstm(hidden_size = 300000)")) == [("W002", 1)]


def test_layers_count_too():
    text = _stack(f"conv = conv1d({HUGE}, 3)\n    gru(hidden_size = 4)", input_size=HUGE)
    (problem,) = check_text(text, "spec.rnn").diagnostics
    assert problem.code == "E024" and "`conv`" in problem.message


# ----------------------------------------------------------------------------- export


def _export(tmp_path, text: str, limit_mib: int | None = None):
    """`rnnspec export` in a subprocess, its address space capped `limit_mib` above what
    torch, onnx and rnnspec take once imported (so that an allocation fails for real)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    spec = tmp_path / "spec.rnn"
    spec.write_text(text, encoding="utf-8")
    script = textwrap.dedent(f"""
        import resource, sys
        import numpy, onnx, torch  # noqa: F401 - mapped before the cap
        import rnnspec.backends.onnx.export  # noqa: F401
        from rnnspec import cli
        limit = {limit_mib}
        if limit is not None:
            size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
                        if line.startswith("VmSize:"))
            cap = size + limit * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        sys.exit(cli.main(["export", {str(spec)!r}, "-o", {str(tmp_path / "out.onnx")!r}]))
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_export_refuses_a_stack_over_two_gib_before_allocating(tmp_path):
    """17.9 GiB of parameters: refused with 256 MiB of address space to spare, so nothing
    was allocated first."""
    run = _export(tmp_path, _stack("lstm(hidden_size = 20000, num_layers = 2)"), 256)
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("error")]
    assert lines == ["error: the parameters of stack `Net` take 17.9 GiB in float32, more "
                     "than 2 GiB, the most one ONNX protobuf file can hold"]
    assert "Traceback" not in run.stderr and not (tmp_path / "out.onnx").exists()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_export_that_cannot_allocate_exits_2_with_one_line(tmp_path):
    """977 MiB of parameters (under ONNX's limit) with 256 MiB of address space: torch's
    allocation fails, and export says so in one line."""
    run = _export(tmp_path, _stack("lstm(hidden_size = 8000)"), 256)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "error: cannot allocate the parameters of stack `Net` (977.2 MiB in float32): not "
        "enough free memory")
    assert not (tmp_path / "out.onnx").exists()
