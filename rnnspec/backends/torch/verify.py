"""`rnnspec check --verify`: build every stack with torch itself, on the `meta` device (no
memory, no arithmetic), and confirm each derived parameter, state and output shape.

Blocks of built-in cells are built as the torch.nn module their cell names; blocks of
declared cells have no torch module, so the generated module's block stands in for it.
"""

from __future__ import annotations

import functools
import warnings

from rnnspec import model
from rnnspec.backends.torch import torch_module
from rnnspec.cells.shapes import bind_dims
from rnnspec.language.diagnostics import Diagnostic, error

T, B = 3, 2  # any sizes do: they only have to be told apart


def _torch_block(torch, block: model.Block, stack: model.Stack, generated):
    module = torch_module(block.spec)
    if module is None:
        return getattr(generated(), block.name)
    options = {name: block.arguments[name] for name in module.arguments}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout with one layer: already warning W001
        return getattr(torch.nn, module.torch_class)(
            block.input_size, block.hidden_size, num_layers=block.num_layers, bias=block.bias,
            batch_first=stack.batch_first, dropout=block.dropout,
            bidirectional=block.bidirectional, device="meta", **options)


def stacked(output, input, entry: model.Entry):
    """An entry's output as the stack passes it on (language section 9), as the generated
    `_merge` and `_residual` compute it: two directions combined, then the input added."""
    if entry.merge is not None:
        forward, backward = output.chunk(2, dim=-1)
        output = {"sum": forward + backward, "mean": (forward + backward) / 2}.get(
            entry.merge, forward * backward)
    return output + input if entry.residual else output


def _sized(shape) -> tuple:
    return tuple(bind_dims(shape, {"T": T, "B": B}))


def verify_stack(stack: model.Stack, generated=None) -> list[Diagnostic]:
    """Disagreements between the derived shapes and what torch builds, as E050 errors.
    `generated` makes the generated module of the stack (for blocks of declared cells)."""
    import torch

    problems: list[Diagnostic] = []

    def disagree(block, what, derived, built):
        problems.append(error(
            "E050", f"torch builds {what} of block `{block.name}` as {built}, "
                    f"but rnnspec derived {derived}", block.span,
            help="this is a bug in rnnspec: please report it with the spec"))

    from rnnspec.backends.torch.network import is_network

    if is_network(stack):
        return _verify_network(torch, stack, generated, disagree)
    x = torch.empty(_sized(stack.input), device="meta")
    for block in stack.entries:
        try:
            module = _torch_block(torch, block, stack, generated)
            incoming = x
            x, state = module(x)
            x = stacked(x, incoming, block)
        except Exception as exc:  # noqa: BLE001 - whatever torch or generated code raises
            # is a disagreement to report, never a traceback
            problems.append(error("E050", f"torch cannot build block `{block.name}`: {exc}",
                                  block.span))
            return problems
        built = [(name, tuple(p.shape)) for name, p in module.named_parameters()]
        # the torch.nn module has no learned initial states: rnnspec adds them, one vector
        # of each state's size, checked against the states torch gives below
        own = block.parameters if torch_module(block.spec) is None else block.weights
        derived = [(p.name, p.shape) for p in own]
        if built != derived:
            disagree(block, "the parameters", derived, built)
        finals = state if isinstance(state, tuple) else (state,)
        sizes = {key: tuple(t.shape[-1:]) for key, t in zip(block.states, finals)}
        learned = [(p.name, p.shape) for p in block.parameters if p.role in sizes]
        if any(shape != sizes[name.split("_l")[0]] for name, shape in learned):
            disagree(block, "the learned initial states", learned, sizes)
        keys = [(key, model.final_key(key)) for key in block.states]
        if len(finals) != len(keys):
            disagree(block, "the states", [k[1] for k in keys], len(finals))
        for (first, final), tensor in zip(keys, finals):
            if _sized(block.states[first]) != tuple(tensor.shape):
                disagree(block, f"`{final}`", list(block.states[first]), list(tensor.shape))
        if _sized(block.output) != tuple(x.shape):
            disagree(block, "the output", list(block.output), list(x.shape))
    return problems


def _verify_network(torch, stack: model.Stack, generated, disagree) -> list[Diagnostic]:
    """A stack with layers: its generated class on `meta`, each layer PyTorch's own module;
    every entry's parameters and buffers as torch builds them, the output as it computes."""
    problems: list[Diagnostic] = []
    try:
        network = generated().eval()
        steps = max(T, stack.min_input_time)
        shape = bind_dims(stack.input, {"T": steps, "B": B})
        dtype = torch.int64 if stack.ids else torch.float32
        x = torch.zeros(shape, device="meta", dtype=dtype)
        sides = {side.name: torch.empty(bind_dims(side.shape, {"T": steps, "B": B}),
                                        device="meta") for side in stack.side_inputs}
        output, _ = network(x, **sides)
    except Exception as exc:  # noqa: BLE001 - whatever torch raises is a disagreement
        return [error("E050", f"torch cannot build stack `{stack.name}`: {exc}", stack.span)]
    for entry in stack.entries:
        module = getattr(network, entry.name, None)
        built = [] if module is None else [
            (name, tuple(t.shape)) for name, t in (*module.named_parameters(),
                                                   *module.named_buffers())]
        derived = [(p.name, p.shape) for p in entry.parameters]
        derived += [(b.name, b.shape) for b in entry.buffers]
        if sorted(built) != sorted(derived):
            disagree(entry, "the parameters", derived, built)
    expected = tuple(bind_dims(stack.output, {"T": steps, "B": B}))
    if expected != tuple(output.shape):
        disagree(stack.entries[-1], "the output", list(stack.output), list(output.shape))
    return problems


class _Generated:
    """The generated module of one checked file, made on first use (declared cells only)."""

    def __init__(self, result: model.CheckedFile):
        self.result = result
        self.module = None

    def stack(self, name: str):
        if self.module is None:
            from rnnspec.backends.torch.codegen import generate_source, load_source

            self.module = load_source(generate_source(self.result), self.result.path)
        return getattr(self.module, name)(device="meta")


def verify_results(results: list[model.CheckedFile]) -> None:
    """Append an E050 diagnostic to a result for every disagreement with torch."""
    for result in results:
        generated = _Generated(result)
        for stack in result.stacks:
            result.diagnostics.extend(
                verify_stack(stack, functools.partial(generated.stack, stack.name)))
