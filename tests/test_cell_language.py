"""Section 11's forms inside a cell's equations: number arguments, conditions and `where`,
`dropout` in the step, `require`, rows of a matrix parameter and heads.

Each form is checked three ways: its mistakes are located diagnostics; its blocks equal a
plain-PyTorch loop written from the cited source (or from the language's rule) on both
torch backends; and the ONNX export equals the module in onnxruntime.
"""

from __future__ import annotations

import functools

import pytest

torch = pytest.importorskip("torch")

from cell_references import (  # noqa: E402
    REFERENCES,
    SQUARE_REFERENCES,
    clipped_lstm_step,
    original_gru_step,
)
from user_cells import (  # noqa: E402
    BACKENDS,
    as_tuple,
    generated_module,
    library,
    params_by_layer_dir,
    run_reference,
)

import rnnspec  # noqa: E402
from rnnspec import check_source  # noqa: E402

F64 = torch.float64


def codes(source: str) -> list[tuple[str, int, int]]:
    result = check_source(source, "t.rnn")
    return [(d.code, d.span.line, d.span.column) for d in result.diagnostics if d.is_error]


def errors(source: str):
    return [d for d in check_source(source, "t.rnn").diagnostics if d.is_error]


def stack(cell: str, block: str, input_size: int = 4) -> str:
    return f"{cell}\nstack S {{\n    input_size = {input_size}\n    {block}\n}}\n"


# ----------------------------------------------------------------------------- diagnostics

CELL_T = """cell T(theta = 0.5, p = 0.25, heads = 2) {
    state h[hidden_size]
    param w[hidden_size, input_size]
    param r[heads, hidden_size // heads, hidden_size // heads]
    %s
}"""


@pytest.mark.parametrize("body, code, where", [
    ("h = x > theta", "E078", (5, 9)),                          # a condition as a value
    ("h = tanh(w @ x) + (x < 0.0)", "E078", (5, 24)),
    ("h = where(w @ x, x, h)", "E078", (5, 15)),                 # a value as a condition
    ("h = where(x > 0.0 and w @ x, x, h)", "E078", (5, 27)),
    ("h = where(not w @ x, x, h)", "E078", (5, 19)),
    ("h = tanh(w @ x) * hidden_size", "E074", (5, 23)),          # a size as a value
    ("h = dropout(w @ x, 1.0)", "E021", (5, 24)),                # p outside [0, 1)
    ("h = dropout(w @ x, -0.5)", "E021", (5, 24)),
    ("h = dropout(w @ x, x)", "E074", (5, 24)),                  # p not a number
    ("h = dropout(w @ x, p, per = banana)", "E074", (5, 33)),
    ("h = where(theta > 1.0, x, h)", "E074", (5, 21)),           # two numbers compared
    ("h = where(x > 0.0, w, h)", "E072", (5, 24)),               # a matrix as a value
    ("a, b = chunk(r, 2)\n    h = a @ h", "E073", (5, 18)),     # heads are not chunked
    ("a, b = chunk(w, 3)\n    h = a @ x", "E073", (5, 21)),     # pieces vs names
    ("a, b = chunk(w, 2)\n    h = a + x", "E072", (6, 9)),      # a piece as a value
    ("h = tanh(r @ x)", "E072", (5, 16)),                       # heads: the wrong vector
    ("h = x if x > 0.0 else h", "E074", (5, 9)),
])
def test_mistakes_of_the_new_forms_are_located(body, code, where):
    source = stack(CELL_T % body, "T(hidden_size = 4)")
    found = codes(source)
    assert (code, *where) in found, found
    assert all(c.startswith("E") for c, _, _ in found)


def test_a_size_used_as_a_value_says_how_to_declare_a_number():
    source = stack("cell C(k = 2) {\n state h[hidden_size]\n h = tanh(x) * k\n}",
                   "C(hidden_size = 4)")
    (problem,) = errors(source)
    assert problem.code == "E074" and "float default" in problem.help
    assert "k = 1.0" in problem.help


