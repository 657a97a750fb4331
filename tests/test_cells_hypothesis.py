"""Property tests of user cells (language.md section 8; issue 9).

- Random well-formed cells (random equation trees over section 8's forms, consistent
  symbolic sizes) check without errors, and the generated code runs for random sizes with
  the output shape [T, B, D * size of the first state].
- A random single mutation of such a cell (a wrong matrix column count, the vector on the
  left of `@`, a chunk count that does not match the names) is reported as an error whose
  span (or a note's) overlaps the mutated text or the rule it breaks; never an exception.

Skipped, with the reason, only while a `cell` item is a syntax error.
"""

from __future__ import annotations

import warnings

from cell_strategies import acceptable_spans, cells, mutations, render_cell
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from user_cells import BACKENDS, needs_user_cells

PATH = "random_cell.rnn"


def stack_text(cell_name: str, hidden: int, input_size: int, layers: int, bidirectional: bool,
               batch_first: bool) -> str:
    return (f"stack S {{\n    input_size = {input_size}\n"
            f"    batch_first = {'true' if batch_first else 'false'}\n"
            f"    rec = {cell_name}(hidden_size = {hidden}, num_layers = {layers}, "
            f"bidirectional = {'true' if bidirectional else 'false'})\n}}\n")


def _render_errors(result, text):
    from rnnspec.language.diagnostics import render

    sources = {PATH: text.split("\n")}
    return "\n\n".join(render(d, sources) for d in result.diagnostics if d.is_error)


def _overlaps(span, site) -> bool:
    if span is None:
        return False
    line, start, end = site
    a0 = (span.line, span.column)
    a1 = (span.end_line, span.end_column)
    if a1 <= a0:
        a1 = (a0[0], a0[1] + 1)
    return a0 < (line, end) and (line, start) < a1


sizes = st.fixed_dictionaries({
    "hidden": st.integers(1, 4), "input_size": st.integers(1, 4), "layers": st.integers(1, 2),
    "bidirectional": st.booleans(), "batch_first": st.booleans(), "T": st.integers(1, 3),
    "B": st.integers(1, 3), "batched": st.booleans()})


@needs_user_cells
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=cells(), size=sizes, backend=st.sampled_from(BACKENDS))
def test_random_cells_check_clean_and_run(cell, size, backend):
    import torch

    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source, load_source

    rendered = render_cell(cell)
    text = rendered.text + "\n" + stack_text(cell.name, size["hidden"], size["input_size"],
                                             size["layers"], size["bidirectional"],
                                             size["batch_first"])
    result = check_source(text, PATH)
    assert result.ok, f"{_render_errors(result, text)}\n--- spec ---\n{text}"
    module = load_source(generate_source(result, backend=backend), PATH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = module.S(dtype=torch.float64).eval()
    T, B, n_in = size["T"], size["B"], size["input_size"]
    if not size["batched"]:
        shape = (T, n_in)
    else:
        shape = (B, T, n_in) if size["batch_first"] else (T, B, n_in)
    with torch.no_grad():
        out, state = model(torch.randn(shape, dtype=torch.float64))
    directions = 2 if size["bidirectional"] else 1
    first = cell.states[0][1][0] * size["hidden"] + cell.states[0][1][1] * n_in
    features = directions * first
    if not size["batched"]:
        assert out.shape == (T, features)
    else:
        assert out.shape == ((B, T, features) if size["batch_first"] else (T, B, features))
    states = state if isinstance(state, tuple) else (state,)
    assert len(states) == len(cell.states)
    rows = directions * size["layers"]
    for tensor, (_, (a, b)) in zip(states, cell.states, strict=True):
        width = a * size["hidden"] + b * n_in
        assert tensor.shape == ((rows, B, width) if size["batched"] else (rows, width))


@needs_user_cells
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), cell=cells())
def test_single_mutations_are_reported_where_they_are(data, cell):
    from rnnspec import check_source

    mutation = data.draw(mutations(cell), label="mutation")
    rendered = render_cell(cell, mutation)
    text = rendered.text + "\n" + stack_text(cell.name, 3, 5, 2, True, False)
    result = check_source(text, PATH)  # never an exception
    errors = [d for d in result.diagnostics if d.is_error]
    assert errors, f"no error for {mutation.kind} mutation\n--- spec ---\n{text}"
    sites = acceptable_spans(cell, mutation, rendered)
    located = [d for d in errors
               if any(_overlaps(s, site) for site in sites
                      for s in (d.span, *(n.span for n in d.notes)))]
    assert located, (f"{mutation.kind} mutation at {sites} reported elsewhere:\n"
                     f"{_render_errors(result, text)}\n--- spec ---\n{text}")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=cells())
