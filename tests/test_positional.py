"""Positional arguments in PyTorch's constructor order (issue 13): a spec written
positionally checks and generates exactly like its keyword twin."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import StackSpec, render, stack_specs

from rnnspec.backends.torch.codegen import generate_source
from rnnspec.cells.registry import BUILTIN_CELLS
from rnnspec.check.checker import check_text
from rnnspec.check.report import json_document


def _outcome(text: str):
    """What a spec checks and generates to, without what depends on its layout."""
    result = check_text(text, "spec.rnn")
    assert result.ok and not result.diagnostics, [d.message for d in result.diagnostics]
    document = json_document([result])
    for stack in document["stacks"]:
        del stack["line"]
    source = generate_source(result, backend="fused")
    return document, re.sub(r"\(line \d+\)", "(line N)", source)


def _keyword_twin(stack: StackSpec) -> StackSpec:
    blocks = [dataclasses.replace(b, positional=False) for b in stack.blocks]
    return dataclasses.replace(stack, blocks=blocks)


@settings(max_examples=60, deadline=None)
@given(stack_specs())
def test_positional_blocks_check_and_generate_like_their_keyword_twin(stack):
    """tests/strategies.py writes `lstm(I, H, L, ...)` for blocks marked positional."""
    assert _outcome(render(stack)) == _outcome(render(_keyword_twin(stack)))


# ----------------------------------------------------------------------------- every argument

# PyTorch's constructor order, written out here rather than read from rnnspec's registry
# (the test would otherwise agree with any order the registry had); the last test below
# checks it against torch itself.
TORCH_ORDER = {
    "rnn": ("input_size", "hidden_size", "num_layers", "nonlinearity", "bias", "batch_first",
            "dropout", "bidirectional"),
    "lstm": ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
             "bidirectional", "proj_size"),
    "gru": ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
            "bidirectional"),
}


def _values(stack: StackSpec, index: int) -> dict[str, tuple[str, object]]:
    """Every argument of block `index`, defaults included, by name: (text, value)."""
    block = stack.blocks[index]
    values = {
        "input_size": stack.block_inputs()[index], "hidden_size": block.hidden_size,
        "num_layers": block.num_layers, "nonlinearity": block.nonlinearity or "tanh",
        "bias": block.bias, "batch_first": stack.batch_first, "dropout": block.dropout,
        "bidirectional": block.bidirectional, "proj_size": block.proj_size,
    }

    def text(value) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    return {name: (text(values[name]), values[name]) for name in TORCH_ORDER[block.cell]}


def _render(stack: StackSpec, positional: list[int], written: list[set[str]]) -> str:
    """Block i with its first `positional[i]` arguments by position, in PyTorch's order,
    then by name those in `written[i]` and every other one whose value is not the
    default."""
    body = [f"    input_size = {stack.input_size}",
            f"    batch_first = {'true' if stack.batch_first else 'false'}"]
    for index, block in enumerate(stack.blocks):
        values = _values(stack, index)
        rules = [BUILTIN_CELLS[block.cell].rules[name] for name in TORCH_ORDER[block.cell]]
        arguments = [values[rule.name][0] for rule in rules[:positional[index]]]
        arguments += [f"{rule.name} = {values[rule.name][0]}" for rule in rules[positional[index]:]
                      if rule.name in written[index]
                      or (rule.default is not None and values[rule.name][1] != rule.default)
                      or rule.required]
        body.append(f"    {block.cell}({', '.join(arguments)})")
    return "\n".join([f"stack {stack.name} {{", *body, "}", ""])


@st.composite
def positional_specs(draw):
    stack = draw(stack_specs())
    counts, written = [], []
    for block in stack.blocks:
        names = TORCH_ORDER[block.cell]
        counts.append(draw(st.integers(0, len(names))))
        written.append(set(draw(st.lists(st.sampled_from(names), unique=True))))
    return stack, counts, written


@settings(max_examples=60, deadline=None)
@given(positional_specs())
def test_any_positional_prefix_means_the_same_as_keywords(case):
    """Every argument of PyTorch's order, `input_size` to `proj_size`, taken positionally
    up to a random point, against all of them by name."""
    stack, counts, written = case
    everything = [set(_values(stack, i)) for i in range(len(stack.blocks))]
    positional = _outcome(_render(stack, counts, written))
    assert positional == _outcome(_render(stack, [0] * len(counts), everything))


@pytest.mark.parametrize("cell", sorted(TORCH_ORDER))
def test_torch_takes_its_arguments_in_this_order(cell):
    """Every positional argument given a value that differs from its default: torch
    builds the module the spec describes, so `TORCH_ORDER` is PyTorch's order."""
    torch = pytest.importorskip("torch")
    values = {"input_size": 6, "hidden_size": 5, "num_layers": 2, "nonlinearity": "relu",
              "bias": False, "batch_first": True, "dropout": 0.25, "bidirectional": True,
              "proj_size": 3}
    order = TORCH_ORDER[cell]
    module = getattr(torch.nn, cell.upper())(*(values[name] for name in order))
    for name in order:
        assert getattr(module, name) == values[name], name
    words = {True: "true", False: "false"}
    written = ", ".join(words.get(values[n], str(values[n])) if isinstance(values[n], bool)
                        else str(values[n]) for n in order)
    text = (f"stack Net {{\n    input_size = 6\n    batch_first = true\n"
            f"    {cell}({written})\n}}\n")
    result = check_text(text, "spec.rnn")
    assert result.ok and not result.diagnostics, [d.message for d in result.diagnostics]
    (block,) = result.stacks[0].blocks
    assert [(p.name, p.shape) for p in block.parameters] == [
        (name, tuple(value.shape)) for name, value in module.named_parameters()]
    for name in order:
        if name != "batch_first":
            assert block.arguments[name] == values[name], name


def test_a_real_constructor_call_written_positionally():
    """`nn.LSTM(80, 256, 2, True, True, 0.1, True)` from a real model, as a spec."""
    torch = pytest.importorskip("torch")
    reference = torch.nn.LSTM(80, 256, 2, True, True, 0.1, True)
    text = ("stack Encoder {\n    input_size = 80\n    batch_first = true\n"
            "    lstm(80, 256, 2, true, true, 0.1, true)\n}\n")
    result = check_text(text, "spec.rnn")
    assert result.ok and not result.diagnostics
    (block,) = result.stacks[0].blocks
    assert {p.name: p.shape for p in block.parameters} == {
        name: tuple(value.shape) for name, value in reference.named_parameters()}
    assert (block.num_layers, block.bias, block.dropout, block.bidirectional) == (
        reference.num_layers, reference.bias, reference.dropout, reference.bidirectional)
