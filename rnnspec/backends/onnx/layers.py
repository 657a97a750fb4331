"""A stack with layers as ONNX (language reference, section 10): each layer as ONNX's own
operators in evaluation mode (Gemm-free MatMul + Add, Conv, MaxPool/AveragePool,
BatchNormalization folded into a scale and shift, LayerNormalization, Slice/Reshape for
`subsample` and `stack_frames`, reductions for `pool`), each block as in a stack of blocks.

Sequences are time-first `[T, B, F]` inside the graph. With `lengths`, every layer that
changes time maps them by its formula (floor divisions as `Mod`-corrected `Div`s, 0
staying 0), reads zeros at padded steps (`-inf` before a max pool), and the graph also
outputs `output_lengths`. 2-D runs are not written yet (a clear error says so).
"""

from __future__ import annotations

from rnnspec import model
from rnnspec.backends.onnx.graph import ExportError, _Graph
from rnnspec.cells.shapes import _QUOTIENTS, Size, Time
from rnnspec.layers import time as timing

INT64_MAX = 2**63 - 1


def unsupported(stack: model.Stack, opset: int, lengths: bool) -> str | None:
    """Why the stack's layers cannot be exported (None: they can)."""
    for entry in stack.entries:
        if entry.recurrent:
            continue
        if entry.kind == "layer_norm" and opset < 17:
            return f"`{entry.name}` needs LayerNormalization: export with --opset 17 or above"
        if entry.kind == "batch_norm" and not entry.arguments["track_running_stats"]:
            return (f"`{entry.name}` has no running statistics: in evaluation it normalises "
                    "with each batch's own, which an exported graph does not do")
        if lengths and entry.kind.startswith("avg_pool") and entry.arguments["ceil_mode"]:
            return (f"`{entry.name}` is an average pool with ceil_mode: with --lengths its "
                    "last windows are not exported yet")
    return None


class _Flow:
    """A value and the lengths and valid steps that go with it; `layout` is set inside a
    2-D run (`features_first`: the map is `[B, C, F, T]`, `time_first`: `[B, C, T, F]`)."""

    def __init__(self, value: str, lengths: str | None, valid: str | None, timed: bool = True,
                 layout: str | None = None):
        self.value, self.lengths, self.valid, self.timed = value, lengths, valid, timed
        self.layout = layout


def enter_map(g: _Graph, flow: _Flow, layout: str, hint: str) -> _Flow:
    """`[T, B, F]` as a one-channel map."""
    perm = [1, 0, 2] if layout == "time_first" else [1, 2, 0]
    value = g.node("Unsqueeze", [g.node("Transpose", [flow.value], hint=hint, perm=perm),
                                 g.ints([1])], hint=hint)
    return _Flow(value, flow.lengths, flow.valid, True, layout)


def leave_map(g: _Graph, flow: _Flow, hint: str) -> _Flow:
    """A map as a sequence `[T, B, C * F]`, channel-major."""
    perm = [2, 0, 1, 3] if flow.layout == "time_first" else [3, 0, 1, 2]
    value = g.node("Reshape", [g.node("Transpose", [flow.value], hint=hint, perm=perm),
                               g.ints([0, 0, -1])], hint=hint)
    return _Flow(value, flow.lengths, flow.valid)


def _map_valid(g: _Graph, valid: str, layout: str, hint: str) -> str:
    """`[T, B, 1]` valid steps as a map's mask: `[B, 1, 1, T]` (`[B, 1, T, 1]`)."""
    perm = [1, 0, 2] if layout == "time_first" else [1, 2, 0]
    return g.node("Unsqueeze", [g.node("Transpose", [valid], hint=hint, perm=perm),
                                g.ints([1])], hint=hint)


def _reduce(g: _Graph, op: str, x: str, axis: int, hint: str) -> str:
    """A reduction over one axis, its axes an input from opset 18 (ReduceSum: 13)."""
    if op == "ReduceSum" or g.opset >= 18:
        return g.node(op, [x, g.ints([axis])], hint=hint, keepdims=0)
    return g.node(op, [x], hint=hint, axes=[axis], keepdims=0)


