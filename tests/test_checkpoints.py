"""Checkpoints: reading (safetensors headers, torch.save files), `check --weights` with each
difference located at the argument that explains it, and `infer` round trips against torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import cli_process
import pytest
from checkpoint_files import write_safetensors_header
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import render, stack_specs, torch_modules

from rnnspec.check.checker import check_text
from rnnspec.tools.checkpoints.compare import compare
from rnnspec.tools.checkpoints.infer import (
    CellShape,
    infer_modules,
    match_cell,
    render_spec,
    stack_name,
)
from rnnspec.tools.checkpoints.read import CheckpointError, read_checkpoint

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")


def rnnspec(*args, cwd=None):
    return cli_process.run(*args, cwd=cwd)


def state_dict(spec, prefix: str = "") -> dict:
    """The state dict of the stack's modules, as the generated module names its keys."""
    names = spec.block_names()
    return {f"{prefix}{name}.{key}": value.contiguous()
            for name, module in zip(names, torch_modules(spec))
            for key, value in module.state_dict().items()}


def save(tensors: dict, folder, stem: str, fmt: str) -> str:
    path = os.path.join(str(folder), f"{stem}.{'safetensors' if fmt == 'safetensors' else 'pt'}")
    if fmt == "safetensors":
        safetensors_torch.save_file(tensors, path)
    else:
        torch.save(tensors, path)
    return path


def checked(text: str, path: str = "spec.rnn"):
    result = check_text(text, path)
    assert result.ok, [d.message for d in result.diagnostics]
    return result


def diagnostics_of(text: str, shapes: dict, folder, prefix=None, stack=None):
    """Compare a spec with a header-only checkpoint holding `shapes`."""
    path = os.path.join(str(folder), "c.safetensors")
    write_safetensors_header(path, shapes)
    result = checked(text)
    target = stack or result.stacks[0]
    return compare(result, target, read_checkpoint(path), path, prefix)


def where(text: str, needle: str) -> tuple[int, int]:
    """Line and column (1-based) of the first `needle` in `text`."""
    offset = text.index(needle)
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


# ----------------------------------------------------------------------------- round trips


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=stack_specs(), fmt=st.sampled_from(["safetensors", "torch"]),
       prefix=st.sampled_from(["", "model.", "encoder.rnn."]))
def test_round_trip_through_infer(spec, fmt, prefix):
    tensors = state_dict(spec, prefix)
    with tempfile.TemporaryDirectory() as folder:
        path = save(tensors, folder, "ckpt", fmt)
        read = read_checkpoint(path)
        assert read == {k: (tuple(v.shape), "float32") for k, v in tensors.items()}
        # the spec the checkpoint was made from matches it, prefix detected
        original = checked(render(spec))
        comparison = compare(original, original.stacks[0], read, path)
        assert comparison.diagnostics == []
        assert sorted(comparison.matched) == sorted(tensors)
        expected_prefix = prefix + (spec.block_names()[0] + "." if len(spec.blocks) == 1
                                    else "")
        assert comparison.prefix == expected_prefix
        # infer writes one stack per module, each matching the checkpoint and torch
        modules, skipped = infer_modules(read)
        assert skipped == []
        inferred = checked(render_spec(modules, path), "inferred.rnn")
        assert len(inferred.stacks) == len(spec.blocks)
        by_prefix = {f"{prefix}{name}.": module
                     for name, module in zip(spec.block_names(), torch_modules(spec))}
        for stack, found in zip(inferred.stacks, modules):
            (block,) = stack.blocks
            module = by_prefix[found.prefix]
            torch_shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
            assert {p.name: p.shape for p in block.parameters} == torch_shapes
            forced = compare(inferred, stack, read, path, prefix=found.prefix)
            assert forced.diagnostics == [] and len(forced.matched) == len(torch_shapes)
            assert compare(inferred, stack, read, path).diagnostics == []