def test_a_number_argument_is_not_a_size():
    source = stack("cell C(k = 2.0) {\n state h[k]\n h = tanh(x)\n}", "C(hidden_size = 4)")
    assert ("E020", 2, 10) in codes(source)


@pytest.mark.parametrize("require, where", [
    ("require x == hidden_size", (2, 13)),
    ("require clip == hidden_size", (2, 13)),
    ("require input_size < hidden_size", (2, 13)),
    ("require input_size", (2, 13)),
])
def test_require_is_between_sizes(require, where):
    cell = f"cell C(clip = 1.0) {{\n    {require}\n    state h[hidden_size]\n" \
           "    h = tanh(x * h)\n}"
    found = codes(stack(cell, "C(hidden_size = 4)"))
    assert ("E079", *where) in found, found


def test_a_broken_require_is_reported_at_the_block_with_a_note_at_the_require():
    cell = ("cell C {\n    require input_size == hidden_size\n    state h[hidden_size]\n"
            "    h = tanh(x * h)\n}")
    (problem,) = errors(stack(cell, "C(hidden_size = 6)", input_size=4))
    assert (problem.code, problem.span.line) == ("E079", 8)
    assert "4 != 6" in problem.message
    assert problem.notes[0].span.line == 2
    # a later layer reads both directions of the first state: 2 * 4 features
    (problem,) = errors(stack(cell, "C(hidden_size = 4, num_layers = 2, bidirectional = true)"))
    assert problem.code == "E079" and "layer 1" in problem.message
    # with one direction every layer meets it, and `x * h` checks with it
    assert errors(stack(cell, "C(hidden_size = 4, num_layers = 3)")) == []


def test_heads_that_do_not_divide_are_reported_at_the_block():
    source = stack(CELL_T % "h = tanh(w @ x + r @ h)", "T(hidden_size = 5, heads = 2)")
    (problem,) = errors(source)
    assert problem.code == "E077" and "not a multiple of heads = 2" in problem.message
    assert problem.span.line == 9 and problem.notes[0].span.line == 4


def test_rows_that_do_not_divide_are_reported():
    cell = ("cell C {\n    state h[(hidden_size + 1) // 2]\n"
            "    param w[hidden_size + 1, input_size]\n"
            "    a, b = chunk(w, 2)\n    h = tanh(a @ x + b @ x)\n}")
    (problem,) = errors(stack(cell, "C(hidden_size = 2)"))
    assert problem.code == "E077" and "rows of `w`" in problem.message
    constant = ("cell C {\n    state h[hidden_size]\n    param w[3, input_size]\n"
                "    a, b = chunk(w, 2)\n    h = tanh(a @ x)\n}")
    assert ("E073", 4, 12) in codes(stack(constant, "C(hidden_size = 2)"))


def test_a_number_argument_used_as_a_probability_is_checked_per_block():
    cell = ("cell C(p = 0.5) {\n    state h[hidden_size]\n    param w[hidden_size, input_size]\n"
            "    h = tanh(dropout(w @ x, p))\n}")
    assert errors(stack(cell, "C(hidden_size = 2, p = 0.9)")) == []
    (problem,) = errors(stack(cell, "C(hidden_size = 2, p = 1.0)"))
    assert (problem.code, problem.span.line) == ("E021", 8)
    assert problem.notes[0].span.line == 4


# ----------------------------------------------------------------------------- numbers

def _model(source: str, name: str, backend: str, dtype=F64):
    model = getattr(generated_module(source, backend), name)(dtype=dtype)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=generator, dtype=dtype) * 1.6 - 0.8)
    return model.eval()