def floor_lengths(g: _Graph, formula: Time, lengths: str, hint: str) -> str:
    """`formula` (in `T`) evaluated on the int64 `lengths`, floor divisions as in Python;
    a length of 0 stays 0."""
    import numpy as np

    def constant(value: int) -> str:
        return g.initializer(f"{hint}.k", np.array(value, dtype=np.int64))

    def value(size: Size) -> str:
        total = None
        for monomial, coefficient in size.terms:
            term = constant(coefficient)
            for name in monomial:
                factor = lengths if name == "T" else quotient(name)
                term = g.node("Mul", [term, factor], hint=hint)
            total = term if total is None else g.node("Add", [total, term], hint=hint)
        return total if total is not None else constant(0)

    def quotient(name: str) -> str:
        inner, divisor = _QUOTIENTS[name]
        numerator = value(inner)
        rest = g.node("Mod", [numerator, constant(divisor)], hint=hint, fmod=0)
        return g.node("Div", [g.node("Sub", [numerator, rest], hint=hint), constant(divisor)],
                      hint=hint)

    out = value(formula.size)
    positive = g.node("Greater", [lengths, constant(0)], hint=f"{hint}.positive")
    out = g.node("Max", [out, constant(0)], hint=hint)
    return g.node("Where", [positive, out, constant(0)], hint=hint)


def emit_layer(g: _Graph, layer: model.Layer, flow: _Flow, weights: dict, valid_steps,
               finals: dict) -> _Flow:
    """One layer on `flow`; `valid_steps(x, lengths)` makes the `[T, B, 1]` mask."""
    import numpy as np

    name, a, x = layer.name, layer.arguments, flow.value

    def weight(key: str, array=None) -> str:
        array = weights[f"{name}.{key}"] if array is None else array
        return g.initializer(f"{name}.{key}", np.asarray(array, dtype=np.float32))

    def same(value: str) -> _Flow:
        return _Flow(value, flow.lengths, flow.valid, flow.timed, flow.layout)

    kind = layer.kind
    if kind == "linear":
        y = g.node("MatMul", [x, weight("weight_t", weights[f"{name}.weight"].T)], hint=name)
        return same(g.node("Add", [y, weight("bias")], hint=name) if a["bias"] else y)
    if kind == "layer_norm":
        size = layer.input_size
        scale = weight("weight") if a["elementwise_affine"] else weight("ones", np.ones(size))
        inputs = [x, scale] + ([weight("bias")] if a["elementwise_affine"] and a["bias"] else [])
        return same(g.node("LayerNormalization", inputs, hint=name, axis=-1,
                           epsilon=float(a["eps"])))
    if kind == "batch_norm":
        mean, var = weights[f"{name}.running_mean"], weights[f"{name}.running_var"]
        gain = weights[f"{name}.weight"] if a["affine"] else np.ones_like(mean)
        shift = weights[f"{name}.bias"] if a["affine"] else np.zeros_like(mean)
        scale = gain / np.sqrt(var + a["eps"])
        offset = shift - mean * scale
        if flow.layout is not None:  # BatchNorm2d: per channel of the map
            scale, offset = scale.reshape(-1, 1, 1), offset.reshape(-1, 1, 1)
        y = g.node("Mul", [x, weight("scale", scale)], hint=name)
        return same(g.node("Add", [y, weight("shift", offset)], hint=name))
    if kind in ("dropout", "locked_dropout"):
        return flow  # evaluation mode
    if kind in ("relu", "tanh", "sigmoid"):
        return same(g.node(kind.capitalize(), [x], hint=name))
    if kind == "gelu":
        if g.opset >= 20:
            return same(g.node("Gelu", [x], hint=name))
        erf = g.node("Erf", [g.node("Mul", [x, g.scalar(0.5 ** 0.5)], hint=name)], hint=name)
        half = g.node("Mul", [x, g.scalar(0.5)], hint=name)
        return same(g.node("Mul", [half, g.node("Add", [erf, g.scalar(1.0)], hint=name)],
                           hint=name))
    if kind == "silu":
        return same(g.node("Mul", [x, g.node("Sigmoid", [x], hint=name)], hint=name))
    if kind == "hardtanh":
        return same(g.node("Clip", [x, g.scalar(a["min_val"]), g.scalar(a["max_val"])],
                           hint=name))
    if kind == "leaky_relu":
        return same(g.node("LeakyRelu", [x], hint=name, alpha=float(a["negative_slope"])))
    if kind == "log_softmax":
        return same(g.node("LogSoftmax", [x], hint=name, axis=-1))
    if kind == "embedding":
        return same(g.node("Gather", [weight("weight"), x], hint=name, axis=0))
    if kind == "pool":
        return _pool(g, layer, flow, finals)
    if flow.layout is not None:
        return _map_layer(g, layer, flow, weight, valid_steps)
    return _time_layer(g, layer, flow, weight, valid_steps)


