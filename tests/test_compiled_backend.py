"""The compiled backend: every cell's time loop in generated C++, numbers and gradients as
the explicit backend's (and nn.LSTM/GRU/RNN's for the built-in cells), the cache, the
fallback to the explicit backend where no library can be built.

Builds are few (each costs 20-60 s on two cores from a cold cache): one for
examples/cells.rnn, one for a spec of built-in cells, small cells and random cells (a
fixed seed), and tiny ones for the cache's concurrency test. The cache folder is a
temporary one (`RNNSPEC_COMPILED_CACHE`), set for the session.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import compiled_prebuild
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "examples" / "cells.rnn"
STACKS = re.findall(r"^stack (\w+)", LIBRARY.read_text(encoding="utf-8"), re.MULTILINE)
HAS_COMPILER = shutil.which(os.environ.get("CXX") or "c++") is not None
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler (`c++`/$CXX)")

BUILTINS = """
stack Lstm {
    input_size = 5
    core = lstm(hidden_size = 6, num_layers = 2, bidirectional = true)
}
stack LstmProj {
    input_size = 5
    core = lstm(hidden_size = 6, proj_size = 3)
}
stack Gru {
    input_size = 5
    core = gru(hidden_size = 6, num_layers = 2)
}
stack Rnn {
    input_size = 5
    core = rnn(hidden_size = 6, bidirectional = true)
}
stack RnnRelu {
    input_size = 5
    core = rnn(hidden_size = 6, nonlinearity = relu)
}
stack Tiny {
    input_size = 2
    core = lstm(hidden_size = 3)
}
stack Reverse {
    input_size = 3
    back = gru(hidden_size = 4, num_layers = 2, reverse = true, initial_state = learned)
}
stack Regularised {
    input_size = 4
    core = lstm(hidden_size = 5, zoneout = 0.2, recurrent_dropout = 0.3, weight_dropout = 0.25)
}
stack Wide {
    input_size = 33
    core = lstm(hidden_size = 37)
}
cell Tied {
    state h[hidden_size]
    param w[hidden_size, hidden_size], b[hidden_size], u[hidden_size, input_size]
    s = tanh(w @ h + b)
    h = sigmoid(w @ s + u @ x)
}
stack TiedStack {
    input_size = 3
    core = Tied(hidden_size = 4)
}
"""
TORCH_CLASSES = {"Lstm": "LSTM", "LstmProj": "LSTM", "Gru": "GRU", "Rnn": "RNN", "RnnRelu": "RNN"}
RANDOM_CELLS = 10


def _flat(value) -> list:
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for item in value for t in _flat(item)] if isinstance(value, tuple | list) else []


def _close(actual, expected, rtol=1e-5, atol=1e-5) -> None:
    actual, expected = _flat(actual), _flat(expected)
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, equal_nan=True)


@pytest.fixture(scope="session")
def compiled_cache(tmp_path_factory):
    """The session's cache folder: the background build's (tests/compiled_prebuild.py),
    where conftest.py started one."""
    build = compiled_prebuild.BUILD[0] if compiled_prebuild.BUILD else None
    folder = build.cache if build is not None else tmp_path_factory.mktemp("compiled-cache")
    before = os.environ.get("RNNSPEC_COMPILED_CACHE")
    os.environ["RNNSPEC_COMPILED_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("RNNSPEC_COMPILED_CACHE", None)
    else:
        os.environ["RNNSPEC_COMPILED_CACHE"] = before


def _load_both(text: str, name: str):
    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source, load_source

    result = check_source(text, name)
    assert result.ok, [d.message for d in result.diagnostics]
    explicit = load_source(generate_source(result, "explicit"), name)
    compiled = load_source(generate_source(result, "compiled"), name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed build would warn
        assert compiled._compiled_library() is not None
    return explicit, compiled


@pytest.fixture(scope="session")
def library(modules):
    return modules


@functools.cache
def _random_cells() -> list[str]:
    from cell_strategies import cells, render_cell
    from hypothesis import HealthCheck, given, settings

    texts: list[str] = []

    @settings(
        max_examples=RANDOM_CELLS,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(cell=cells(extended=True))
    def collect(cell):
        index = len(texts)
        texts.append(render_cell(cell).text.replace("cell Random", f"cell Random{index}", 1))

    collect()
    return texts


def _mixed_text() -> str:
    cells = _random_cells()
    stacks = [
        f"stack R{i} {{\n    input_size = 3\n"
        f"    core = Random{i}(hidden_size = 4, num_layers = 2, bidirectional = true)\n}}\n"
        for i in range(len(cells))
    ]
    return BUILTINS + "\n".join(cells) + "\n" + "\n".join(stacks)


def all_text() -> str:
    """examples/cells.rnn, the built-in cells and the random cells in one spec."""
    return LIBRARY.read_text(encoding="utf-8") + "\n" + _mixed_text()


def prebuild() -> None:
    """Start building `all_text`'s library in the background (conftest.py calls this when a
    selected test needs it)."""
    if HAS_COMPILER:
        compiled_prebuild.start(all_text())


@pytest.fixture(scope="session")
def modules(compiled_cache):
    """`all_text`'s modules: one C++ build (half a minute of a core on a 2-core machine) for
    the library's and the mixed tests alike, made in the background while other tests ran,
    then read from the cache."""
    if compiled_prebuild.BUILD:
        for out in compiled_prebuild.BUILD[0].finish():
            assert "WARNING" not in out and "LIBRARY True" in out, out
    return _load_both(all_text(), "all.rnn")


@pytest.fixture(scope="session")
def mixed(modules):
    return modules


def _python_steps(module, monkeypatch) -> list:
    """Patch the module's Python step so that each call is recorded."""
    calls: list = []
    advance = module._Recurrent.advance

    def counting(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return advance(self, *args, **kwargs)

    monkeypatch.setattr(module._Recurrent, "advance", counting)
    return calls


def _input(model, T=6, B=3, dtype=torch.float32):
    first = getattr(model, "batch_first", False)
    shape = (B, T, model.input_size) if first else (T, B, model.input_size)
    return torch.randn(shape, dtype=dtype)


def _compare(explicit_model, compiled_model, x, lengths, rtol=1e-5, atol=1e-5) -> None:
    """Outputs, final states and every parameter's gradient; then without gradients."""
    results = []
    for model in (explicit_model, compiled_model):
        model.zero_grad()
        torch.manual_seed(7)  # the same dropout masks for both
        output, finals = model(x, lengths=lengths)
        loss = sum(
            (t * torch.linspace(-1, 1, t.numel()).view(t.shape)).sum()
            for t in _flat((output, finals))
            if t.is_floating_point()
        )
        if loss.requires_grad:  # a cell may give values no parameter changes
            loss.backward()
        grads = [
            p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for p in model.parameters()
        ]
        results.append(((output, finals), grads))
    _close(results[1][0], results[0][0], rtol, atol)
    for actual, expected in zip(results[1][1], results[0][1]):
        _close(actual, expected, rtol, atol * _scale(expected))
    with torch.no_grad():  # the CPU fast path
        torch.manual_seed(7)
        expected = explicit_model(x, lengths=lengths)
        torch.manual_seed(7)
        actual = compiled_model(x, lengths=lengths)
    _close(actual, expected, rtol, atol)


def _scale(gradient) -> float:
    """A gradient's absolute bound is `atol` times its largest value (at least 1): the
    generated backward sums a weight's gradient in another order than autograd's (one
    product after the loop instead of one per step), and two float32 sums of the same
    terms differ by rounding that grows with the terms, not with each element's result.
    test_gradients_are_as_close_to_float64 checks that both are as close to the float64
    gradient."""
    return max(1.0, gradient.abs().max().item()) if gradient.numel() else 1.0


def _gradients(model, x, lengths) -> list:
    model.zero_grad()
    output, finals = model(x, lengths=lengths)
    sum(
        (t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view(t.shape)).sum()
        for t in _flat((output, finals))
        if t.is_floating_point()
    ).backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


AUTOGRAD_STACKS = {"Heads", "TiedStack"}  # `@` of heads; a weight with two bias sets


@needs_compiler
@pytest.mark.parametrize("stack", ["Lstm", "Gru", "Tiny", "TiedStack", *STACKS])
def test_gradients_are_as_close_to_float64(library, stack):
    """In float32 the generated backward's gradients are as far from the float64 gradient
    as autograd's over the explicit loop are (within 2x and a few float32 roundings;
    measured: at most 1.8x, the layer-norm cell's). Every stack but AUTOGRAD_STACKS runs
    the generated backward."""
    explicit, compiled = library
    torch.manual_seed(0)
    reference = getattr(explicit, stack)().eval()
    model = getattr(compiled, stack)().eval()
    model.load_state_dict(reference.state_dict())
    truth_model = getattr(explicit, stack)().eval()
    truth_model.load_state_dict(reference.state_dict())
    truth_model.double()
    x, lengths = _input(reference), torch.tensor([6, 2, 4])
    ran = "CompiledLoopBackward" in _graph(model(x, lengths=lengths)[0])
    assert ran == (stack not in AUTOGRAD_STACKS)
    truth = _gradients(truth_model, x.double(), lengths)
    ours, theirs = _gradients(model, x, lengths), _gradients(reference, x, lengths)
    assert len(ours) == len(theirs) == len(truth) > 0
    for a, b, t in zip(ours, theirs, truth):
        ulp = torch.finfo(torch.float32).eps * _scale(t)
        ours_error = (a.double() - t).abs().max().item()
        their_error = (b.double() - t).abs().max().item()
        assert ours_error <= 2 * their_error + 8 * ulp, (stack, ours_error, their_error, ulp)


@needs_compiler
@pytest.mark.parametrize("stack", STACKS)
def test_library_cells_equal_the_explicit_backend(library, stack, monkeypatch):
    explicit, compiled = library
    torch.manual_seed(0)
    reference = getattr(explicit, stack)()
    model = getattr(compiled, stack)()
    model.load_state_dict(reference.state_dict())
    assert list(model.state_dict()) == list(reference.state_dict())
    calls = _python_steps(compiled, monkeypatch)
    x = _input(reference)
    lengths = torch.tensor([6, 2, 4])
    for mode in ("train", "eval"):
        getattr(reference, mode)()
        getattr(model, mode)()
        _compare(reference, model, x, None)
        _compare(reference, model, x, lengths)
    assert calls == []  # every step ran in C++


@needs_compiler
@pytest.mark.parametrize("stack", sorted(TORCH_CLASSES))
def test_builtin_cells_as_equations_equal_torch_nn(mixed, stack):
    _, compiled = mixed
    torch.manual_seed(1)
    model = getattr(compiled, stack)()
    core = model.core
    kwargs = {"proj_size": core.state_sizes[0]} if stack == "LstmProj" else {}
    if stack == "RnnRelu":
        kwargs["nonlinearity"] = "relu"
    reference = getattr(torch.nn, TORCH_CLASSES[stack])(
        model.input_size,
        core.hidden_size,
        num_layers=core.num_layers,
        bidirectional=core.num_directions == 2,
        **kwargs,
    )
    reference.load_state_dict({k.split(".", 1)[1]: v for k, v in model.state_dict().items()})
    x = _input(model)
    out, finals = model(x)
    expected, expected_finals = reference(x)
    _close((out, finals), (expected, expected_finals))
    out.sum().backward()
    expected.sum().backward()
    mine = dict(model.core.named_parameters())
    for name, parameter in reference.named_parameters():
        torch.testing.assert_close(mine[name].grad, parameter.grad, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        _close(model(x), reference(x))


@needs_compiler
@pytest.mark.parametrize("index", range(RANDOM_CELLS))
def test_random_cells_equal_the_explicit_backend(mixed, index, monkeypatch):
    explicit, compiled = mixed
    torch.manual_seed(index)
    reference = getattr(explicit, f"R{index}")().double().eval()
    model = getattr(compiled, f"R{index}")().double().eval()
    model.load_state_dict(reference.state_dict())
    calls = _python_steps(compiled, monkeypatch)
    x = _input(reference, T=5, dtype=torch.float64) * 0.5
    _compare(reference, model, x, None, rtol=1e-7, atol=1e-9)
    _compare(reference, model, x, torch.tensor([5, 0, 3]), rtol=1e-7, atol=1e-9)
    if f"_CellRandom{index}" in compiled._COMPILED:
        assert calls == []


@needs_compiler
def test_regularisers_draw_the_masks_of_the_explicit_backend(mixed):
    explicit, compiled = mixed
    reference, model = explicit.Regularised(), compiled.Regularised()
    model.load_state_dict(reference.state_dict())
    x = _input(reference)
    _compare(reference, model, x, None)  # training: the same masks from the same seed
    _compare(reference, model, x, torch.tensor([6, 1, 3]))
    reference.eval()
    model.eval()
    _compare(reference, model, x, torch.tensor([6, 1, 3]))  # zoneout's expectation


@needs_compiler
@pytest.mark.parametrize("lengths", [None, [3, 1]])
def test_gradcheck_float64(mixed, lengths):
    _, compiled = mixed
    torch.manual_seed(3)
    model = compiled.Tiny().double()
    names = [name for name, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    given = None if lengths is None else torch.tensor(lengths)

    def run(x, h0, *params):
        state = dict(zip(names, params))
        output, (h_n, c_n) = torch.func.functional_call(
            model, state, (x, (h0, None)), {"lengths": given}
        )
        return output, h_n, c_n

    assert torch.autograd.gradcheck(run, (x, h0, *params))


@needs_compiler
@pytest.mark.parametrize("stack", [*STACKS, "TiedStack"])
def test_gradcheck_float64_every_library_cell(library, stack):
    """gradcheck (fast mode: random directions) of every cell of the library, through the
    generated backward where it runs, with lengths, wrt the input and every parameter."""
    _, compiled = library
    torch.manual_seed(5)
    model = getattr(compiled, stack)().double().eval()
    names = [name for name, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    x = (_input(model, T=3, B=2, dtype=torch.float64) * 0.5).requires_grad_()
    lengths = torch.tensor([3, 2])

    def run(x, *params):
        state = dict(zip(names, params))
        out = torch.func.functional_call(model, state, (x,), {"lengths": lengths})
        return tuple(t for t in _flat(out) if t.is_floating_point())

    assert torch.autograd.gradcheck(run, (x, *params), fast_mode=True)


class _NoGenericLoop:
    """The library with its generic loops (`loop_<k>`) refused: only `train_<k>`/`back_<k>`."""

    def __init__(self, library):
        self.library = library

    def __getattr__(self, name):
        if name.startswith("loop_"):
            raise AssertionError(f"the generic loop `{name}` ran")
        return getattr(self.library, name)


@needs_compiler
@pytest.mark.parametrize("stack", ["Tiny", "Gru", "Reverse", "Regularised", "Lstm"])
def test_gradients_run_the_generated_backward(mixed, stack, monkeypatch):
    explicit, compiled = mixed
    library = compiled._compiled_library()
    monkeypatch.setattr(compiled, "_compiled_library", lambda: _NoGenericLoop(library))
    torch.manual_seed(9)
    reference, model = getattr(explicit, stack)(), getattr(compiled, stack)()
    model.load_state_dict(reference.state_dict())
    x = _input(reference)
    for mode in ("train", "eval"):
        for lengths in (None, torch.tensor([6, 2, 5])):
            reference.train(mode == "train")
            model.train(mode == "train")
            grads = []
            for net in (reference, model):
                net.zero_grad()
                torch.manual_seed(7)  # the same masks
                output, finals = net(x, lengths=lengths)
                loss = sum((t * t.detach().cos()).sum() for t in _flat((output, finals)))
                loss.backward()
                grads.append(((output, finals), [p.grad for p in net.parameters()]))
            _close(grads[1], grads[0])
    assert "CompiledLoopBackward" in _graph(model(x)[0])
    monkeypatch.setenv("RNNSPEC_COMPILED_GENERIC", "1")  # forces the generic path
    monkeypatch.setattr(compiled, "_compiled_library", lambda: library)
    assert "CompiledLoopBackward" not in _graph(model(x)[0])


def _graph(tensor) -> set[str]:
    """The names of the autograd nodes that `tensor`'s backward runs."""
    seen, names, pending = set(), set(), [tensor.grad_fn]
    while pending:
        node = pending.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names.add(type(node).__name__)
        pending.extend(next_node for next_node, _ in node.next_functions)
    return names


@needs_compiler
def test_a_weight_used_with_and_without_a_bias(mixed):
    """`w @ h + b` then `w @ s`: one weight, two bias sets. The generated backward has one
    gradient list per weight, so this cell keeps autograd (its bias gradient would
    otherwise take the unbiased product's share too)."""
    explicit, compiled = mixed
    torch.manual_seed(4)
    reference, model = explicit.TiedStack(), compiled.TiedStack()
    model.load_state_dict(reference.state_dict())
    x = _input(reference, T=PACKED_STEPS + 2)
    for mode in ("train", "eval"):
        reference.train(mode == "train")
        model.train(mode == "train")
        _compare(reference, model, x, None)
        _compare(reference, model, x, torch.tensor([10, 3, 7]))
    assert "CompiledLoopBackward" not in _graph(model(x)[0])


# ------------------------------------------------ the CPU fast path's matrix products

needs_onednn = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN"
)
PACKED_BATCH, PACKED_STEPS = 4, 8  # fused.py's kPackedBatch and kPackedSteps
HOIST_BLOCK = 512  # compiled.py.jinja's _BLOCK: the hoist's rows per oneDNN call


def _op_counts(model, x, lengths=None) -> dict:
    """How many times each op ran in one forward without gradients (the profiler's names)."""
    from torch.profiler import profile

    with torch.no_grad(), profile() as prof:
        model(x, lengths=lengths)
    counts: dict = {}
    for event in prof.events():
        counts[event.name] = counts.get(event.name, 0) + 1
    return counts


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B", [1, PACKED_BATCH - 1, PACKED_BATCH + 2, 1400])
def test_fast_path_products_equal_the_explicit_backend(mixed, B, dtype):
    """Below and above the batch from which oneDNN runs the products (float32 only),
    with lengths, reversed and bidirectional layers, a projection (`mm` without bias);
    B = 1: the generated one-row product (`_gemv`);
    B = 1400: 8400 values a step, from which the loop writes each step's output into the
    result (no final stack)."""
    explicit, compiled = mixed
    rtol, atol = (1e-5, 1e-5) if dtype == torch.float32 else (1e-7, 1e-9)
    T = PACKED_STEPS + 1
    for stack in ("Lstm", "LstmProj", "Gru", "Reverse"):
        torch.manual_seed(B)
        reference = getattr(explicit, stack)().to(dtype).eval()
        model = getattr(compiled, stack)().to(dtype).eval()
        model.load_state_dict(reference.state_dict())
        x = _input(reference, T=T, B=B, dtype=dtype)
        lengths = torch.randint(1, T + 1, (B,))
        lengths[0] = T
        for given in (None, lengths):
            with torch.no_grad():
                _close(model(x, lengths=given), reference(x, lengths=given), rtol, atol)
    torch.manual_seed(B)
    model = compiled.Lstm().to(dtype).eval()
    lstm = torch.nn.LSTM(5, 6, num_layers=2, bidirectional=True).to(dtype)
    lstm.load_state_dict({k.split(".", 1)[1]: v for k, v in model.state_dict().items()})
    x = _input(model, T=T, B=B, dtype=dtype)
    with torch.no_grad():
        _close(model(x), lstm(x), rtol, atol)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_row_products_equal_the_explicit_backend(library, dtype):
    """B = 1 from `PACKED_STEPS` steps: every cell of the library through `_gemv`, in the
    fast path and the generated backward's forward."""
    explicit, compiled = library
    rtol, atol = (1e-5, 1e-5) if dtype == torch.float32 else (1e-7, 1e-9)
    for stack in [*STACKS, "Wide"]:  # Wide: 148 rows of 37, the vector loop and its rest
        torch.manual_seed(1)
        reference = getattr(explicit, stack)().to(dtype).eval()
        model = getattr(compiled, stack)().to(dtype).eval()
        model.load_state_dict(reference.state_dict())
        x = _input(reference, T=PACKED_STEPS + 1, B=1, dtype=dtype)
        _compare(reference, model, x, None, rtol, atol)  # with gradients, then without
        _compare(reference, model, x, torch.tensor([PACKED_STEPS - 2]), rtol, atol)
    assert "_add_mm(v_gates_x, " in compiled._CPP_SOURCE  # `gates_x + W_hh @ h`: no loop
    model = compiled.Lstm().to(dtype).eval()
    found = _op_counts(model, _input(model, T=PACKED_STEPS + 1, B=1, dtype=dtype))
    assert "aten::mm" not in found  # the generated product in each step
    assert found.get("aten::addmm") == 4  # the hoist's (9 rows: ATen's, in Python)
    short = _op_counts(model, _input(model, T=PACKED_STEPS - 1, B=1, dtype=dtype))
    assert short.get("aten::mm") == 4 * (PACKED_STEPS - 1)  # ATen's below the steps


@needs_compiler
@needs_onednn
def test_onednn_runs_the_products_from_the_batch_threshold(mixed, monkeypatch):
    _, compiled = mixed
    torch.manual_seed(9)
    model = compiled.Lstm().eval()  # 2 layers x 2 directions: 4 loops, 1 recurrent weight each
    loops, T = 4, PACKED_STEPS + 1
    above = _op_counts(model, _input(model, T=T, B=PACKED_BATCH))
    assert above.get("mkldnn::_reorder_linear_weight") == loops  # packed once per loop
    assert above.get("mkldnn::_linear_pointwise") == loops * (T + 1)  # each step, the hoist
    assert "aten::mm" not in above and "aten::addmm" not in above
    below = _op_counts(model, _input(model, T=T, B=PACKED_BATCH - 1))
    assert "mkldnn::_reorder_linear_weight" not in below
    assert below.get("aten::mm") == loops * T  # MKL's mm in each step
    assert below.get("mkldnn::_linear_pointwise") == loops  # the hoist: 27 rows, from 16
    short = _op_counts(model, _input(model, T=PACKED_STEPS - 1, B=PACKED_BATCH))
    assert "mkldnn::_reorder_linear_weight" not in short  # too few steps to pay the packing
    double = compiled.Lstm().double().eval()
    found = _op_counts(double, _input(double, T=T, B=PACKED_BATCH, dtype=torch.float64))
    assert "mkldnn::_linear_pointwise" not in found and found.get("aten::mm") == loops * T
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # the user's switch: ATen's products
    try:
        off = _op_counts(model, _input(model, T=T, B=PACKED_BATCH))
    finally:
        torch.backends.mkldnn.enabled = before
    assert "mkldnn::_linear_pointwise" not in off and off.get("aten::mm") == loops * T
    monkeypatch.setenv("RNNSPEC_COMPILED_ONEDNN", "0")  # the hoist reads it at each call
    hoist = _op_counts(model, _input(model, T=T, B=PACKED_BATCH))
    assert hoist.get("mkldnn::_linear_pointwise") == loops * T and "aten::addmm" in hoist
    monkeypatch.delenv("RNNSPEC_COMPILED_ONEDNN")
    blocks = _op_counts(model, _input(model, T=T, B=HOIST_BLOCK // T * 3))  # 3 blocks less a few
    assert blocks.get("mkldnn::_reorder_linear_weight") == 2 * loops  # the step's, the hoist's
    assert blocks.get("mkldnn::_linear_pointwise") == loops * (T + 3)
    with torch.enable_grad():  # gradients: the generated backward, products packed too
        output = model(_input(model, T=T, B=PACKED_BATCH))[0]
        assert "CompiledLoopBackward" in _graph(output)
        output.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@needs_compiler
@needs_onednn
def test_the_blocked_hoist_reuses_its_buffer_only_where_nothing_holds_it(mixed):
    _, compiled = mixed
    torch.manual_seed(3)
    rows = 2 * HOIST_BLOCK + 7
    weight, bias = torch.randn(24, 10), torch.randn(24)
    inputs = [torch.randn(rows, 10) for _ in range(3)]
    with torch.no_grad():
        first = compiled._onednn_blocks(inputs[0], weight, bias)
        second = compiled._onednn_blocks(inputs[1], weight, bias)  # `first` is held
        assert second.data_ptr() != first.data_ptr()
        _close(first, torch.nn.functional.linear(inputs[0], weight, bias))
        _close(second, torch.nn.functional.linear(inputs[1], weight, bias))
        kept = second.data_ptr()
        del second
        third = compiled._onednn_blocks(inputs[2], weight, bias)
        assert third.data_ptr() == kept  # nothing held the buffer: reused
        _close(third, torch.nn.functional.linear(inputs[2], weight, bias))
        view = third[5:9]
        del third
        fourth = compiled._onednn_blocks(inputs[0], weight, bias)  # a view holds it
        assert fourth.data_ptr() != kept
        _close(view, torch.nn.functional.linear(inputs[2], weight, bias)[5:9])
        del fourth
    with torch.inference_mode():  # a buffer made there is not written outside it
        inside = compiled._onednn_blocks(inputs[1], weight, bias)
        assert inside.is_inference()
        del inside
    with torch.no_grad():
        outside = compiled._onednn_blocks(inputs[1], weight, bias)
        _close(outside, torch.nn.functional.linear(inputs[1], weight, bias))
    with torch.no_grad():  # a caller holding the buffer's Python storage object
        held = compiled._onednn_blocks(inputs[0], weight, bias)
        storage, kept = held.untyped_storage(), held.data_ptr()
        del held
        assert compiled._onednn_blocks(inputs[1], weight, bias).data_ptr() != kept
        del storage


@needs_compiler
def test_a_device_the_fast_path_cannot_serve(mixed, monkeypatch):
    """Without CUDA the move fails with torch's message; a non-CPU device (`meta` stands
    in for one here) runs the generic C++ loop, not the fast path nor the Python loop;
    an input on another device than the weights is a clear error naming the devices."""
    _, compiled = mixed
    if not torch.cuda.is_available():
        with pytest.raises((AssertionError, RuntimeError), match="CUDA"):
            compiled.Lstm().cuda()
    calls = _python_steps(compiled, monkeypatch)
    model = compiled.Lstm().to("meta")
    output, (h, c) = model(torch.empty(6, 3, 5, device="meta"))
    assert output.device.type == "meta" and tuple(output.shape) == (6, 3, 12)
    assert tuple(h.shape) == (4, 3, 6) and tuple(c.shape) == (4, 3, 6)
    assert calls == []  # the C++ op ran
    with pytest.raises(RuntimeError, match="device"):
        compiled.Lstm()(torch.empty(6, 3, 5, device="meta"))


def _fake_compiler(folder: Path, refuses: str) -> Path:
    """A compiler that logs its arguments, fails naming `refuses` where it is given, and
    otherwise writes an empty output."""
    script = folder / "cxx"
    script.write_text(
        textwrap.dedent(f"""\
            #!/bin/sh
            echo "$@" >> "{folder}/log"
            out=""
            previous=""
            for a in "$@"; do
              case "$a" in
                {refuses}) echo "cxx: error: unrecognized command-line option '$a'" >&2; exit 1;;
              esac
              if [ "$previous" = "-o" ]; then out="$a"; fi
              previous="$a"
            done
            : > "$out"
            """),
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def test_a_compiler_without_the_cpu_flags_builds_without_them(tmp_path, monkeypatch):
    from rnnspec.backends.compiled import build

    monkeypatch.setattr(build, "_cpu_flags", lambda: ("-mavx2", "-mfma"))
    monkeypatch.setenv("RNNSPEC_COMPILED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(_fake_compiler(tmp_path, "-mavx2")))
    path = build.library_path("// a source")
    assert os.path.exists(path)
    calls = (tmp_path / "log").read_text(encoding="utf-8").splitlines()
    assert len(calls) == 2 and "-mavx2" in calls[0] and "-mavx2" not in calls[1]
    (tmp_path / "log").unlink()
    monkeypatch.setenv("CXX", str(_fake_compiler(tmp_path, "*.cpp")))  # a real error
    with pytest.raises(build.BuildError, match="unrecognized"):
        build.library_path("// another source")
    assert len((tmp_path / "log").read_text(encoding="utf-8").splitlines()) == 1  # no retry


# ----------------------------------------------------------------------------- the cache

TINY = "stack Small {{\n    input_size = 2\n    core = gru(hidden_size = {size})\n}}\n"

PROGRAM = textwrap.dedent("""
    import sys, time, warnings
    import torch
    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source, load_source
    text = sys.argv[1]
    result = check_source(text, "small.rnn")
    compiled = load_source(generate_source(result, "compiled"), "small.rnn")
    explicit = load_source(generate_source(result, "explicit"), "small.rnn")
    steps = []
    advance = compiled._Recurrent.advance
    compiled._Recurrent.advance = lambda self, *a, **k: steps.append(1) or advance(self, *a, **k)
    torch.manual_seed(0)
    a, b = explicit.Small(), compiled.Small()
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 2, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        began = time.perf_counter()
        out = b(x)[0]
        seconds = time.perf_counter() - began
        b(x)
    torch.testing.assert_close(out, a(x)[0], rtol=1e-5, atol=1e-5)
    for w in caught:
        print("WARNING", w.message)
    print("STEPS", len(steps), "SECONDS", round(seconds, 3))
""")


def _program(text: str, cache: Path, **env) -> subprocess.Popen:
    environment = {
        **os.environ,
        "RNNSPEC_COMPILED_CACHE": str(cache),
        "PYTHONPATH": str(ROOT),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-c", PROGRAM, text],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return out


@needs_compiler
def test_two_processes_build_at_once_and_a_third_reads_the_cache():
    """The session's library is built by two processes started together into an empty
    cache (tests/compiled_prebuild.py): both succeed and leave one library, no temporary
    folder; a later process reads it without running the compiler (it would fail)."""
    build = compiled_prebuild.start(all_text())
    assert len(build.processes) == 2
    for out in build.finish():
        assert "WARNING" not in out and "LIBRARY True" in out, out
        assert "STEPS 0 " in out, out  # the C++ loop ran, in both
    entries = sorted(p.name for p in build.cache.iterdir())
    assert len(entries) == 1 and not entries[0].startswith("."), entries  # no leftovers
    out, err = build.run(CXX="/bin/false").communicate(timeout=600)
    assert "WARNING" not in out and "LIBRARY True" in out, out + err
    assert "STEPS 0 " in out, out
    seconds = float(out.split("SECONDS")[1])
    assert seconds < 10  # the target is 2 s; the machine is shared


def test_a_full_disk_is_a_clear_error_and_the_explicit_backend_runs(tmp_path, monkeypatch):
    """The cache's disk full when the source is written, or when the compiler writes the
    library: a BuildError naming it, nothing left in the cache, one warning and no library
    from load_library (the module then runs the explicit backend, as tested above)."""
    import errno

    from rnnspec.backends.compiled import build

    cache = tmp_path / "cache"
    monkeypatch.setenv("RNNSPEC_COMPILED_CACHE", str(cache))
    monkeypatch.setenv("CXX", str(_fake_compiler(tmp_path, "-never")))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(build, "open", full, raising=False)  # the source's write
    with pytest.raises(build.BuildError, match="cannot write the cache folder .*No space left"):
        build.library_path("// a source")
    assert list(cache.iterdir()) == []  # the build folder removed
    monkeypatch.undo()
    monkeypatch.setenv("RNNSPEC_COMPILED_CACHE", str(cache))
    linker = tmp_path / "full-cxx"
    linker.write_text(
        "#!/bin/sh\necho '/usr/bin/ld: final link failed: No space left on device' >&2\nexit 1\n",
        encoding="utf-8",
    )
    linker.chmod(0o755)
    monkeypatch.setenv("CXX", str(linker))
    with pytest.raises(build.BuildError, match="failed: .*No space left on device"):
        build.library_path("// another source")
    with pytest.warns(RuntimeWarning, match="No space left on device.*explicit backend"):
        assert build.load_library("// a third source", "rnnspec_full_disk_test") is None
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize(
    "compiler, cache, expected",
    [
        ("/bin/false", None, "/bin/false failed"),
        ("/nonexistent/c++", None, "/nonexistent/c++: not found"),
        (None, "file/sub", "cannot write the cache folder"),
    ],
)
def test_a_failed_build_warns_once_and_runs_the_explicit_backend(
    tmp_path, compiler, cache, expected
):
    folder = tmp_path / "cache"
    if cache:
        (tmp_path / "file").write_text("not a folder")
        folder = tmp_path / cache
    env = {"CXX": compiler} if compiler else {}
    if not compiler and not HAS_COMPILER:
        pytest.skip("no C++ compiler")
    out = _finish(_program(TINY.format(size=4), folder, **env))
    warned = [line for line in out.splitlines() if line.startswith("WARNING")]
    assert len(warned) == 1, out
    assert "compiled backend: cannot build the C++ loops" in warned[0]
    assert expected in warned[0] and "running the explicit backend" in warned[0]
    assert "STEPS 10 " in out  # two calls of five Python steps: the explicit loop


@needs_compiler
def test_a_compiled_model_pickles(library):
    import pickle

    _, compiled = library
    torch.manual_seed(5)
    model = compiled.TorchStack().eval()
    copy = pickle.loads(pickle.dumps(model))
    x = _input(model)
    with torch.no_grad():
        _close(copy(x), model(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@needs_compiler
def test_the_generic_path_runs_on_cuda(library):
    explicit, compiled = library
    torch.manual_seed(6)
    reference = explicit.TorchStack().cuda()
    model = compiled.TorchStack().cuda()
    model.load_state_dict(reference.state_dict())
    x = _input(reference).cuda()
    _compare(reference, model, x, torch.tensor([6, 2, 4]))


def test_generate_writes_the_compiled_module(tmp_path):
    out = tmp_path / "cells.py"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnspec",
            "generate",
            str(LIBRARY),
            "--backend",
            "compiled",
            "-o",
            str(out),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    source = out.read_text(encoding="utf-8")
    assert "(backend: compiled)" in source.splitlines()[0]
    assert "TORCH_LIBRARY(rnnspec_" in source and "_compiled_run(self" in source
    import rnnspec

    assert rnnspec.generate(str(LIBRARY), backend="compiled") == source  # deterministic


@needs_compiler
def test_reverse_learned_states_given_states_and_unbatched_input(mixed):
    explicit, compiled = mixed
    torch.manual_seed(8)
    for stack in ("Reverse", "Lstm"):
        reference, model = getattr(explicit, stack)(), getattr(compiled, stack)()
        with torch.no_grad():
            for parameter in reference.parameters():
                parameter.normal_()  # learned initial states away from zero
        model.load_state_dict(reference.state_dict())
        x = _input(reference)
        _compare(reference, model, x, None)
        _compare(reference, model, x, torch.tensor([6, 3, 1]))
    reference, model = explicit.Lstm(), compiled.Lstm()
    model.load_state_dict(reference.state_dict())
    h0 = torch.randn(3, 4, 6).transpose(0, 1)  # [4, 3, 6], not contiguous
    c0 = torch.randn(4, 3, 6)
    x = torch.randn(6, 3, 5)
    _close(model(x, (h0, c0)), reference(x, (h0, c0)))
    with torch.no_grad():
        _close(model(x, (h0, c0)), reference(x, (h0, c0)))
        _close(model(x[:, 0]), reference(x[:, 0]))  # unbatched: [T, features]
