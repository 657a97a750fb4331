"""Written-out blocks traced with a symbolic T and B (issue 20, item 1): torch.export with
dynamic T and B, padded batches included, equals eager at other T and B; torch.compile
(fullgraph, dynamic) compiles once for every T, lengths and gradients included; what the
fused backend does."""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")

LSTM = "stack Net {\n    input_size = 3\n    lstm(hidden_size = 4)\n}\n"
SPEC = """stack Net {
    input_size = 3
    enc = lstm(hidden_size = 4, bidirectional = true)
    out = gru(hidden_size = 5)
}
"""

# every thing a written-out block does: a residual and a zoneout block (in evaluation:
# h = p * h_prev + (1 - p) * h_new), a user cell with a number argument in both directions,
# one in reverse with weight dropout, two layers with learned initial states and merged
# directions, projections with recurrent dropout (nothing in evaluation)
TINY = """cell Tiny(scale = 1.0) {
    state h[hidden_size]
    param weight_ih[hidden_size, input_size]
    param weight_hh[hidden_size, hidden_size]

    h = scale * tanh(weight_ih @ x + weight_hh @ h)
}
"""
EVERY = (
    TINY
    + """stack Net {
    input_size = 3
    a = gru(hidden_size = 3, residual = true, zoneout = 0.1)
    own = Tiny(hidden_size = 4, bidirectional = true, scale = 0.5)
    b = rnn(hidden_size = 4, reverse = true, weight_dropout = 0.2)
    c = lstm(hidden_size = 3, num_layers = 2, initial_state = learned, bidirectional = true,
             merge = sum)
    p = lstm(hidden_size = 5, proj_size = 2, recurrent_dropout = 0.1)
}
"""
)
# for the compiled backward (a smaller graph): the user cell, a residual block with
# zoneout, learned initial states in reverse
TRAINED = (
    TINY
    + """stack Net {
    input_size = 3
    a = gru(hidden_size = 3, residual = true, zoneout = 0.1)
    own = Tiny(hidden_size = 4, bidirectional = true, scale = 0.5)
    c = lstm(hidden_size = 3, initial_state = learned, reverse = true)
}
"""
)
# a layered network: recurrent blocks with a layer between them
NETWORK = """stack Net {
    input_size = 3
    enc = lstm(hidden_size = 4, bidirectional = true)
    head = linear(5)
    out = gru(hidden_size = 3)
}
"""


def generated(text: str, name: str, backend: str = "explicit"):
    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source, load_source

    result = check_source(text, "traced.rnn")
    assert result.ok, result.diagnostics
    module = load_source(generate_source(result, backend=backend), "traced.rnn")
    sys.modules[module.__name__] = module  # torch's tracing imports the module by name
    return getattr(module, name)().eval()


def _assert_same(got, want) -> None:
    got, want = torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("text", [EVERY, NETWORK], ids=["every_option", "network"])
def test_export_dynamic_time_and_batch_with_lengths_equals_eager_elsewhere(text):
    from torch.export import Dim, export

    torch.manual_seed(0)
    net = generated(text, "Net")
    steps, batch = Dim("T", min=2, max=64), Dim("B", min=2, max=64)
    x, lengths = torch.randn(6, 3, 3), torch.tensor([6, 2, 4])
    shapes = {"input": {0: steps, 1: batch}, "lengths": {0: batch}}
    program = export(net, (x,), {"lengths": lengths}, dynamic_shapes=shapes)
    for other, other_lengths in (
        (torch.randn(9, 4, 3), torch.tensor([9, 1, 0, 5])),
        (torch.randn(2, 7, 3), torch.tensor([2, 1, 0, 2, 2, 1, 0])),
    ):
        got = program.module()(other, lengths=other_lengths)
        with torch.no_grad():
            want = net(other, lengths=other_lengths)
        _assert_same(got, want)