def _map_layer(g: _Graph, layer: model.Layer, flow: _Flow, weight, valid_steps) -> _Flow:
    """A 2-D layer on the map; its pairs are the map's axes as written."""
    name, a, kind, x = layer.name, layer.arguments, layer.kind, flow.value
    if flow.valid is not None:
        fill = g.scalar(float("-inf") if kind.startswith("max") else 0.0)
        mask = _map_valid(g, flow.valid, flow.layout, f"{name}.valid")
        x = g.node("Where", [mask, x, fill], hint=f"{name}.masked")
    pads = [a["padding"][0], a["padding"][1], a["padding"][0], a["padding"][1]]
    if kind == "conv2d":
        inputs = [x, weight("weight")] + ([weight("bias")] if a["bias"] else [])
        y = g.node("Conv", inputs, hint=name, kernel_shape=list(a["kernel_size"]),
                   strides=list(a["stride"]), pads=pads, dilations=list(a["dilation"]),
                   group=a["groups"])
    else:
        op = "MaxPool" if kind == "max_pool2d" else "AveragePool"
        extra = {} if op == "MaxPool" else {"count_include_pad": 1}
        y = g.node(op, [x], hint=name, kernel_shape=list(a["kernel_size"]),
                   strides=list(a["stride"]), pads=pads, ceil_mode=int(a["ceil_mode"]), **extra)
    if flow.lengths is None:
        return _Flow(y, None, None, True, flow.layout)
    formula = timing.own(kind, a, Time(Size.of("T")))
    lengths = floor_lengths(g, formula, flow.lengths, f"{name}.lengths")
    axis = 2 if flow.layout == "time_first" else 3
    steps = g.node("Transpose", [y], hint=f"{name}.steps",
                   perm=[axis, 0, 1, 5 - axis])  # any [T, ...] view for the mask's length
    valid = valid_steps(steps, lengths)
    y = g.node("Where", [_map_valid(g, valid, flow.layout, f"{name}.valid"), y,
                         g.scalar(0.0)], hint=f"{name}.y")
    return _Flow(y, lengths, valid, True, flow.layout)


