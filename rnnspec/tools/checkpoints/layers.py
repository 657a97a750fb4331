"""`check --weights` for a stack's layers (language reference, section 10): each layer's
parameters and buffers under `<prefix><layer>.`, as PyTorch's own modules name them. A
tensor of another shape is explained at the argument that sets that dimension where one
does (`out_features`, `kernel_size`, ...), else at the layer with the features it reads.
"""

from __future__ import annotations

from rnnspec import model
from rnnspec.cells.shapes import format_shape
from rnnspec.language.diagnostics import Diagnostic, Note, error

# (kind, tensor) -> the argument each dimension comes from (None: the features read)
_ARGUMENTS = {
    ("linear", "weight"): ("out_features", None),
    ("linear", "bias"): ("out_features",),
    ("conv1d", "weight"): ("out_channels", None, "kernel_size"),
    ("conv1d", "bias"): ("out_channels",),
    ("conv2d", "weight"): ("out_channels", None, "kernel_size", "kernel_size"),
    ("conv2d", "bias"): ("out_channels",),
    ("embedding", "weight"): ("num_embeddings", "embedding_dim"),
}


def compare_layers(stack: model.Stack, tensors: dict, prefix: str, lists: tuple,
                   problems: list[Diagnostic], keys: dict[str, str]) -> int:
    """Adds each layer tensor to `lists` (matched, missing, mismatched) and to `keys`
    (`<layer>.<name>` -> its checkpoint key), and a diagnostic per layer that differs;
    returns how many checkpoint tensors were compared."""
    matched, missing, mismatched = lists
    compared = 0
    for layer in stack.entries:
        if layer.recurrent:
            continue
        expected = [(p.name, p.shape) for p in layer.parameters]
        expected += [(b.name, b.shape) for b in layer.buffers]
        absent, reported = [], False
        for name, shape in expected:
            key = f"{prefix}{layer.name}.{name}"
            found = tensors.get(key)
            if found is None:
                missing.append(key)
                absent.append(key)
                continue
            compared += 1
            keys[f"{layer.name}.{name}"] = key
            actual = tuple(found[0])
            if actual == shape:
                matched.append(key)
                continue
            mismatched.append((key, actual, shape))
            if not reported:  # one diagnostic per layer: its first tensor that differs
                problems.append(_mismatch(layer, name, key, actual, shape))
                reported = True
        if absent and len(absent) == len(expected):
            problems.append(error(
                "E063", f"layer `{layer.name}` has no tensors in the checkpoint", layer.span,
                notes=[Note(f"looked for `{absent[0]}`" + (
                    f" and {len(absent) - 1} more" if len(absent) > 1 else ""))],
                help="name the layer as its module is named in the checkpoint"))
    return compared


def _mismatch(layer: model.Layer, name: str, key: str, actual: tuple, shape: tuple):
    arguments = _ARGUMENTS.get((layer.kind, name), ())
    wrong = [i for i, (a, s) in enumerate(zip(actual, shape)) if a != s]
    said = f"the checkpoint's `{key}` is {format_shape(actual)}, the spec's " \
           f"{format_shape(shape)}"
    if len(actual) == len(shape) and wrong and all(
            i < len(arguments) and arguments[i] for i in wrong):
        argument = arguments[wrong[0]]
        span = layer.argument_spans.get(argument, layer.span)
        values = [actual[i] for i in wrong]
        value = values[0] if len(values) == 1 else values
        return error("E060", f"{said}: the checkpoint has `{argument} = {value}`", span,
                     help=f"write `{argument} = {value}`" if len(values) == 1 else None)
    return error("E062", said, layer.span,
                 notes=[Note(f"`{layer.name}` reads {layer.input_size} features here",
                             layer.span)],
                 help="the entries before it set what it reads: check their sizes")