@pytest.mark.slow
def test_export_dynamic_time_and_batch_without_lengths():
    from torch.export import Dim, export

    torch.manual_seed(0)
    net = generated(LSTM, "Net")
    shapes = {"input": {0: Dim("T", min=2, max=64), 1: Dim("B", min=2, max=64)}}
    program = export(net, (torch.randn(6, 4, 3),), dynamic_shapes=shapes)
    other = torch.randn(11, 2, 3)
    with torch.no_grad():
        _assert_same(program.module()(other), net(other))


def test_fused_backend_exports_at_a_fixed_time_only():
    """The fused backend is torch.nn's LSTM/GRU/RNN: torch 2.13 specialises them on T (and
    packing a padded batch reads the lengths' values), as docs/using.md says."""
    from torch.export import Dim, export

    torch.manual_seed(0)
    net = generated(SPEC, "Net", backend="fused")
    x = torch.randn(6, 4, 3)
    with pytest.raises(Exception, match="Constraints violated|specialized"):
        export(net, (x,), dynamic_shapes={"input": {0: Dim("T", min=2, max=64), 1: None}})
    program = export(net, (x,))  # a fixed T and B: torch's own export of nn.LSTM
    with torch.no_grad():
        _assert_same(program.module()(x), net(x))


@pytest.mark.slow
def test_compile_fullgraph_dynamic_padded_without_grad_compiles_once():
    torch.manual_seed(0)
    net = generated(LSTM, "Net")
    compiled = torch.compile(net, fullgraph=True, dynamic=True)
    # sizes unlike the features (3) and each other: torch unifies equal sizes at first
    cases = [(5, [5, 2]), (7, [1, 7, 2, 0, 7, 3]), (9, [9, 4, 0, 8, 1, 2, 6, 5, 9, 3, 7])]
    with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=True):
        torch._dynamo.reset()
        for steps, lengths in cases:
            x, lengths = torch.randn(steps, len(lengths), 3), torch.tensor(lengths)
            got, (h, c) = compiled(x, lengths=lengths)
            want, (h_want, c_want) = net(x, lengths=lengths)
            torch.testing.assert_close(got, want)
            torch.testing.assert_close(h, h_want)
            torch.testing.assert_close(c, c_want)


def _gradients(call, net, x, lengths) -> tuple:
    """`call`'s outputs and the gradients it gives `net`'s parameters (`call`: `net`, or
    `net` compiled)."""
    net.zero_grad()
    output, states = call(x, lengths=lengths)
    leaves = torch.utils._pytree.tree_leaves(states)
    (output.square().sum() + sum(leaf.sum() for leaf in leaves)).backward()
    named = {key: p.grad.clone() for key, p in net.named_parameters() if p.grad is not None}
    return output.detach(), named


# sizes unlike the features (3) and each other: torch unifies equal sizes at first
GRAD_CASES = [(5, [5, 2]), (7, [1, 7, 2, 0, 7, 3]), (9, [9, 4, 0, 8, 1, 2, 6, 5, 9, 3, 7])]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inductor", "aot_eager"])
def test_compile_fullgraph_dynamic_with_grad_and_lengths_compiles_once_equals_eager(backend):
    """A training step compiled whole: the loop as torch's `scan`, its compiled backward
    included, gives eager's outputs and gradients at every T and B, with one compile
    (torch's default backend, inductor, on an LSTM; aot_eager, the same graphs without
    code generation, on a user cell and the options that change the loop)."""
    text = LSTM if backend == "inductor" else TRAINED
    torch.manual_seed(0)
    net = generated(text, "Net")
    compiled = torch.compile(net, fullgraph=True, dynamic=True, backend=backend)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        for steps, lengths in GRAD_CASES:
            x, lengths = torch.randn(steps, len(lengths), 3), torch.tensor(lengths)
            got, got_grads = _gradients(compiled, net, x, lengths)
            want, want_grads = _gradients(net, net, x, lengths)
            torch.testing.assert_close(got, want)
            everything = sorted(key for key, p in net.named_parameters())
            assert sorted(got_grads) == sorted(want_grads) == everything
            for key, grad in want_grads.items():
                torch.testing.assert_close(got_grads[key], grad, atol=1e-5, rtol=1e-4)
