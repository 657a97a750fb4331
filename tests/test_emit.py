"""The emitter on sums whose terms it reorders and hoists: signs, biases folded into
`F.linear`, parameter-only values, states given batch-free values. Each cell against a
plain loop written here from its equations."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from rnnspec import check_source  # noqa: E402
from rnnspec.backends.torch.codegen import generate_source, load_source  # noqa: E402

CELLS = {
    # state-free terms with minus signs, before and after the state term
    "Signs": ("""
cell Signs {
    state h[hidden_size]
    param w[hidden_size, input_size], u[hidden_size, hidden_size]
    param b[hidden_size], d[hidden_size]
    h = tanh(u @ h - b - (w @ x) + d - 0.5 + -(w @ x))
}""", lambda p, x, h: torch.tanh(h @ p["u"].T - p["b"] - x @ p["w"].T + p["d"] - 0.5
                                 - x @ p["w"].T)),
    # a parameter-only gate, a bias after the state's matmul, a local read twice
    "Gains": ("""
cell Gains {
    state h[hidden_size]
    param w[hidden_size, input_size], u[hidden_size, hidden_size]
    param g[hidden_size], b[hidden_size]
    gate = sigmoid(g)
    a = u @ h + b + w @ x
    h = gate * tanh(a) + (1 - gate) * a
}""", lambda p, x, h: (lambda gate, a: gate * torch.tanh(a) + (1 - gate) * a)(
        torch.sigmoid(p["g"]), h @ p["u"].T + p["b"] + x @ p["w"].T)),
    # a state given a value that has no batch axis, another from x only
    "Fixed": ("""
cell Fixed {
    state h[hidden_size], c[hidden_size]
    param w[hidden_size, input_size], level[hidden_size]
    c = level * 2
    h = tanh(w @ x) + c
}""", None),
}


def _run(name: str, backend: str):
    text, _ = CELLS[name]
    spec = text + f"\nstack S {{\n    input_size = 3\n    {name}(hidden_size = 4)\n}}\n"
    result = check_source(spec, "emit.rnn")
    assert result.ok, result.diagnostics
    module = load_source(generate_source(result, backend), "emit.rnn")
    torch.manual_seed(0)
    return module.S(dtype=torch.float64)


@pytest.mark.parametrize("backend", ["fused", "explicit"])
@pytest.mark.parametrize("name", ["Signs", "Gains"])
def test_reordered_sums_equal_a_plain_loop(name, backend):
    model = _run(name, backend)
    step = CELLS[name][1]
    params = {k.split(".")[1].rsplit("_l0", 1)[0]: v for k, v in model.state_dict().items()}
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    h = torch.zeros(2, 4, dtype=torch.float64)
    outputs = []
    for t in range(6):
        h = step(params, x[t], h)
        outputs.append(h)
    output, h_n = model(x)
    torch.testing.assert_close(output, torch.stack(outputs), rtol=0, atol=1e-12)
    torch.testing.assert_close(h_n[0], h, rtol=0, atol=1e-12)


def test_a_state_given_a_batch_free_value_takes_the_batch():
    model = _run("Fixed", "explicit")
    output, (h_n, c_n) = model(torch.randn(5, 3, 3, dtype=torch.float64))
    level = model.state_dict()["fixed0.level_l0"]
    assert c_n.shape == (1, 3, 4)
    torch.testing.assert_close(c_n[0], (level * 2).expand(3, 4))
    assert output.shape == (5, 3, 4)


def test_state_free_terms_are_computed_before_the_loop():
    source = generate_source(check_source(CELLS["Signs"][0] + """
stack S {
    input_size = 3
    Signs(hidden_size = 4)
}
""", "emit.rnn"), "explicit")
    hoist = source[source.index("    def hoist"):source.index("    def step")]
    step = source[source.index("    def step"):source.index("class S(")]
    assert "w.w" in hoist and "w.b" in hoist and "w.d" in hoist
    assert "w.w" not in step and "w.b" not in step and "w.d" not in step
    assert "F.linear(h, w.u)" in step


SHAPES = {
    # a number inside a state-reading equation, a number local, `maximum` with a number
    "Numbers": """
cell Numbers {
    state h[hidden_size]
    param w[hidden_size, input_size]
    a = 2
    h = tanh(w @ x + h * -0.5) + maximum(h, -1) * (a + 3)
}""",
    # a state-free chunk into two states; a parameter-only chunk into two states
    "Split": """
cell Split {
    state h[hidden_size], c[hidden_size], d[hidden_size], e[hidden_size]
    param w[2 * hidden_size, input_size], b[2 * hidden_size]
    h, c = chunk(w @ x, 2)
    d, e = chunk(b, 2)
}""",
    # a chunk into one piece
    "One": """
cell One {
    state h[hidden_size]
    param u[hidden_size, hidden_size], w[hidden_size, input_size]
    a = chunk(u @ h, 1)
    h = tanh(a + w @ x)
}""",
}


def _module(text: str, name: str, backend: str):
    spec = text + f"\nstack S {{\n    input_size = 3\n    {name}(hidden_size = 4)\n}}\n"
    result = check_source(spec, "emit.rnn")
    assert result.ok, result.diagnostics
    torch.manual_seed(1)
    return load_source(generate_source(result, backend), "emit.rnn").S(dtype=torch.float64)


@pytest.mark.parametrize("backend", ["fused", "explicit"])
def test_numbers_in_state_reading_equations(backend):
    model = _module(SHAPES["Numbers"], "Numbers", backend)
    w = model.state_dict()["numbers0.w_l0"]
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    h = torch.zeros(2, 4, dtype=torch.float64)
    outputs = []
    for t in range(5):
        h = torch.tanh(x[t] @ w.T + h * -0.5) + torch.clamp(h, min=-1) * 5
        outputs.append(h)
    output, _ = model(x)
    torch.testing.assert_close(output, torch.stack(outputs), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["fused", "explicit"])
def test_chunks_into_states(backend):
    model = _module(SHAPES["Split"], "Split", backend)
    state = model.state_dict()
    w, b = state["split0.w_l0"], state["split0.b_l0"]
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    output, (h, c, d, e) = model(x)
    torch.testing.assert_close(output, (x @ w.T)[..., :4], rtol=0, atol=1e-12)
    torch.testing.assert_close(c[0], (x[-1] @ w.T)[..., 4:], rtol=0, atol=1e-12)
    torch.testing.assert_close(d[0], b[:4].expand(2, 4))
    torch.testing.assert_close(e[0], b[4:].expand(2, 4))


def test_a_chunk_into_one_piece():
    spec = SHAPES["One"]
    model = _module(spec, "One", "explicit")
    state = model.state_dict()
    u, w = state["one0.u_l0"], state["one0.w_l0"]
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    h = torch.zeros(2, 4, dtype=torch.float64)
    for t in range(4):
        h = torch.tanh(h @ u.T + x[t] @ w.T)
    _, h_n = model(x)
    torch.testing.assert_close(h_n[0], h, rtol=0, atol=1e-12)