def test_round_trip_on_the_command_line(tmp_path):
    model = torch.nn.LSTM(10, 20, num_layers=2, proj_size=5, bidirectional=True)
    tensors = {"encoder.rnn." + k: v for k, v in model.state_dict().items()}
    tensors.update({"head.weight": torch.zeros(3, 10), "head.bias": torch.zeros(3)})
    for fmt in ("safetensors", "torch"):
        path = save(tensors, tmp_path, "ckpt", fmt)
        out = tmp_path / f"{fmt}.rnn"
        run = rnnspec("infer", path, "-o", out)
        assert run.returncode == 0, run.stderr
        text = out.read_text()
        assert "lstm(hidden_size = 20, num_layers = 2, bidirectional = true, proj_size = 5)" \
            in text and "stack EncoderRnn" in text and "# not recorded" in text
        run = rnnspec("check", out, "--weights", path, "--json")
        assert run.returncode == 0, run.stdout
        weights = json.loads(run.stdout)["weights"]
        assert weights["prefix"] == "encoder.rnn." and weights["prefix_detected"]
        assert len(weights["matched"]) == 20 and weights["ignored"] == 2
        assert weights["missing"] == weights["unexpected"] == weights["mismatched"] == []


def test_a_bare_module_state_dict_matches_a_one_block_stack(tmp_path):
    path = save(torch.nn.GRU(7, 9).state_dict(), tmp_path, "gru", "safetensors")
    spec = tmp_path / "s.rnn"
    spec.write_text("stack S {\n    input_size = 7\n    gru(hidden_size = 9)\n}\n")
    run = rnnspec("check", spec, "--weights", path)
    assert run.returncode == 0, run.stdout
    assert "key prefix none (detected)" in run.stdout and "4 matched" in run.stdout


def test_infer_names_stacks_as_identifiers():
    taken: set[str] = set()
    assert stack_name("encoder.rnn.", taken) == "EncoderRnn"
    assert stack_name("encoder.rnn.", taken) == "EncoderRnn2"
    assert stack_name("", taken) == "Model"
    assert stack_name("layers.0.", taken) == "Layers0"
    assert stack_name("0.", taken) == "Stack0"
    assert stack_name("tensor.", taken) == "TensorStack"  # `Tensor` is imported by the module


def test_infer_writes_unknowns_as_comments(tmp_path):
    tensors = {"a." + k: v for k, v in torch.nn.RNN(3, 4, num_layers=2).state_dict().items()}
    modules, _ = infer_modules({k: (tuple(v.shape), "float32") for k, v in tensors.items()})
    text = render_spec(modules, "x.pt")
    assert "rnn(hidden_size = 4, num_layers = 2)" in text
    assert "# not recorded in the weights: nonlinearity (tanh or relu), dropout" in text
    assert "nonlinearity =" not in text and "dropout =" not in text


# ----------------------------------------------------------------------------- mutations

SPEC = textwrap.dedent("""\
    stack Net {
        input_size = 6
        encoder = lstm(hidden_size = 8, num_layers = 2, bidirectional = true)
        decoder = gru(hidden_size = 5, input_size = 16)
    }
    """)


def shapes_of(*modules_by_name) -> dict:
    return {f"{name}.{k}": tuple(v.shape) for name, module in modules_by_name
            for k, v in module.state_dict().items()}


def base_shapes(**changes) -> dict:
    encoder = dict(input_size=6, hidden_size=8, num_layers=2, bidirectional=True)
    encoder.update(changes.pop("encoder", {}))
    decoder_cls = changes.pop("decoder_cls", torch.nn.GRU)
    decoder = dict(input_size=16, hidden_size=5)
    decoder.update(changes.pop("decoder", {}))
    return shapes_of(("encoder", torch.nn.LSTM(**encoder, device="meta")),
                     ("decoder", decoder_cls(**decoder, device="meta")))


def only(comparison, code: str, needle: str | None):
    """The comparison has exactly one diagnostic, `code`, at `needle` of SPEC."""
    found = [(d.code, d.span.line, d.span.column) for d in comparison.diagnostics]
    assert len(found) == 1, [d.message for d in comparison.diagnostics]
    assert found[0][0] == code
    if needle is not None:
        assert found[0][1:] == where(SPEC, needle)
    return comparison.diagnostics[0]


def test_matching_checkpoint_has_no_diagnostic(tmp_path):
    comparison = diagnostics_of(SPEC, base_shapes(), tmp_path)
    assert comparison.diagnostics == [] and comparison.prefix == ""
    assert len(comparison.matched) == 20 and not comparison.mismatched