def test_random_cells_render_well_formed_text(cell):
    """The strategy itself: unique names, every state assigned once, sites to mutate."""
    rendered = render_cell(cell)
    targets = [t for s in cell.statements for t in s.targets]
    assert len(targets) == len(set(targets))
    assert {name for name, _ in cell.states} <= set(targets)
    assert cell.matmuls and cell.chunks
    assert rendered.text.count("(") == rendered.text.count(")")


# ----------------------------------------------------------------------------- the strategy
# A direct torch evaluation of the random cells (sizes 3 and 5, so no two symbolic sizes
# coincide and nothing broadcasts by accident) shows, without rnnspec, that the generated
# cells are well-formed and that each mutation breaks a rule of section 8.


def evaluate(cell, mutation=None, hidden=3, features=5, batch=2):
    """Run one step of `cell` with torch; raises ValueError/RuntimeError on a shape error."""
    import torch
    import torch.nn.functional as F

    def width(size):
        return size[0] * hidden + size[1] * features

    params = {}
    for p in cell.params:
        dims = list(p.dims)
        if mutation is not None and mutation.kind == "dim" and p.name == mutation.target.param:
            dims[1] = mutation.replacement
        params[p.name] = torch.randn(*[width(d) for d in dims], dtype=torch.float64)
    env = {"x": torch.randn(batch, features, dtype=torch.float64)}
    env.update({n: torch.randn(batch, width(s), dtype=torch.float64) for n, s in cell.states})
    unary = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "gelu": F.gelu,
             "silu": F.silu, "softplus": F.softplus, "logsigmoid": F.logsigmoid,
             "exp": torch.exp, "log": torch.log, "abs": torch.abs, "sqrt": torch.sqrt}
    binary = {"+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div}

    def ev(node):
        if node.kind == "number":
            return float(node.text)
        if node.kind == "leaf":
            return env[node.text] if node.text in env else params[node.text]
        if node.kind == "unary":
            return unary[node.text](ev(node.children[0]))
        if node.kind == "neg":
            return -ev(node.children[0])
        if node.kind == "binary":
            a, b = (ev(c) for c in node.children)
            if isinstance(a, float):
                a = torch.tensor(a, dtype=torch.float64)
            return binary[node.text](a, b)
        if node.kind == "matmul":
            if mutation is not None and mutation.kind == "swap" and mutation.target is node:
                raise ValueError("a vector on the left of `@`")
            return F.linear(ev(node.children[0]), params[node.param])
        args = [ev(c) for c in node.children]
        if node.text == "layer_norm":
            eps = float(node.extra[0]) if node.extra else 1e-5
            weight = args[1] if len(args) > 1 else None
            bias = args[2] if len(args) > 2 else None
            return F.layer_norm(args[0], (args[0].shape[-1],), weight, bias, eps)
        if node.text == "clamp":
            return torch.clamp(args[0], float(node.extra[0]), float(node.extra[1]))
        if node.text in ("minimum", "maximum"):
            a, b = torch.broadcast_tensors(*args)
            return getattr(torch, node.text)(a, b)
        if node.text == "concat":
            return torch.cat([a.expand(batch, -1) for a in args], dim=-1)
        raise AssertionError(node.text)

    for statement in cell.statements:
        value = ev(statement.expr)
        if statement.count:
            count = statement.count
            if mutation is not None and mutation.kind == "count" and mutation.target is statement:
                count = mutation.replacement
            if value.shape[-1] % count:
                raise ValueError("chunk count does not divide the size")
            pieces = value.chunk(count, dim=-1)
            if len(pieces) != len(statement.targets):
                raise ValueError("chunk count does not match the names")
            env.update(zip(statement.targets, pieces))
        else:
            env[statement.targets[0]] = value
    return {n: env[n] for n, _ in cell.states}, width


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), cell=cells())
def test_strategy_cells_are_well_formed_and_mutations_break_them(data, cell):
    import torch

    states, width = evaluate(cell)
    for name, size in cell.states:
        assert torch.broadcast_shapes(states[name].shape, (2, width(size))) == (2, width(size))
        assert states[name].shape[-1] == width(size)
    mutation = data.draw(mutations(cell), label="mutation")
    try:
        evaluate(cell, mutation)
    except (ValueError, RuntimeError):
        return
    raise AssertionError(f"the {mutation.kind} mutation left the cell well-formed")


