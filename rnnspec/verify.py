"""`rnnspec check --verify`: build every stack with torch itself, on the `meta` device (no
memory, no arithmetic), and confirm each derived parameter, state and output shape."""

from __future__ import annotations

import warnings

from . import model
from .diagnostics import Diagnostic, error

T, B = 3, 2  # any sizes do: they only have to be told apart


def _torch_block(torch, block: model.Block, batch_first: bool):
    options = dict(num_layers=block.num_layers, bias=block.bias, batch_first=batch_first,
                   dropout=block.dropout, bidirectional=block.bidirectional, device="meta")
    if block.cell == "rnn":
        options["nonlinearity"] = block.nonlinearity
    if block.cell == "lstm":
        options["proj_size"] = block.proj_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout with one layer: already warning W001
        return getattr(torch.nn, block.torch_class)(block.input_size, block.hidden_size,
                                                   **options)


def _sized(shape) -> tuple:
    return tuple({"T": T, "B": B}.get(d, d) if isinstance(d, str) else d for d in shape)


def verify_stack(stack: model.Stack) -> list[Diagnostic]:
    import torch

    problems: list[Diagnostic] = []

    def disagree(block, what, derived, built):
        problems.append(error(
            "E050", f"torch builds {what} of block `{block.name}` as {built}, "
                    f"but rnnspec derived {derived}", block.span,
            help="this is a bug in rnnspec: please report it with the spec"))

    x = torch.empty(_sized(stack.input), device="meta")
    for block in stack.blocks:
        try:
            module = _torch_block(torch, block, stack.batch_first)
            x, state = module(x)
        except (RuntimeError, ValueError, OverflowError, TypeError) as exc:
            problems.append(error("E050", f"torch cannot build block `{block.name}`: {exc}",
                                  block.span))
            return problems
        built = [(name, tuple(p.shape)) for name, p in module.named_parameters()]
        derived = [(p.name, p.shape) for p in block.parameters]
        if built != derived:
            disagree(block, "the parameters", derived, built)
        h_n, c_n = state if isinstance(state, tuple) else (state, None)
        if _sized(block.states["h0"]) != tuple(h_n.shape):
            disagree(block, "`h_n`", list(block.states["h0"]), list(h_n.shape))
        if (c_n is None) != ("c0" not in block.states) or (
                c_n is not None and _sized(block.states["c0"]) != tuple(c_n.shape)):
            built = None if c_n is None else list(c_n.shape)
            disagree(block, "`c_n`", block.states.get("c0"), built)
        if _sized(block.output) != tuple(x.shape):
            disagree(block, "the output", list(block.output), list(x.shape))
    return problems


def verify_results(results: list[model.CheckedFile]) -> None:
    """Append an E050 diagnostic to a result for every disagreement with torch."""
    for result in results:
        for stack in result.stacks:
            result.diagnostics.extend(verify_stack(stack))
