"""Checkpoints of stacks of user cells (language section 8): `infer --cells` writes a spec
that `check --weights` accepts with the module's own shapes, and `check --weights`
explains a changed size at the argument that causes it."""

from __future__ import annotations

import os
import re
import tempfile

import cli_process
import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from conftest import ROOT  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import rnnspec  # noqa: E402
from rnnspec import cli  # noqa: E402
from rnnspec.tools.checkpoints.compare import compare  # noqa: E402
from rnnspec.tools.checkpoints.read import read_checkpoint  # noqa: E402

LIBRARY_PATH = ROOT / "examples" / "cells.rnn"
LIBRARY = LIBRARY_PATH.read_text(encoding="utf-8")
CELLS = {m.group(1): m.group(0) for m in re.finditer(r"(?ms)^cell (\w+).*?^\}\n", LIBRARY)}


def spec_text(blocks: list[str], input_size: int) -> str:
    body = "\n".join(f"    {b}" for b in blocks)
    return "".join(CELLS.values()) + f"\nstack Net {{\n    input_size = {input_size}\n{body}\n}}\n"


@st.composite
def library_stacks(draw):
    input_size = draw(st.integers(1, 5))
    features = input_size  # what the next block reads
    blocks = []
    for index in range(draw(st.integers(1, 3))):
        cell = draw(st.sampled_from(sorted(CELLS)))
        hidden = features if cell == "SRU" else draw(st.integers(2, 6))  # its `require`
        arguments = [f"hidden_size = {hidden}"]
        output = hidden
        if cell == "TorchLSTMP":
            output = draw(st.integers(1, hidden - 1))
            arguments.append(f"proj_size = {output}")
        if cell == "ClippedLSTM":
            arguments.append(f"cell_size = {draw(st.integers(1, 5))}")
        if cell == "MultiHeadSLSTM":
            heads = draw(st.sampled_from([d for d in range(1, hidden + 1) if hidden % d == 0]))
            arguments.append(f"heads = {heads}")
        if draw(st.booleans()):
            arguments.append("num_layers = 2")
        if cell != "SRU" and draw(st.booleans()):
            arguments.append("bidirectional = true")
            output *= 2
        blocks.append(f"b{index} = {cell}({', '.join(arguments)})")
        features = output
    return spec_text(blocks, input_size)


def module_state(text: str, folder: str, seed: int = 0):
    path = os.path.join(folder, "net.rnn")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    torch.manual_seed(seed)
    return path, rnnspec.load(path).Net().state_dict()


def save(state: dict, folder: str, form: str) -> str:
    if form == "safetensors":
        path = os.path.join(folder, "w.safetensors")
        safetensors_torch.save_file(dict(state), path)
    else:
        path = os.path.join(folder, "w.pt")
        torch.save(state, path)
    return path


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=library_stacks(), form=st.sampled_from(["safetensors", "torch"]))
def test_infer_with_cells_round_trip(text, form):
    with tempfile.TemporaryDirectory() as folder:
        _, state = module_state(text, folder)
        checkpoint = save(state, folder, form)
        out = os.path.join(folder, "inferred.rnn")
        assert cli.main(["infer", checkpoint, "--cells", str(LIBRARY_PATH), "-o", out]) == 0
        result = rnnspec.check_file(out)
        assert result.ok, [d.message for d in result.diagnostics]
        tensors = read_checkpoint(checkpoint)
        modules = {key.split(".")[0] for key in state}
        assert len(result.stacks) == len(modules)
        for stack in result.stacks:
            comparison = compare(result, stack, tensors, checkpoint)
            assert comparison.diagnostics == [], [d.message for d in comparison.diagnostics]
            assert not comparison.missing and not comparison.mismatched
            (block,) = stack.blocks
            derived = {p.name: p.shape for p in block.parameters}
            prefix = comparison.prefix
            assert derived == {key[len(prefix):]: tuple(value.shape)
                               for key, value in state.items() if key.startswith(prefix)}


def run(*args):
    """`rnnspec ARGS` in a child process (`cli_process`), its output captured."""
    return cli_process.run(*args)


def infer_then_check(checkpoint, out, stacks) -> str:
    """`rnnspec infer --cells` of the library, then `check --weights` of each named stack
    of what it wrote (each must match the checkpoint exactly); the written spec."""
    inferred = run("infer", checkpoint, "--cells", LIBRARY_PATH, "-o", out)
    assert inferred.returncode == 0, inferred.stderr
    for name in stacks:
        checked = run("check", out, "--weights", checkpoint, "--stack", name)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "0 missing, 0 unexpected, 0 mismatched" in checked.stdout
    return out.read_text(encoding="utf-8")


def test_cli_infer_with_cells_then_check_weights(tmp_path):
    blocks = ["enc = HasteLayerNormLSTM(hidden_size = 6, num_layers = 2, bidirectional = true)",
              "dec = SLSTM(hidden_size = 4)"]
    _, state = module_state(spec_text(blocks, 5), str(tmp_path))
    checkpoint = save(state, str(tmp_path), "safetensors")
    out = tmp_path / "inferred.rnn"

    text = infer_then_check(checkpoint, out, ("Enc", "Dec"))
    assert "cell HasteLayerNormLSTM {" in text and "cell SLSTM {" in text
    assert "cell TorchGRU" not in text  # only the cells the checkpoint uses are copied
    assert "HasteLayerNormLSTM(hidden_size = 6, num_layers = 2, bidirectional = true)" in text