# ----------------------------------------------------------------------------- section 11
# Random cells with the forms of section 11 (number arguments set by the block, conditions
# and `where`, `dropout`, rows of a matrix parameter, heads) equal an independent reading of
# their text (user_cells.CellText: Python's parser and plain torch, in evaluation) in
# float64 on both backends, and their ONNX export equals the module in onnxruntime.


@needs_user_cells
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=cells(extended=True), size=sizes, backend=st.sampled_from(BACKENDS),
       data=st.data())
def test_random_section_11_cells_equal_an_interpreter(cell, size, backend, data):
    import torch
    from user_cells import CellText, params_by_layer_dir, run_reference

    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source, load_source

    rendered = render_cell(cell)
    numbers = {name: data.draw(st.sampled_from([float(default), 0.75, -1.0]), label=name)
               for name, default in cell.numbers}
    block_numbers = "".join(f", {name} = {value!r}" for name, value in numbers.items())
    text = rendered.text + "\n" + stack_text(
        cell.name, 2 * size["hidden"], size["input_size"], size["layers"],
        size["bidirectional"], False).replace("bidirectional = ", f"{block_numbers[2:]}, "
                                              "bidirectional = " if numbers else
                                              "bidirectional = ")
    result = check_source(text, PATH)
    assert result.ok, f"{_render_errors(result, text)}\n--- spec ---\n{text}"
    module = load_source(generate_source(result, backend=backend), PATH)
    model = module.S(dtype=torch.float64).eval()
    generator = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.rand(parameter.shape, generator=generator,
                                       dtype=torch.float64) - 0.5)
    T, B = size["T"], size["B"]
    x = torch.randn(T, B, size["input_size"], generator=generator, dtype=torch.float64)
    block = result.stacks[0].blocks[0]
    h0 = tuple(torch.randn([B if d == "B" else d for d in shape], generator=generator,
                           dtype=torch.float64) for shape in block.states.values())
    with torch.no_grad():
        out, state = model(x, h0 if len(h0) > 1 else h0[0])
        step = CellText(rendered.text).step(numbers)
        params = params_by_layer_dir(dict(model.named_parameters()), prefix="rec.")
        want, want_state = run_reference(step, params, x, h0)
    torch.testing.assert_close(out, want, equal_nan=True)
    for got, expected in zip(state if isinstance(state, tuple) else (state,), want_state,
                             strict=True):
        torch.testing.assert_close(got, expected, equal_nan=True)


@needs_user_cells
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=cells(extended=True), seed=st.integers(0, 2**16))
def test_random_section_11_cells_export_to_onnxruntime(tmp_path_factory, cell, seed):
    import numpy as np
    import pytest

    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import torch

    import rnnspec
    from rnnspec.backends.onnx import export as onnx_export

    text = render_cell(cell).text + "\n" + stack_text(cell.name, 4, 3, 2, True, False)
    path = tmp_path_factory.mktemp("cells") / "spec.rnn"
    path.write_text(text, encoding="utf-8")
    result = rnnspec.check_file(path)
    assert result.ok, _render_errors(result, text)
    stack = onnx_export.find_stack(result, "S")
    torch.manual_seed(seed)
    net = rnnspec.load(path).S().eval()
    weights = onnx_export.match_weights(stack, net.state_dict(), "the module")
    model = onnx_export.build_model(stack, weights)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out, _ = net(x)
    got = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, out.numpy(), rtol=1e-4, atol=1e-4, equal_nan=True)