def _time_layer(g: _Graph, layer: model.Layer, flow: _Flow, weight, valid_steps) -> _Flow:
    name, a, kind, x = layer.name, layer.arguments, layer.kind, flow.value
    if flow.valid is not None:  # padded steps read as zeros (as -inf by a max pool)
        fill = g.scalar(float("-inf") if kind.startswith("max") else 0.0)
        x = g.node("Where", [flow.valid, x, fill], hint=f"{name}.masked")
    if kind == "subsample":
        y = g.node("Slice", [x, g.ints([0]), g.ints([INT64_MAX]), g.ints([0]),
                             g.ints([a["factor"]])], hint=name)
    elif kind == "stack_frames":
        f = a["factor"]
        steps = g.node("Slice", [g.node("Shape", [x], hint=f"{name}.shape"), g.ints([0]),
                                 g.ints([1])], hint=f"{name}.steps")
        whole = g.node("Mul", [g.node("Div", [steps, g.ints([f])], hint=name), g.ints([f])],
                       hint=name)
        y = g.node("Slice", [x, g.ints([0]), whole, g.ints([0])], hint=name)
        batch = g.node("Slice", [g.node("Shape", [x], hint=f"{name}.shape"), g.ints([1]),
                                 g.ints([2])], hint=f"{name}.batch")
        shape = g.node("Concat", [g.ints([-1, f]), batch, g.ints([layer.input_size])],
                       hint=f"{name}.grouped", axis=0)
        y = g.node("Transpose", [g.node("Reshape", [y, shape], hint=name)], hint=name,
                   perm=[0, 2, 1, 3])
        y = g.node("Reshape", [y, g.ints([0, 0, f * layer.input_size])], hint=name)
    else:
        channels_first = g.node("Transpose", [x], hint=f"{name}.channels", perm=[1, 2, 0])
        if kind == "conv1d":
            inputs = [channels_first, weight("weight")] + ([weight("bias")] if a["bias"] else [])
            y = g.node("Conv", inputs, hint=name, kernel_shape=[a["kernel_size"]],
                       strides=[a["stride"]], pads=[a["padding"]] * 2,
                       dilations=[a["dilation"]], group=a["groups"])
        else:
            op = "MaxPool" if kind == "max_pool1d" else "AveragePool"
            extra = {} if op == "MaxPool" else {"count_include_pad": 1}
            y = g.node(op, [channels_first], hint=name, kernel_shape=[a["kernel_size"]],
                       strides=[a["stride"]], pads=[a["padding"]] * 2,
                       ceil_mode=int(a["ceil_mode"]), **extra)
        y = g.node("Transpose", [y], hint=name, perm=[2, 0, 1])
    if flow.lengths is None:
        return _Flow(y, None, None)
    formula = timing.own(kind, a, Time(Size.of("T")))
    lengths = floor_lengths(g, formula, flow.lengths, f"{name}.lengths")
    valid = valid_steps(y, lengths)
    y = g.node("Where", [valid, y, g.scalar(0.0)], hint=f"{name}.y")
    return _Flow(y, lengths, valid)


def _pool(g: _Graph, layer: model.Layer, flow: _Flow, finals: dict) -> _Flow:
    name, mode, x = layer.name, layer.arguments["mode"], flow.value
    if mode == "final":
        block, h = finals["last"]  # h_n [L * D, B, H]: the last layer's D rows, side by side
        rows = g.node("Slice", [h, g.ints([-block.num_directions]), g.ints([INT64_MAX]),
                                g.ints([0])], hint=name)
        y = g.node("Transpose", [rows], hint=name, perm=[1, 0, 2])
        y = g.node("Reshape", [y, g.ints([0, -1])], hint=name)
    elif mode == "first":
        y = g.node("Gather", [x, g.ints([0])], hint=name, axis=0)
        y = g.node("Squeeze", [y, g.ints([0])], hint=name)
    elif mode == "last" and flow.lengths is None:
        y = g.node("Squeeze", [g.node("Gather", [x, g.ints([-1])], hint=name, axis=0),
                               g.ints([0])], hint=name)
    elif mode == "last":
        rows = g.node("Unsqueeze", [g.node("Sub", [flow.lengths, g.ints([1])], hint=name),
                                    g.ints([1])], hint=name)  # [B, 1]
        batch_major = g.node("Transpose", [x], hint=name, perm=[1, 0, 2])
        y = g.node("GatherND", [batch_major, rows], hint=name, batch_dims=1)
    elif mode == "mean":
        if flow.valid is None:
            y = _reduce(g, "ReduceMean", x, 0, name)
        else:
            from onnx import TensorProto

            total = _reduce(g, "ReduceSum", g.node("Where", [flow.valid, x, g.scalar(0.0)],
                                                   hint=name), 0, name)
            count = g.node("Cast", [g.node("Unsqueeze", [flow.lengths, g.ints([1])],
                                           hint=name)], hint=name, to=TensorProto.FLOAT)
            y = g.node("Div", [total, count], hint=name)
    else:  # max
        if flow.valid is not None:
            x = g.node("Where", [flow.valid, x, g.scalar(float("-inf"))], hint=name)
        y = _reduce(g, "ReduceMax", x, 0, name)
    return _Flow(y, None, None, timed=False)


def check_exportable(stack: model.Stack, opset: int, lengths: bool) -> None:
    why = unsupported(stack, opset, lengths)
    if why is not None:
        raise ExportError(f"stack `{stack.name}` cannot be exported: {why}",
                          help="export its generated module with torch.onnx.export")