def test_cli_infer_cells_file_with_errors(tmp_path):
    cells = tmp_path / "cells.rnn"
    cells.write_text("cell Broken {\n    state h[hidden_size]\n    h = nope(h)\n}\n")
    checkpoint = save({"weight_ih_l0": torch.zeros(4, 2)}, str(tmp_path), "torch")
    run = cli_process.run("infer", checkpoint, "--cells", cells)
    assert run.returncode == 1 and "unknown function `nope`" in run.stderr
    assert "Traceback" not in run.stderr


# ----------------------------------------------------------------------------- explanations

SPEC_BLOCKS = ["a = HasteLayerNormLSTM(hidden_size = 6, bidirectional = true)",
               "b = TorchLSTMP(hidden_size = 8, proj_size = 3, num_layers = 2)",
               "c = SLSTM(hidden_size = 4)"]


def where(text: str, needle: str) -> tuple[int, int]:
    offset = text.index(needle)
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


@pytest.mark.parametrize("change", [
    ("a = HasteLayerNormLSTM(hidden_size = 6", "hidden_size = 5", "hidden_size = 6"),
    ("proj_size = 3", "proj_size = 2", "proj_size = 3"),
    ("c = SLSTM(hidden_size = 4)", "num_layers = 2", "c = SLSTM"),
])
def test_one_changed_size_of_a_user_cell_is_one_diagnostic_at_it(tmp_path, change):
    """The checkpoint was saved from the spec with one argument changed; the spec reports
    it once, at the argument as written (at the block when it is left at its default)."""
    where_in_trained, trained_argument, needle = change
    spec = spec_text(SPEC_BLOCKS, 5)
    if where_in_trained.startswith("c = "):
        trained = spec.replace("SLSTM(hidden_size = 4)", "SLSTM(hidden_size = 4, num_layers = 2)")
    else:
        original = where_in_trained.split("(")[-1] if "(" in where_in_trained else where_in_trained
        trained = spec.replace(where_in_trained,
                               where_in_trained.replace(original, trained_argument))
    folder = str(tmp_path)
    _, state = module_state(trained, folder)
    checkpoint = save(state, folder, "safetensors")
    path = tmp_path / "spec.rnn"
    path.write_text(spec, encoding="utf-8")
    result = rnnspec.check_file(path)
    comparison = compare(result, result.stacks[0], read_checkpoint(checkpoint), checkpoint)
    (problem,) = comparison.diagnostics
    assert problem.code == "E060", problem.message
    name, _, value = trained_argument.partition(" = ")
    assert f"`{name} = {value}`" in problem.message
    assert (problem.span.line, problem.span.column) == where(spec, needle)


def test_a_dropped_tensor_of_a_user_cell_is_listed_at_the_block(tmp_path):
    spec = spec_text(SPEC_BLOCKS, 5)
    _, state = module_state(spec, str(tmp_path))
    del state["a.gamma_h_l0_reverse"]
    checkpoint = save(state, str(tmp_path), "torch")
    path = tmp_path / "spec.rnn"
    path.write_text(spec, encoding="utf-8")
    result = rnnspec.check_file(path)
    comparison = compare(result, result.stacks[0], read_checkpoint(checkpoint), checkpoint)
    (problem,) = comparison.diagnostics
    assert problem.code == "E062" and "block `a`" in problem.message
    assert any("`a.gamma_h_l0_reverse` [6] is missing" in note.message
               for note in problem.notes)
    assert comparison.missing == ["a.gamma_h_l0_reverse"]


UNSEEN = """cell P(proj = 2, extra) {
    state h[hidden_size]
    param w[hidden_size, input_size]
    param u[hidden_size, hidden_size]
    h = tanh(w @ x + u @ h)
}
stack S {
    input_size = 3
    enc = P(hidden_size = HIDDEN, extra = 7)
}
"""


def test_a_declared_size_no_tensor_shows_keeps_the_specs_value(tmp_path):
    """`extra` appears in no parameter: the checkpoint still explains `hidden_size`, and
    `infer` says it cannot tell `extra` instead of giving up."""
    import torch

    trained = tmp_path / "trained.rnn"
    trained.write_text(UNSEEN.replace("HIDDEN", "6"), encoding="utf-8")
    spec = tmp_path / "spec.rnn"
    spec.write_text(UNSEEN.replace("HIDDEN", "4"), encoding="utf-8")
    checkpoint = tmp_path / "model.pt"
    torch.save(rnnspec.load(trained).S().state_dict(), checkpoint)
    run = cli_process.run("check", spec, "--weights", checkpoint)
    assert run.returncode == 1
    assert "E060" in run.stdout and "`hidden_size = 6`" in run.stdout
    assert "E062" not in run.stdout
    run = cli_process.run("infer", checkpoint, "--cells", spec)
    assert run.returncode == 0, run.stderr
    assert "P(hidden_size = 6)" in run.stdout and "`extra`" in run.stdout


def test_cli_infer_solves_heads_and_keeps_number_arguments_at_their_defaults(tmp_path):
    """Section 11: a heads parameter's shape solves `heads`; a number argument no tensor
    can show is left at its default, and the written comment says so."""
    blocks = ["heads = MultiHeadSLSTM(hidden_size = 12, heads = 3)",
              "clip = ClippedLSTM(hidden_size = 4, cell_size = 6, memory_clip = 1.0)"]
    _, state = module_state(spec_text(blocks, 5), str(tmp_path))
    checkpoint = save(state, str(tmp_path), "torch")
    out = tmp_path / "inferred.rnn"

    text = infer_then_check(checkpoint, out, ("Heads", "Clip"))
    assert "MultiHeadSLSTM(hidden_size = 12, heads = 3)" in text
    assert "ClippedLSTM(hidden_size = 4, cell_size = 6)" in text
    assert "`memory_clip` (a number of `ClippedLSTM`: its default 3.0 is assumed)" in text
    assert "memory_clip` (a size" not in text
