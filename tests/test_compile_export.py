"""Written-out blocks traced with a symbolic T and B (issue 20, item 1): torch.export with
dynamic T and B, padded batches included, equals eager at other T and B."""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")

# a user cell, plain and reversed in a padded batch, and torch's cells with projections
USER_CELL = """cell Tiny {
    state h[hidden_size]
    param weight_ih[hidden_size, input_size]
    param weight_hh[hidden_size, hidden_size]

    h = tanh(weight_ih @ x + weight_hh @ h)
}

stack Net {
    input_size = 3
    own = Tiny(hidden_size = 4, bidirectional = true)
    proj = lstm(hidden_size = 6, proj_size = 2)
}
"""
SPEC = """stack Net {
    input_size = 3
    enc = lstm(hidden_size = 4, num_layers = 2, bidirectional = true)
    out = gru(hidden_size = 5)
}
"""


def generated(text: str, name: str):
    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source, load_source

    result = check_source(text, "traced.rnn")
    assert result.ok, result.diagnostics
    module = load_source(generate_source(result, backend="explicit"), "traced.rnn")
    sys.modules[module.__name__] = module  # torch's tracing imports the module by name
    return getattr(module, name)().eval()


@pytest.mark.slow
@pytest.mark.parametrize("text", [SPEC, USER_CELL], ids=["torch_cells", "user_cell"])
def test_export_dynamic_time_and_batch_with_lengths_equals_eager_elsewhere(text):
    from torch.export import Dim, export

    torch.manual_seed(0)
    net = generated(text, "Net")
    steps, batch = Dim("T", min=2, max=64), Dim("B", min=2, max=64)
    x, lengths = torch.randn(6, 3, 3), torch.tensor([6, 2, 4])
    shapes = {"input": {0: steps, 1: batch}, "lengths": {0: batch}}
    program = export(net, (x,), {"lengths": lengths}, dynamic_shapes=shapes)
    other, other_lengths = torch.randn(9, 4, 3), torch.tensor([9, 1, 0, 5])
    got, got_state = program.module()(other, lengths=other_lengths)
    with torch.no_grad():
        want, want_state = net(other, lengths=other_lengths)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.utils._pytree.tree_leaves(got_state),
                    torch.utils._pytree.tree_leaves(want_state)):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_compile_fullgraph_dynamic_padded_without_grad_compiles_once():
    torch.manual_seed(0)
    net = generated("stack Net {\n    input_size = 3\n    lstm(hidden_size = 4)\n}\n", "Net")
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
