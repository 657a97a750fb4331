"""ONNX export: an ONNX graph written from the checked model, not traced.

`rnnspec export FILE --stack NAME -o OUT.onnx` reads the checked `model.Stack` and writes
one node group per block:

- a block of a built-in cell with an ONNX operator (`backends.onnx.ONNX_OPS`:
  `lstm`, `gru`, `rnn`) becomes that operator, one per layer, with the gate order
  and biases converted (B = concat(bias_ih, bias_hh)), unless the block sets an argument
  the operator cannot express (an LSTM's `proj_size`) or `zoneout`;
- every other block becomes one `Scan` per layer and direction whose body is its cell's
  step: a user cell's checked `equations.Step`, or a built-in cell's equations
  (`cells.builtin`), lowered by the shared pass (`cells.lower`: hoisted parts, folded biases)
  to statements (`Stmt`) printed from `graph.NODES_FOR_OP`. Statements that read no
  state are computed before the loop (those reading `x` for every time step at once).

The modules: `graph` (the builder and the op table), `cells` (a step as a Scan), `stack`
(blocks, merge/residual, lengths, `build_model`), this one (the entry point, validation,
weights).

`merge` and `residual` follow each block. The graph is the evaluation-mode forward pass:
dropout between layers is absent, zoneout keeps p of the previous state. Inputs: `input`
(`[T, B, I]`, or `[B, T, I]` with `batch_first`); with `lengths=True`, `lengths` (`[B]`
int64: a padded batch); with `initial_states=True`, `h0.<block>` (and `c0.<block>`, one
per state) `[D*L, B, size]` (optional for a block with `initial_state = learned`:
they default to its learned vectors); without them every block starts from zeros, or from
its learned vectors. A length of 0 keeps a sequence's initial states. Outputs:
`output`, `h_n.<block>` (and `c_n.<block>`, ...). T and B are dynamic (`dim_param`).

onnx (and numpy) are imported inside the functions that need them; torch only to read a
checkpoint or to initialise parameters from the generated module.
"""


from __future__ import annotations

import os

from rnnspec import model
from rnnspec.backends.onnx.graph import (  # noqa: F401  (the exporter's public names)
    DEFAULT_OPSET,
    MAX_MODEL_BYTES,
    MAX_OPSET,
    MIN_OPSET,
    PRODUCER,
    ExportError,
    Stmt,
)
from rnnspec.backends.onnx.stack import build_model, uses_scan  # noqa: F401


def validate(onnx_model):
    """onnx.checker (full check) and strict shape inference; returns the inferred model."""
    import onnx

    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx.shape_inference.infer_shapes(onnx_model, check_type=True, strict_mode=True)


# ----------------------------------------------------------------------------- parameters


def load_weights(result: model.CheckedFile, stack: model.Stack, path: str,
                 prefix: str | None = None) -> dict:
    """A checkpoint's tensors under the generated module's names (`<entry>.<parameter>`):
    read by the one checkpoint reader and matched by the key resolution of
    `check --weights` (nested state dicts, prefixes such as `module.`, a bare `nn.LSTM`'s
    keys for a one-block stack), so what that command accepts loads here."""
    from rnnspec.tools.checkpoints.compare import compare
    from rnnspec.tools.checkpoints.read import CheckpointError, load_tensors

    try:
        tensors = load_tensors(path)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    shapes = {k: (tuple(v.shape), str(v.dtype)) for k, v in tensors.items()}
    found = compare(result, stack, shapes, path, prefix)
    problems = [f"missing `{key}`" for key in found.missing]
    problems += [f"`{key}` is {list(have)}, the stack needs {list(need)}"
                 for key, have, need in found.mismatched]
    if len(problems) > 10:
        problems[10:] = [f"... and {len(problems) - 10} more missing or mis-shaped tensors"]
    problems += [f"unexpected `{key}`" for key in found.unexpected[:5]]
    if len(found.unexpected) > 5:
        problems.append(f"... and {len(found.unexpected) - 5} more unexpected tensors")
    if problems:
        shown = f"`{found.prefix}`" if found.prefix else "none"
        raise ExportError(
            f"`{path}` does not match stack `{stack.name}` (key prefix {shown}):\n  "
            + "\n  ".join(problems), status=1,
            help=f"`rnnspec check {result.path} --weights {path}` shows which arguments of "
                 "the spec explain the differences")
    return {ours: tensors[theirs] for ours, theirs in found.keys.items()}


