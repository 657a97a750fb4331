"""The compiled backend's generated backward, seen from Python: one `autograd.Function`
call per layer and direction and sequence.

Its forward runs the cell's `train_<k>` op (the fused step, saving what the backward
reads, [T, ...] per value) and its backward the generated reverse loop `back_<k>`
(`backward.py`). It runs where a gradient is needed, on CPU, in float32 or float64, for a
cell whose step the printers can differentiate; elsewhere the module calls the loop op
(the generic path, autograd over its ATen calls). `RNNSPEC_COMPILED_GENERIC=1` forces the
generic path. Double backward is not supported: the backward is not differentiable.
"""

from __future__ import annotations

import os

import torch


class CompiledLoop(torch.autograd.Function):
    """(inputs, states, weights) -> (output, final states) through `train_<k>`/`back_<k>`."""

    @staticmethod
    def forward(ctx, ops, frame, counts, *tensors):
        train, back = ops
        inputs, state, weights = _split(tensors, counts)
        found = train(inputs, state, weights, *frame)
        kept = 1 + len(state)
        ctx.back, ctx.frame, ctx.counts = back, frame, counts
        ctx.save_for_backward(*tensors, *found[kept:])
        return tuple(found[:kept])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout, *gfinal):
        values = ctx.saved_tensors
        given = sum(ctx.counts)
        inputs, state, weights = _split(values[:given], ctx.counts)
        grads = ctx.back(
            inputs, state, weights, *ctx.frame, list(values[given:]), gout, list(gfinal)
        )
        return (None, None, None, *grads)


def _split(tensors, counts):
    inputs, states, _ = counts
    return (
        list(tensors[:inputs]),
        list(tensors[inputs : inputs + states]),
        list(tensors[inputs + states :]),
    )


def _ops(library, op_name: str):
    """The cell's (train, back) ops, or None where its step has no generated backward."""
    index = op_name.split("_", 1)[1]
    try:
        return getattr(library, f"train_{index}"), getattr(library, f"back_{index}")
    except (AttributeError, RuntimeError):
        return None


def run(library, op_name: str, inputs, state, weights, frame):
    """The loop through the generated backward, or None where it does not apply (no
    gradient needed, not CPU float/double, no `train_<k>` op, the generic path forced)."""
    tensors = [*inputs, *state, *weights]
    if not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors):
        return None
    dtype = state[0].dtype
    if dtype not in (torch.float32, torch.float64) or os.environ.get("RNNSPEC_COMPILED_GENERIC"):
        return None
    if any(t.device.type != "cpu" or t.dtype != dtype for t in tensors):
        return None
    ops = _ops(library, op_name)
    if ops is None:
        return None
    counts = (len(inputs), len(state), len(weights))
    return CompiledLoop.apply(ops, tuple(frame), counts, *tensors)