def test_wrong_hidden_size_is_reported_at_the_argument(tmp_path):
    # the encoder's 12 units also change the decoder's input: one root cause, one diagnostic
    shapes = base_shapes(encoder={"hidden_size": 12}, decoder={"input_size": 24})
    problem = only(diagnostics_of(SPEC, shapes, tmp_path), "E060", "hidden_size = 8")
    assert "`hidden_size = 12`" in problem.message
    assert problem.help == "the checkpoint implies `hidden_size = 12`"
    assert "48 rows = 4 × 12" in problem.notes[0].message


def test_wrong_stack_input_size(tmp_path):
    problem = only(diagnostics_of(SPEC, base_shapes(encoder={"input_size": 9}), tmp_path),
                   "E060", "input_size = 6")
    assert problem.help == "the checkpoint implies `input_size = 9`"


def test_wrong_block_input_size_at_its_argument(tmp_path):
    shapes = base_shapes(decoder={"input_size": 20})
    only(diagnostics_of(SPEC, shapes, tmp_path), "E060", "input_size = 16")


def test_extra_layer_is_num_layers(tmp_path):
    shapes = base_shapes(encoder={"num_layers": 3})
    problem = only(diagnostics_of(SPEC, shapes, tmp_path), "E060", "num_layers = 2")
    assert "`num_layers = 3`" in problem.message


def test_missing_reverse_tensors_are_bidirectional(tmp_path):
    shapes = base_shapes(encoder={"bidirectional": False}, decoder={"input_size": 8})
    only(diagnostics_of(SPEC, shapes, tmp_path), "E060", "bidirectional = true")


def test_missing_biases_at_a_defaulted_argument(tmp_path):
    problem = only(diagnostics_of(SPEC, base_shapes(decoder={"bias": False}), tmp_path),
                   "E060", "decoder =")
    assert problem.help == "add `bias = false` to block `decoder`"


def test_projection_at_the_block(tmp_path):
    shapes = base_shapes(encoder={"proj_size": 3}, decoder={"input_size": 6})
    problem = only(diagnostics_of(SPEC, shapes, tmp_path), "E060", "encoder =")
    assert "`proj_size = 3`" in problem.message


def test_other_cell_at_the_cell_name(tmp_path):
    shapes = base_shapes(decoder_cls=torch.nn.LSTM)
    problem = only(diagnostics_of(SPEC, shapes, tmp_path), "E061", "gru(")
    assert "`lstm`" in problem.message


@pytest.mark.parametrize("mutation", ["drop", "add", "resize"])
def test_single_tensor_mutations_are_listed_at_the_block(tmp_path, mutation):
    shapes = base_shapes()
    if mutation == "drop":
        del shapes["encoder.weight_hh_l1_reverse"]
    elif mutation == "add":
        shapes["encoder.weight_hr_l1"] = (2, 8)
    else:
        shapes["encoder.bias_hh_l1"] = (33,)
    problem = only(diagnostics_of(SPEC, shapes, tmp_path), "E062", "encoder =")
    assert len(problem.notes) == 1 and "`encoder." in problem.notes[0].message


def test_changed_prefix_is_detected(tmp_path):
    shapes = {"model.core." + k: v for k, v in base_shapes().items()}
    comparison = diagnostics_of(SPEC, shapes, tmp_path)
    assert comparison.diagnostics == [] and comparison.prefix == "model.core."


def test_renamed_block_is_missing(tmp_path):
    shapes = {k.replace("decoder.", "dec."): v for k, v in base_shapes().items()}
    problem = only(diagnostics_of(SPEC, shapes, tmp_path), "E063", "decoder =")
    assert "`dec.`" in problem.notes[-1].message


def test_nothing_matches(tmp_path):
    comparison = diagnostics_of(SPEC, {"head.weight": (3, 4)}, tmp_path)
    only(comparison, "E064", "Net")


def test_forced_prefix(tmp_path):
    shapes = {"a." + k: v for k, v in base_shapes().items()}
    assert diagnostics_of(SPEC, shapes, tmp_path, prefix="a.").diagnostics == []
    only(diagnostics_of(SPEC, shapes, tmp_path, prefix="b."), "E064", "Net")


