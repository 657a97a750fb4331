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
    from rnnspec.diagnostics import render

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
    from rnnspec.codegen import generate_source, load_source

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
