"""`forward(..., return_blocks=True)` of a multi-block stack: every block's output, checked
against running the blocks one by one by hand (and, for random stacks, against the chain
of torch modules built directly)."""

from __future__ import annotations

import inspect

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from strategies import render as render_stack
from strategies import stack_specs, torch_modules

import rnnspec

torch = pytest.importorskip("torch")
TAGGER = ROOT / "examples" / "tagger.rnn"


def _by_hand(model, x, hx=None):
    """Each block called on the previous block's output, as the stack documents."""
    outputs, states = [], []
    for index, name in enumerate(model.block_names):
        x, state = getattr(model, name)(x, None if hx is None else hx[index])
        outputs.append(x)
        states.append(state)
    return outputs, states


@pytest.mark.parametrize("backend", ["fused", "explicit"])
def test_return_blocks_gives_every_block_output(backend):
    torch.manual_seed(0)
    model = rnnspec.load(TAGGER, backend=backend).PosTagger().eval()
    x = torch.randn(3, 7, 300)
    output, states, outputs = model(x, return_blocks=True)
    plain_output, plain_states = model(x)
    hand_outputs, hand_states = _by_hand(model, x)
    assert len(outputs) == len(model.block_names) == 2
    assert outputs[-1] is output
    torch.testing.assert_close(list(outputs), hand_outputs)
    torch.testing.assert_close(output, plain_output)
    torch.testing.assert_close(list(states), hand_states)
    torch.testing.assert_close(states, plain_states)
    assert tuple(outputs[0].shape) == (3, 7, 512) and tuple(output.shape) == (3, 7, 128)


def test_return_blocks_is_keyword_only_and_documented():
    model = rnnspec.load(TAGGER).PosTagger()
    parameter = inspect.signature(model.forward).parameters["return_blocks"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is False
    assert "return_blocks=True" in model.forward.__doc__
    with pytest.raises(TypeError):
        model(torch.randn(3, 7, 300), None, None, True)  # after input, hx, lengths


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack_specs(max_blocks=3).filter(lambda s: len(s.blocks) > 1))
def test_random_stacks_return_what_the_torch_chain_computes(tmp_path_factory, stack):
    path = tmp_path_factory.mktemp("spec") / "random.rnn"
    path.write_text(render_stack(stack), encoding="utf-8")
    model = getattr(rnnspec.load(path), stack.name)().eval()
    modules = torch_modules(stack)
    for name, module in zip(model.block_names, modules, strict=True):
        module.load_state_dict(getattr(model, name).state_dict())
        module.eval()
    x = torch.randn(2, 5, stack.input_size) if stack.batch_first else \
        torch.randn(5, 2, stack.input_size)
    with torch.no_grad():
        output, states, outputs = model(x, return_blocks=True)
        expected = []
        for module in modules:
            x, _ = module(x)
            expected.append(x)
    assert len(outputs) == len(states) == len(stack.blocks)
    torch.testing.assert_close(list(outputs), expected)
    torch.testing.assert_close(output, expected[-1])