def test_the_issue_example(tmp_path):
    text = "stack Speech {\n    input_size = 80\n    lstm(hidden_size = 128)\n}\n"
    shapes = shapes_of(("encoder.rnn", torch.nn.LSTM(80, 256, device="meta")))
    comparison = diagnostics_of(text, shapes, tmp_path)
    (problem,) = comparison.diagnostics
    assert (problem.span.line, problem.span.column) == (3, 10)
    assert problem.message == ("the checkpoint was trained with `hidden_size = 256`, the "
                               "spec says 128")
    assert problem.notes[0].message.startswith("`weight_ih_l0` has 1024 rows = 4 × 256")
    assert comparison.prefix == "encoder.rnn."


def test_cli_check_weights_report_and_statuses(tmp_path):
    spec = tmp_path / "net.rnn"
    spec.write_text(SPEC + "stack Other {\n    input_size = 2\n    rnn(hidden_size = 2)\n}\n")
    path = tmp_path / "c.safetensors"
    write_safetensors_header(str(path), base_shapes(encoder={"hidden_size": 12},
                                                     decoder={"input_size": 24}))
    run = rnnspec("check", spec, "--weights", path, "--stack", "Net")
    assert run.returncode == 1
    line, column = where(SPEC, "hidden_size = 8")
    assert f"{spec}:{line}:{column}: error[E060]" in run.stdout
    assert "weights " in run.stdout and "key prefix none (detected)" in run.stdout
    assert rnnspec("check", spec, "--weights", path).returncode == 2  # which stack?
    unknown = rnnspec("check", spec, "--weights", path, "--stack", "Nope")
    assert unknown.returncode == 2 and "`Net`" in unknown.stderr
    assert rnnspec("check", spec, "--stack", "Net").returncode == 2  # without --weights


# ----------------------------------------------------------------------------- big files


def test_multi_gigabyte_safetensors_reads_only_the_header(tmp_path):
    """8.6 GB of claimed tensors on a sparse file: checked in a few kilobytes of reading,
    without torch."""
    shapes = {k: v for k, v in shapes_of(
        ("rnn", torch.nn.LSTM(4096, 16384, num_layers=2, device="meta"))).items()}
    path = tmp_path / "big.safetensors"
    write_safetensors_header(str(path), shapes)
    assert path.stat().st_size > 8 * 2**30
    spec = tmp_path / "big.rnn"
    spec.write_text("stack Big {\n    input_size = 4096\n"
                    "    lstm(hidden_size = 16384, num_layers = 2)\n}\n")
    script = textwrap.dedent(f"""
        import sys
        def read_bytes():
            with open("/proc/self/io") as f:
                return int(next(l for l in f if l.startswith("rchar")).split()[1])
        from rnnspec.cli import main
        import rnnspec.check.checker, rnnspec.check.report, io
        import rnnspec.tools.checkpoints.compare, rnnspec.tools.checkpoints.read
        before = read_bytes()
        rnnspec.tools.checkpoints.read.read_checkpoint({str(path)!r})
        header = read_bytes() - before
        sys.stdout = io.StringIO()
        before = read_bytes()
        status = main(["check", {str(spec)!r}, "--weights", {str(path)!r}])
        read = read_bytes() - before
        sys.stdout = sys.__stdout__
        print(status, header, read, "torch" in sys.modules)
    """)
    if not os.path.exists("/proc/self/io"):
        pytest.skip("no /proc/self/io to count the bytes read")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    status, header, read, imported = run.stdout.split()
    assert status == "0", run.stdout + run.stderr
    assert int(header) < 2**14  # the 8-byte length and the JSON: about 1 KB
    assert int(read) < 2**24  # the whole command: the parser's tables, the spec, the header
    assert imported == "False"


