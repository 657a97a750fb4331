"""Differential: the shapes the checker derives equal what torch builds and computes.

Random stacks (every cell, layers, bias, direction, dropout, nonlinearity, proj_size,
batch_first, explicit input sizes, named and unnamed blocks, constants) are rendered to
.rnn text, checked, and compared with torch modules on the `meta` device.
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from strategies import render, stack_specs, torch_modules

from rnnspec import check_source
from rnnspec.check.report import json_document

torch = pytest.importorskip("torch")

T, B = 5, 3


def _checked(spec):
    """The checked spec, its one stack, and the torch modules it describes, on `meta`."""
    result = check_source(render(spec), "random.rnn")
    errors = [d for d in result.diagnostics if d.is_error]
    assert not errors, (render(spec), errors)
    (stack,) = result.stacks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout with one layer: PyTorch's warning
        modules = torch_modules(spec, device="meta")
    return result, stack, modules


def _substitute(shape, batched=True):
    sizes = {"T": T, "B": B}
    return tuple(sizes[d] if isinstance(d, str) else d for d in shape if batched or d != "B")


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack_specs())
def test_parameters_equal_torch(spec):
    result, stack, modules = _checked(spec)
    assert [b.name for b in stack.blocks] == spec.block_names()
    for block, module in zip(stack.blocks, modules):
        expected = [(name, tuple(p.shape)) for name, p in module.named_parameters()]
        assert [(p.name, p.shape) for p in block.parameters] == expected
        assert block.parameter_count == sum(p.numel() for p in module.parameters())
    assert stack.parameter_count == sum(p.numel() for m in modules for p in m.parameters())
    # the JSON report says the same, in PyTorch's order
    document = json_document([result])
    for block_json, module in zip(document["stacks"][0]["blocks"], modules):
        assert list(block_json["parameters"].items()) == [
            (name, list(p.shape)) for name, p in module.named_parameters()
        ]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack_specs())
def test_states_and_outputs_equal_torch(spec):
    _, stack, modules = _checked(spec)
    for batched in (True, False):
        if batched:
            shape = (B, T, spec.input_size) if spec.batch_first else (T, B, spec.input_size)
        else:
            shape = (T, spec.input_size)
        assert _substitute(stack.input, batched) == shape
        x = torch.empty(shape, device="meta")
        for block, module in zip(stack.blocks, modules):
            x, state = module(x)
            assert _substitute(block.output, batched) == tuple(x.shape)
            h_n, c_n = state if isinstance(state, tuple) else (state, None)
            assert _substitute(block.states["h0"], batched) == tuple(h_n.shape)
            if c_n is None:
                assert "c0" not in block.states
            else:
                assert _substitute(block.states["c0"], batched) == tuple(c_n.shape)
        assert _substitute(stack.output, batched) == tuple(x.shape)


def test_reference_example_report_matches_the_contract():
    """The JSON example of language.md section 6, field for field."""
    text = "stack SeedLSTM {\n    input_size = 20\n    lstm(hidden_size = 50, num_layers = 2)\n}\n"
    document = json_document([check_source(text, "seed.rnn")])
    (stack,) = document["stacks"]
    assert stack["input"] == ["T", "B", 20] and stack["output"] == ["T", "B", 50]
    assert stack["parameter_count"] == 34800
    block = stack["blocks"][0]
    assert block["name"] == "lstm0" and block["nonlinearity"] is None
    assert block["states"] == {"h0": [2, "B", 50], "c0": [2, "B", 50]}
    assert block["parameters"]["weight_ih_l0"] == [200, 20]
    assert block["parameters"]["weight_hh_l0"] == [200, 50]
    assert block["dropout"] == 0.0 and isinstance(block["dropout"], float)