def _reference(step, model, block: str, x, h0):
    params = params_by_layer_dir(dict(model.named_parameters()), prefix=f"{block}.")
    return run_reference(step, params, x, h0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_block_uses_its_own_number_arguments(backend):
    """AllenNLP's clipped LSTM: two blocks of one cell, each with its own clips, equal
    AllenNLP's equations with those clips; the clips take effect."""
    source = stack(library()["ClippedLSTM"],
                   "a = ClippedLSTM(hidden_size = 3, cell_size = 5, memory_clip = 0.2, "
                   "state_clip = 0.1)\n    b = ClippedLSTM(hidden_size = 3, cell_size = 5)")
    model = _model(source, "S", backend)
    x = torch.randn(6, 2, 4, dtype=F64) * 3
    h0 = (torch.zeros(1, 2, 3, dtype=F64), torch.zeros(1, 2, 5, dtype=F64))
    with torch.no_grad():
        out_a, (h_a, c_a) = model.a(x)
        want, (h_want, c_want) = _reference(
            functools.partial(clipped_lstm_step, memory_clip=0.2, state_clip=0.1),
            model, "a", x, h0)
        torch.testing.assert_close(out_a, want)
        torch.testing.assert_close(c_a, c_want)
        assert out_a.abs().max() <= 0.1 + 1e-12 and c_a.abs().max() <= 0.2 + 1e-12
        assert (out_a.abs() == 0.1).any(), "the state clip is reached"
        out_b, _ = model.b(out_a)
        want_b, _ = _reference(clipped_lstm_step, model, "b", out_a, h0)
        torch.testing.assert_close(out_b, want_b)
    source_text = rnnspec.generate_source(check_source(source, "t.rnn"), backend=backend) \
        if hasattr(rnnspec, "generate_source") else None
    if source_text is not None:
        assert '"memory_clip": 0.2' in source_text


# ----------------------------------------------------------------------------- conditions

THRESHOLD = """cell Thresholded(alpha = 0.3) {
    state h[hidden_size]
    param w[hidden_size, input_size]
    param u[hidden_size, hidden_size]

    a = w @ x + u @ h
    h = where(a > alpha and not (a > 2.0 or a == 1.5), a, 0.0) + where(h < 0.0, 1.0, -1.0)
}"""


def threshold_step(p, x, states, alpha):
    # ONNX ThresholdedRelu (y = x if x > alpha else 0), capped above 2 and holed at 1.5,
    # plus a sign flip of the previous state, written with plain torch.
    (h,) = states
    a = x @ p["w"].T + h @ p["u"].T
    kept = (a > alpha) & ~((a > 2.0) | (a == 1.5))
    return (torch.where(kept, a, torch.zeros_like(a))
            + torch.where(h < 0, torch.ones_like(h), -torch.ones_like(h)),)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_where_and_conditions_equal_plain_torch(backend, dtype):
    source = stack(THRESHOLD, "Thresholded(hidden_size = 5, num_layers = 2, alpha = 0.1)")
    model = _model(source, "S", backend, dtype)
    x = torch.randn(7, 3, 4, dtype=dtype)
    h0 = torch.randn(2, 3, 5, dtype=dtype)
    with torch.no_grad():
        out, h_n = model(x, h0)
        want, (h_want,) = _reference(functools.partial(threshold_step, alpha=0.1), model,
                                     "thresholded0", x, (h0,))
    assert out.dtype == dtype
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(h_n, h_want)


# ----------------------------------------------------------------------------- require: SRU

@pytest.mark.parametrize("backend", BACKENDS)
def test_sru_runs_three_layers_without_a_workaround(backend):
    """SRU's highway `(1 - r) * x` with `require input_size == hidden_size`: three layers,
    outputs, final states and gradients equal the plain loop of Lei et al.'s equations."""
    ref = SQUARE_REFERENCES["SRU"]
    source = stack(library()["SRU"], "SRU(hidden_size = 6, num_layers = 3)", input_size=6)
    model = _model(source, "S", backend)
    x1 = torch.randn(5, 2, 6, dtype=F64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    h0 = tuple(torch.randn(3, 2, 6, dtype=F64) for _ in ref.states)
    out, state = model(x1, h0)
    own = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    want, want_state = run_reference(ref.step, params_by_layer_dir(own, prefix="sru0."), x2, h0)
    torch.testing.assert_close(out, want)
    for got, expected in zip(as_tuple(state), want_state, strict=True):
        torch.testing.assert_close(got, expected)
    (out.square().sum() + state[1].square().sum()).backward()
    (want.square().sum() + want_state[1].square().sum()).backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    for key, p in model.named_parameters():
        torch.testing.assert_close(p.grad, own[key].grad)


# ----------------------------------------------------------------------------- rows: GRU

def test_the_original_gru_loads_onnx_weights_after_reordering_gates_only():
    """ONNX's GRU operator with linear_before_reset = 0 (Cho et al.'s GRU): its W, R, Wb, Rb
    (gates z, r, h) load into OriginalGRU's stacked weights (r, z, n) by moving gate blocks,
    and onnxruntime's outputs are the module's."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    hidden, features, steps, batch = 5, 4, 6, 3
    rng = torch.Generator().manual_seed(2)
    W = torch.randn(1, 3 * hidden, features, generator=rng)
    R = torch.randn(1, 3 * hidden, hidden, generator=rng) * 0.5
    B = torch.randn(1, 6 * hidden, generator=rng)
    x = torch.randn(steps, batch, features, generator=rng)
    node = helper.make_node("GRU", ["x", "W", "R", "B"], ["y", "y_h"], hidden_size=hidden,
                            linear_before_reset=0)
    graph = helper.make_graph(
        [node], "gru", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, batch,
                                                                             features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [steps, 1, batch, hidden]),
         helper.make_tensor_value_info("y_h", TensorProto.FLOAT, [1, batch, hidden])],
        [numpy_helper.from_array(t.numpy(), n) for t, n in ((W, "W"), (R, "R"), (B, "B"))])
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model_proto)
    session = ort.InferenceSession(model_proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    y, y_h = session.run(None, {"x": x.numpy()})

    def rzn(stacked):  # ONNX z, r, h -> PyTorch r, z, n: the gate blocks move, nothing else
        z, r, n = stacked.chunk(3, dim=0)
        return torch.cat([r, z, n])

    source = stack(library()["OriginalGRU"], "gru = OriginalGRU(hidden_size = 5)")
    model = generated_module(source, "explicit").S().eval()
    model.load_state_dict({"gru.weight_ih_l0": rzn(W[0]), "gru.weight_hh_l0": rzn(R[0]),
                           "gru.bias_ih_l0": rzn(B[0, :3 * hidden]),
                           "gru.bias_hh_l0": rzn(B[0, 3 * hidden:])}, strict=True)
    with torch.no_grad():
        out, h_n = model(x)
    torch.testing.assert_close(out, torch.from_numpy(y[:, 0]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_n, torch.from_numpy(y_h), atol=1e-5, rtol=1e-5)
    # and the reference of Cho et al.'s equations agrees with both
    params = params_by_layer_dir(dict(model.named_parameters()), prefix="gru.")
    want, _ = run_reference(original_gru_step, params, x, (torch.zeros(1, batch, hidden),))
    torch.testing.assert_close(out, want.detach(), atol=1e-5, rtol=1e-5)


def test_rows_of_a_matrix_are_split_where_they_are_read():
    """The generated step splits the weight's rows itself (views, no copy), before the
    loop only when something there reads them."""
    source = stack(library()["OriginalGRU"], "OriginalGRU(hidden_size = 5)")
    from rnnspec.backends.torch.codegen import generate_source

    text = generate_source(check_source(source, "t.rnn"), backend="explicit")
    body = text[text.index("class _CellOriginalGRU"):]
    step = body[body.index("    def step("):]
    hoist = body[body.index("    def hoist("):body.index("    def step(")]
    assert "w_hr, w_hz, w_hn = w.weight_hh.chunk(3)" in step
    assert "chunk(3)" not in hoist.replace("weight_ih", "")


# ----------------------------------------------------------------------------- heads

@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("backend", BACKENDS)
def test_heads_are_block_diagonal(backend, heads):
    """Multi-head sLSTM equals the reference that multiplies head by head; with one head
    its recurrent weights are full matrices."""
    ref = REFERENCES["MultiHeadSLSTM"]
    source = stack(library()["MultiHeadSLSTM"],
                   f"MultiHeadSLSTM(hidden_size = 8, heads = {heads}, bidirectional = true)")
    model = _model(source, "S", backend)
    assert model.multi_head_slstm0.r_i_l0.shape == (heads, 8 // heads, 8 // heads)
    x = torch.randn(4, 2, 4, dtype=F64)
    h0 = tuple(ref.initial_state(n, (2, 2, 8), torch.empty(0, dtype=F64)) for n in ref.states)
    with torch.no_grad():
        out, state = model(x, h0)
        want, want_state = _reference(ref.step, model, "multi_head_slstm0", x, h0)
    torch.testing.assert_close(out, want)
    for got, expected in zip(state, want_state, strict=True):
        torch.testing.assert_close(got, expected)


# ----------------------------------------------------------------------------- dropout

DROPPED = """cell BySequence(p = 0.5) {
    state h[hidden_size]
    param w[hidden_size, input_size]

    h = dropout(w @ x, p) + 0.0 * h
}

cell ByStep {
    state h[hidden_size]

    h = dropout(0.0 * h + 1.0, 0.25, per = step)
}

stack Sequence {
    input_size = 32
    BySequence(hidden_size = 32, bidirectional = true)
}

stack Steps {
    input_size = 1
    ByStep(hidden_size = 32)
}
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_masks_per_sequence_and_per_step(backend):
    """In training `dropout(v, p)` keeps one mask [B, features] for the whole sequence,
    another for each direction; `per = step` draws one at each step; each is 0 or
    1 / (1 - p). In evaluation both are the identity."""
    module = generated_module(DROPPED, backend)
    by_sequence, by_step = module.Sequence(dtype=F64), module.Steps(dtype=F64)
    with torch.no_grad():
        by_sequence.by_sequence0.w_l0.copy_(torch.eye(32, dtype=F64))
        by_sequence.by_sequence0.w_l0_reverse.copy_(torch.eye(32, dtype=F64))
    x = torch.ones(9, 3, 32, dtype=F64)
    for model in (by_sequence, by_step):
        model.eval()
        with torch.no_grad():
            out, _ = model(x if model is by_sequence else x[..., :1])
        torch.testing.assert_close(out, torch.ones_like(out))
    torch.manual_seed(0)
    by_sequence.train()
    by_step.train()
    with torch.no_grad():
        out, _ = by_sequence(x)
        steps, _ = by_step(x[..., :1])
    forward, backward = out[..., :32], out[..., 32:]
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert all(torch.equal(forward[t], forward[0]) for t in range(9)), "one mask per sequence"
    assert all(torch.equal(backward[t], backward[0]) for t in range(9))
    assert not torch.equal(forward, backward), "each direction has its own mask"
    assert not torch.equal(forward[:, 0], forward[:, 1]), "each sequence has its own mask"
    assert set(steps.unique().tolist()) == {0.0, 1 / 0.75}
    assert not torch.equal(steps[0], steps[1]), "a new mask at every step"


def test_dropout_draws_its_masks_in_the_documented_order():
    """Masks are drawn as the equations first use them: a value computed before the loop
    first (the first `dropout` here reads only `x`), then the step's, per layer."""
    source = stack("""cell Two {
    state h[hidden_size]
    param w[hidden_size, input_size]

    h = dropout(w @ x, 0.5) * dropout(h + 1.0, 0.25)
}""", "Two(hidden_size = 3, num_layers = 2)", input_size=3)
    model = generated_module(source, "explicit").S(dtype=F64)
    with torch.no_grad():
        for layer in (0, 1):
            getattr(model.two0, f"w_l{layer}").copy_(torch.eye(3, dtype=F64))
    model.train()
    x = torch.ones(4, 2, 3, dtype=F64)
    torch.manual_seed(7)
    with torch.no_grad():
        out, h_n = model(x)
    torch.manual_seed(7)
    layer_input = x
    for _ in range(2):
        first = torch.bernoulli(torch.full((2, 3), 0.5, dtype=F64)) / 0.5
        second = None
        h = torch.zeros(2, 3, dtype=F64)
        outputs = []
        for t in range(4):
            if second is None:
                second = torch.bernoulli(torch.full((2, 3), 0.75, dtype=F64)) / 0.75
            h = (layer_input[t] * first) * ((h + 1.0) * second)
            outputs.append(h)
        layer_input = torch.stack(outputs)
    torch.testing.assert_close(out, layer_input)


def test_the_linted_goldens_hold_every_new_form():
    """tests/test_lint_generated.py runs ruff over the goldens: the library's golden module
    must hold each new form's code, so that ruff sees it."""
    from pathlib import Path

    golden = Path(__file__).parent / "golden" / "own" / "cells.explicit.py.txt"
    text = golden.read_text(encoding="utf-8")
    for code in ("self.numbers.memory_clip", "_heads(w.r_i, h)", "w.weight_hh.chunk(3)",
                 "torch.clamp(", '"memory_clip": 1.5'):
        assert code in text, code


# ----------------------------------------------------------------------------- ONNX

ONNX_CASES = {
    "sru": ("SRU", "SRU(hidden_size = 3, num_layers = 3)", 3),
    "clipped": ("ClippedLSTM", "ClippedLSTM(hidden_size = 3, cell_size = 4, memory_clip = 0.3, "
                "state_clip = 0.2)\n    ClippedLSTM(hidden_size = 3, cell_size = 2)", 3),
    "original_gru": ("OriginalGRU", "OriginalGRU(hidden_size = 4, num_layers = 2, "
                     "bidirectional = true)", 3),
    "heads": ("MultiHeadSLSTM", "MultiHeadSLSTM(hidden_size = 4, heads = 2, "
              "bidirectional = true)", 3),
}


@pytest.mark.parametrize("case", sorted(ONNX_CASES) + ["threshold", "dropout"])
def test_export_equals_the_module(tmp_path, case):
    """onnxruntime runs the export of each new form (Where and comparisons, clips of number
    arguments, Split of a weight's rows, block-diagonal MatMul; dropout is the identity of
    evaluation) to the module's numbers, with and without initial states."""
    ort = pytest.importorskip("onnxruntime")
    from test_onnx_export import exported

    if case == "threshold":
        text = THRESHOLD + "\nstack Net {\n    input_size = 3\n    Thresholded(hidden_size = " \
            "4, num_layers = 2, alpha = 0.2)\n}\n"
    elif case == "dropout":
        text = DROPPED.replace("stack Sequence", "stack Net").replace(
            "input_size = 32", "input_size = 3").replace("(hidden_size = 32, bi",
                                                          "(hidden_size = 3, bi")
    else:
        cell, block, features = ONNX_CASES[case]
        text = f"{library()[cell]}\nstack Net {{\n    input_size = {features}\n    {block}\n}}\n"
    path = tmp_path / "spec.rnn"
    path.write_text(text, encoding="utf-8")
    generator = torch.Generator().manual_seed(5)
    for initial_states in (False, True):
        spec, net, model = exported(path, "Net", seed=4, initial_states=initial_states)
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        for steps, batch in ((1, 1), (5, 3)):
            x = torch.randn(steps, batch, spec.input_size, generator=generator)
            feeds, hx = {"input": x.numpy()}, []
            for block in spec.blocks:
                values = []
                for key, dims in block.states.items():
                    value = torch.randn([batch if d == "B" else d for d in dims],
                                        generator=generator)
                    value = value.abs() + 0.5 if key == "n0" else value  # sLSTM's normaliser
                    if initial_states:
                        feeds[f"{key}.{block.name}"] = value.numpy()
                    values.append(value)
                hx.append(tuple(values) if len(values) > 1 else values[0])
            with torch.no_grad():
                if not initial_states:
                    output, states = net(x)
                else:
                    output, states = net(x, hx[0] if len(hx) == 1 else tuple(hx))
            states = (states,) if len(spec.blocks) == 1 else states
            expected = {"output": output}
            for block, state in zip(spec.blocks, states, strict=True):
                for key, value in zip(block.states, as_tuple(state), strict=True):
                    expected[f"{key[:-1]}_n.{block.name}"] = value
            got = dict(zip(names, session.run(None, feeds), strict=True))
            assert set(got) == set(expected)
            for name, value in expected.items():
                torch.testing.assert_close(torch.from_numpy(got[name]), value, atol=2e-5,
                                           rtol=1e-5, msg=name)


# ----------------------------------------------------------------------------- together

COMBINED = """cell Gate(alpha = 0.5, heads = 2) {
    state h[hidden_size]
    param w[2 * hidden_size, input_size]
    param r[heads, hidden_size // heads, hidden_size // heads]

    a, b = chunk(w, 2)
    g = sigmoid(b @ x + r @ h)
    h = where(g > alpha, tanh(a @ x), h * dropout(g, 0.5))
}

stack Net {
    input_size = 3
    batch_first = true
    Gate(hidden_size = 4, num_layers = 2, reverse = true, initial_state = learned, alpha = 0.25)
}
"""


def _combined_reference(model, x, lengths):
    """Each sequence alone: every layer from the sequence's last valid step back to its
    first, from the learned initial state; zeros at padded steps; an empty sequence keeps
    the learned states. The step is the interpreter's reading of the cell's text."""
    from user_cells import CellText

    step = CellText(COMBINED[:COMBINED.index("stack Net")]).step({"alpha": 0.25})
    params = params_by_layer_dir(dict(model.named_parameters()), prefix="gate0.")
    batch, steps, _ = x.shape
    outputs = torch.zeros(batch, steps, 4, dtype=x.dtype)
    finals = torch.zeros(2, batch, 4, dtype=x.dtype)
    for index in range(batch):
        sequence = x[index, :lengths[index]]
        for layer in range(2):
            h = getattr(model.gate0, f"h0_l{layer}").unsqueeze(0)  # [1, 4]
            out = [None] * len(sequence)
            for t in reversed(range(len(sequence))):
                (h,) = step(params[layer][0], sequence[t].unsqueeze(0), (h,))
                out[t] = h[0]
            finals[layer, index] = h[0]
            sequence = torch.stack(out) if out else sequence.new_zeros(0, 4)
        outputs[index, :lengths[index]] = sequence
    return outputs, finals


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_forms_together_with_reverse_learned_states_and_empty_sequences(backend):
    """A cell with a number argument, rows of a matrix, heads, `where` and `dropout`, in a
    reverse block with learned initial states, over a padded batch with an empty sequence:
    equal to running each sequence alone (float64, evaluation)."""
    model = _model(COMBINED, "Net", backend)
    x = torch.randn(3, 5, 3, dtype=F64)
    lengths = torch.tensor([5, 0, 2])
    with torch.no_grad():
        out, h_n = model(x, lengths=lengths)
        want, want_h = _combined_reference(model, x, lengths)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(h_n, want_h)
    torch.testing.assert_close(h_n[:, 1], torch.stack([model.gate0.h0_l0, model.gate0.h0_l1]))


def test_the_forms_together_export_with_lengths(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from rnnspec.backends.onnx import export as onnx_export

    path = tmp_path / "spec.rnn"
    path.write_text(COMBINED, encoding="utf-8")
    result = rnnspec.check_file(path)
    spec = onnx_export.find_stack(result, "Net")
    net = _model(COMBINED, "Net", "explicit", torch.float32)
    weights = onnx_export.match_weights(spec, net.state_dict(), "the module")
    model = onnx_export.build_model(spec, weights, lengths=True)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = torch.randn(3, 5, 3)
    lengths = torch.tensor([5, 0, 2])
    with torch.no_grad():
        out, h_n = net(x, lengths=lengths)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"input": x.numpy(), "lengths": lengths.numpy()}),
                   strict=True))
    torch.testing.assert_close(torch.from_numpy(got["output"]), out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.from_numpy(got["h_n.gate0"]), h_n, atol=1e-5, rtol=1e-5)