def test_large_torch_checkpoint_is_memory_mapped(tmp_path):
    """A 256 MB torch.save file costs far less than its size in memory (mmap=True)."""
    path = tmp_path / "big.pt"
    torch.save({"model": {"rnn.weight_ih_l0": torch.ones(16384, 4096)}}, path)
    script = textwrap.dedent(f"""
        import resource, torch
        from rnnspec.tools.checkpoints.read import read_checkpoint
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tensors = read_checkpoint({str(path)!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(tensors["rnn.weight_ih_l0"][0], (after - before) * 1024)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert run.returncode == 0, run.stderr
    shape, grown = run.stdout.split(")")
    assert shape == "(16384, 4096"
    assert int(grown) < 32 * 2**20  # against 256 MiB of data


# ----------------------------------------------------------------------------- bad inputs


class NotAStateDict:
    """Pickled by reference: a safe load must refuse it."""


def _bad_files(folder) -> dict[str, str]:
    """name -> a phrase of the expected message."""
    folder = str(folder)

    def put(name, data):
        with open(os.path.join(folder, name), "wb") as out:
            out.write(data)

    put("text.pt", b"hello, not a checkpoint\n")
    put("empty.bin", b"")
    put("short.safetensors", b"\x10\x00\x00")
    put("long.safetensors", (10_000).to_bytes(8, "little") + b'{"a": 1}')
    put("json.safetensors", (5).to_bytes(8, "little") + b"{nope")
    put("list.safetensors", (2).to_bytes(8, "little") + b"[]")
    noshape = b'{"w": {"dtype": "F32"}}'
    put("noshape.safetensors", len(noshape).to_bytes(8, "little") + noshape)
    header = b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    put("outside.safetensors", len(header).to_bytes(8, "little") + header + b"\0" * 8)
    torch.save(NotAStateDict(), os.path.join(folder, "object.pt"))
    torch.save({"epoch": 3}, os.path.join(folder, "nostate.pt"))
    torch.save({"w": torch.zeros(3)}, os.path.join(folder, "cut.pt"))
    with open(os.path.join(folder, "cut.pt"), "r+b") as handle:
        handle.truncate(300)
    return {
        "text.pt": "not a checkpoint", "empty.bin": "empty", "short.safetensors": "truncated",
        "long.safetensors": "header length is 10,000 bytes", "json.safetensors": "not valid JSON",
        "list.safetensors": "JSON list", "noshape.safetensors": "no `shape`",
        "outside.safetensors": "truncated", "object.pt": "NotAStateDict",
        "nostate.pt": "holds no state dict", "cut.pt": "truncated or damaged",
    }


def test_bad_checkpoints_raise_checkpoint_error(tmp_path):
    for name, phrase in _bad_files(tmp_path).items():
        with pytest.raises(CheckpointError) as caught:
            read_checkpoint(str(tmp_path / name))
        assert phrase in str(caught.value), (name, str(caught.value))
    with pytest.raises(CheckpointError, match="folder"):
        read_checkpoint(str(tmp_path))
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(str(tmp_path / "missing.safetensors"))


@pytest.mark.parametrize("name", ["text.pt", "short.safetensors", "object.pt"])
def test_bad_checkpoints_exit_2_and_write_nothing(tmp_path, name):
    _bad_files(tmp_path)
    spec = tmp_path / "s.rnn"
    spec.write_text("stack S {\n    input_size = 3\n    gru(hidden_size = 4)\n}\n")
    run = rnnspec("check", spec, "--weights", tmp_path / name)
    assert run.returncode == 2 and "Traceback" not in run.stderr and run.stdout == ""
    assert f"`{tmp_path / name}`" in run.stderr
    out = tmp_path / "out.rnn"
    run = rnnspec("infer", tmp_path / name, "-o", out)
    assert run.returncode == 2 and "Traceback" not in run.stderr and not out.exists()


def test_infer_without_recurrent_modules_exits_1(tmp_path):
    path = tmp_path / "c.safetensors"
    write_safetensors_header(str(path), {"linear.weight": (3, 4)})
    out = tmp_path / "out.rnn"
    run = rnnspec("infer", path, "-o", out)
    assert run.returncode == 1 and "no recurrent module" in run.stderr and not out.exists()


def test_infer_refuses_to_overwrite_a_foreign_file(tmp_path):
    path = save(torch.nn.GRU(2, 3).state_dict(), tmp_path, "c", "safetensors")
    out = tmp_path / "out.rnn"
    out.write_text("stack Mine {\n}\n")
    run = rnnspec("infer", path, "-o", out)
    assert run.returncode == 2 and "--force" in run.stderr
    assert out.read_text() == "stack Mine {\n}\n"
    assert rnnspec("infer", path, "-o", out, "--force").returncode == 0
    assert "gru(hidden_size = 3)" in out.read_text()
    assert rnnspec("infer", path, "-o", out).returncode == 0  # infer's own file: replaced


def test_safetensors_path_never_imports_torch(tmp_path):
    path = tmp_path / "c.safetensors"
    write_safetensors_header(str(path), base_shapes())
    spec = tmp_path / "net.rnn"
    spec.write_text(SPEC)
    script = (f"import sys\nfrom rnnspec.cli import main\n"
              f"status = main(['check', {str(spec)!r}, '--weights', {str(path)!r}, '--json'])\n"
              "assert status == 0, status\n"
              "assert 'torch' not in sys.modules and 'safetensors' not in sys.modules\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["weights"]["prefix"] == ""


# ----------------------------------------------------------------------------- user cells

PEEPHOLE = CellShape(
    name="PeepholeLSTM",
    parameters={"weight_ih": ("4 * hidden_size", "input_size"),
                "weight_hh": ("4 * hidden_size", "hidden_size"),
                "bias": ("4 * hidden_size",), "peep_i": ("hidden_size",),
                "peep_f": ("hidden_size",), "peep_o": ("hidden_size",)},
    first_state="hidden_size",
)


def peephole_shapes(input_size, hidden, layers, directions):
    shapes = {}
    for layer in range(layers):
        features = input_size if layer == 0 else directions * hidden
        for suffix in ("", "_reverse")[:directions]:
            for name, dims in (("weight_ih", (4 * hidden, features)),
                               ("weight_hh", (4 * hidden, hidden)), ("bias", (4 * hidden,)),
                               ("peep_i", (hidden,)), ("peep_f", (hidden,)),
                               ("peep_o", (hidden,))):
                shapes[f"{name}_l{layer}{suffix}"] = dims
    return shapes


def test_user_cell_parameters_are_solved():
    assert match_cell(peephole_shapes(80, 256, 2, 2), PEEPHOLE) == (
        {"hidden_size": 256, "num_layers": 2, "bidirectional": True}, 80)
    assert match_cell(peephole_shapes(3, 5, 1, 1), PEEPHOLE) == ({"hidden_size": 5}, 3)
    bad = peephole_shapes(80, 256, 2, 1)
    bad["peep_o_l1"] = (255,)
    assert match_cell(bad, PEEPHOLE) is None
    assert match_cell({"weight_ih_l0": (4, 3)}, PEEPHOLE) is None


def test_user_cell_with_a_declared_argument():
    cell = CellShape("Projected", {"w": ("hidden_size + out", "input_size"),
                                   "p": ("out", "hidden_size")}, "out", ("out",))
    shapes = {"w_l0": (12, 7), "p_l0": (4, 8), "w_l1": (12, 4), "p_l1": (4, 8)}
    assert match_cell(shapes, cell) == ({"hidden_size": 8, "out": 4, "num_layers": 2}, 7)
    modules, skipped = infer_modules({"enc." + k: (v, "float32") for k, v in shapes.items()},
                                     [cell])
    assert skipped == [] and modules[0].cell == "Projected"


# ----------------------------------------------------------------------------- random mutations


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=stack_specs(), data=st.data())
def test_one_changed_argument_is_one_diagnostic_at_it(spec, data):
    """A checkpoint trained with one argument changed: one diagnostic, at that argument as
    written (by name or by position), or at the block when the spec leaves it at its
    default."""
    import copy

    from rnnspec.language.parse import parse

    index = data.draw(st.integers(0, len(spec.blocks) - 1))
    argument = data.draw(st.sampled_from(["hidden_size", "num_layers", "bidirectional",
                                          "bias"]))
    trained = copy.deepcopy(spec)
    block = trained.blocks[index]
    if argument == "hidden_size":
        block.hidden_size += data.draw(st.integers(1, 3))
    elif argument == "num_layers":
        block.num_layers += 1
    else:
        setattr(block, argument, not getattr(block, argument))
    shapes = {f"{name}.{k}": tuple(v.shape)
              for name, module in zip(trained.block_names(), torch_modules(trained, "meta"))
              for k, v in module.state_dict().items()}
    text = render(spec)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "c.safetensors")
        write_safetensors_header(path, shapes)
        result = checked(text)
        comparison = compare(result, result.stacks[0], read_checkpoint(path), path)
    (problem,) = comparison.diagnostics
    assert problem.code == "E060" and f"`{argument} = " in problem.message
    tree, _ = parse(text, "spec.rnn")
    # positional arguments come first and take the cell's rules in order
    rules = result.stacks[0].blocks[index].spec.arguments
    written = {a.name or rules[position].name: a.span
               for position, a in enumerate(tree.stacks[0].blocks[index].arguments)}
    expected = written.get(argument, result.stacks[0].blocks[index].span)
    assert problem.span == expected