def match_weights(stack: model.Stack, state: dict, source: str) -> dict:
    """{"<block>.<param>": float32 numpy array} for every parameter, checked by shape."""
    import numpy as np

    expected = {f"{e.name}.{t.name}": t.shape for e in stack.entries
                for t in (*e.parameters, *e.buffers)}
    problems = []
    for key, shape in expected.items():
        if key not in state:
            problems.append(f"missing `{key}` {list(shape)}")
        elif tuple(state[key].shape) != shape:
            problems.append(f"`{key}` is {list(state[key].shape)}, the stack needs "
                            f"{list(shape)}")
    if len(problems) > 10:
        problems[10:] = [f"... and {len(problems) - 10} more missing or mis-shaped tensors"]
    extra = sorted(set(state) - set(expected))
    problems += [f"unexpected `{key}`" for key in extra[:5]]
    if len(extra) > 5:
        problems.append(f"... and {len(extra) - 5} more unexpected keys")
    if problems:
        raise ExportError(
            f"{source} does not match stack `{stack.name}`:\n  " + "\n  ".join(problems),
            status=1, help=f"keys are `<block>.<parameter>` as the generated `{stack.name}`'s "
                           "state_dict() names them")
    out = {}
    for key in expected:
        value = state[key]
        if hasattr(value, "detach"):
            value = value.detach().to(device="cpu").float().numpy()
        out[key] = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
    return out


def initial_weights(spec_path: str, stack: model.Stack, seed: int) -> dict:
    """The generated module's own initialisation with `torch.manual_seed(seed)`."""
    import torch

    from rnnspec import load

    module = getattr(load(spec_path), stack.name)
    torch.manual_seed(seed)
    with torch.device("cpu"):
        net = module()
    return net.state_dict()


# ----------------------------------------------------------------------------- files


def _is_ours(head: bytes) -> bool:
    """Whether a file starting with `head` is an ONNX file rnnspec wrote: its producer_name
    is field 2, right after ir_version, in the serialised bytes."""
    mark = b"\x12" + bytes([len(PRODUCER)]) + PRODUCER.encode()
    return head[:1] == b"\x08" and mark in head[:16]


def _output_allowed(path: str, inputs: tuple[str, ...], force: bool) -> None:
    from rnnspec.tools.files import OutputError, check_output

    try:
        check_output(path, is_ours=_is_ours, force=force, inputs=inputs)
    except OutputError as exc:
        raise ExportError(str(exc)) from None


def write_bytes(path: str, data: bytes, *, force: bool = False,
                inputs: tuple[str, ...] = ()) -> None:
    """Write `data` to `path` atomically; refuse to replace a file rnnspec did not write
    (unless `force`), and anything not a regular file or among `inputs` even then."""
    from rnnspec.tools.files import OutputError, write_output

    try:
        write_output(path, data, is_ours=_is_ours, force=force, inputs=inputs)
    except OutputError as exc:
        raise ExportError(str(exc)) from None


def find_stack(result: model.CheckedFile, name: str | None) -> model.Stack:
    names = [s.name for s in result.stacks]
    if name is None:
        if len(names) == 1:
            return result.stacks[0]
        raise ExportError(f"`{result.path}` has {len(names)} stacks; say which with --stack",
                          help="stacks: " + ", ".join(f"`{n}`" for n in names))
    for stack in result.stacks:
        if stack.name == name:
            return stack
    from rnnspec.language.diagnostics import did_you_mean

    hint = did_you_mean(name, names)
    raise ExportError(f"no stack `{name}` in `{result.path}`",
                      help=hint or ("stacks: " + ", ".join(f"`{n}`" for n in names)))


def export(result: model.CheckedFile, output: str, *, stack_name: str | None = None,
           weights: str | None = None, opset: int = DEFAULT_OPSET, seed: int = 0,
           initial_states: bool = False, lengths: bool = False,
           force: bool = False, prefix: str | None = None) -> model.Stack:
    """Export a checked file's stack to `output`; raises ExportError."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported: rnnspec writes opsets "
                          f"{MIN_OPSET} to {MAX_OPSET}")
    stack = find_stack(result, stack_name)
    inputs = (result.path,) + ((weights,) if weights is not None else ())
    _output_allowed(output, inputs, force)  # before any work; checked again when writing
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ExportError("export needs onnx: pip install 'rnnspec[onnx]'") from None
    if weights is not None:
        state, source = load_weights(result, stack, weights, prefix), f"`{weights}`"
    else:
        try:
            state = initial_weights(result.path, stack, seed)
        except ImportError:
            raise ExportError("export without --weights needs torch to initialise the "
                              "parameters: pip install 'rnnspec[torch]'") from None
        source = "the initialisation"
    arrays = match_weights(stack, state, source)
    doc = (f"stack {stack.name} of {os.path.basename(result.path)}, exported by rnnspec "
           f"(evaluation mode: no dropout); parameters from "
           f"{os.path.basename(weights) if weights else f'the initialisation, seed {seed}'}")
    try:
        onnx_model = build_model(stack, arrays, opset=opset, initial_states=initial_states,
                                 lengths=lengths, doc=doc)
    except ValueError as exc:  # a step the builder cannot write: a bug of ours
        raise ExportError(f"cannot write the graph of stack `{stack.name}` (a bug in "
                          f"rnnspec; nothing was written): {exc}",
                          help="please report it with the spec") from None
    try:
        validate(onnx_model)
    except Exception as exc:  # onnx.checker / shape inference: a bug of ours, not the user's
        raise ExportError(f"the graph written for stack `{stack.name}` fails ONNX's checks "
                          f"(a bug in rnnspec; nothing was written): {exc}",
                          help="please report it with the spec") from None
    write_bytes(output, onnx_model.SerializeToString(), force=force, inputs=inputs)
    return stack
