"""A state set from a chunk of parameters alone (issue 19): `piece, c = chunk(a, 2)` gives
every sequence of the batch the same values, with the batch axis kept (output [T, B, H], not
[T, H]) on both torch backends, in onnxruntime too; against a plain PyTorch reference. The
emitter's expansion over the batch once read its own loop variable when the first state was
named `piece`."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from rnnspec import check_source  # noqa: E402
from rnnspec.backends.torch.codegen import generate_source, load_source  # noqa: E402

T, B, INPUT, H = 4, 3, 6, 5


def cell(first: str) -> str:
    return (f"cell Piece {{\n    state {first}[hidden_size], c[hidden_size]\n"
            f"    param a[2 * hidden_size]\n    {first}, c = chunk(a, 2)\n}}\n")


def spec(first: str, layers: int) -> str:
    return (cell(first) + f"stack Net {{\n    input_size = {INPUT}\n"
            f"    p = Piece(hidden_size = {H}, num_layers = {layers})\n}}\n")


def reference(a: list, batch: int | None):
    """Plain PyTorch: every step of layer k sets (first, c) = a_lk's halves, the same for
    every sequence; the output is the last layer's first state at each step."""
    lead = () if batch is None else (batch,)
    first = [w[:H].expand(*lead, H) for w in a]
    c = [w[H:].expand(*lead, H) for w in a]
    output = first[-1].expand(T, *lead, H)
    return output, (torch.stack(first), torch.stack(c))


@pytest.mark.parametrize("backend", ["fused", "explicit"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("first", ["piece", "h"])
def test_states_from_a_chunk_of_parameters_keep_the_batch(first, layers, backend):
    result = check_source(spec(first, layers), "chunk.rnn")
    assert result.ok, result.diagnostics
    net = load_source(generate_source(result, backend=backend), "chunk.rnn").Net()
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn_like(parameter))
    a = [getattr(net.p, f"a_l{k}") for k in range(layers)]
    for batch in (B, None):
        x = torch.randn((T, INPUT) if batch is None else (T, batch, INPUT))
        hx = None if batch is None else (torch.randn(layers, B, H), torch.randn(layers, B, H))
        with torch.no_grad():
            output, (h_n, c_n) = net(x, hx)
        want, (want_h, want_c) = reference(a, batch)
        assert output.shape == want.shape
        torch.testing.assert_close(output, want)
        torch.testing.assert_close(h_n, want_h)
        torch.testing.assert_close(c_n, want_c)


@pytest.mark.parametrize("first", ["piece", "h"])
def test_the_onnx_export_equals_the_torch_module(tmp_path, first):
    pytest.importorskip("onnxruntime")
    from test_onnx_cells import assert_same, exported

    stack, net, model = exported(tmp_path, spec(first, 2), seed=3)
    # no step reads a state, so the exported graph takes no initial states
    assert_same(stack, net, model, initial_states=False, padded=False, seed=4)
