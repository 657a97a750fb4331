"""The derivation of one layer (language reference, section 10): from its kind's record
(`layers.kinds`) and its bound arguments, what it reads and produces (features, a 2-D
run's channels and bins, time), its parameters and buffers, and the errors an argument
can cause on its own (a window wider than its bins, groups that do not divide).

`Flow` is what an entry reads: the features of each step, the time axis (None after
`pool`) and, inside a run of 2-D layers, the map's channels and bins.
"""

from __future__ import annotations

from rnnspec import model
from rnnspec.cells.shapes import Time
from rnnspec.language.diagnostics import Diagnostic, Span, error
from rnnspec.layers import time as timing
from rnnspec.layers.kinds import LayerKind
from rnnspec.records import Record


class Flow(Record):
    """What flows between entries."""

    features: int  # what a 1-D entry reads: a 2-D map's channels * bins, flattened
    time: Time | None  # None after `pool`: `[B, F]`
    grid: tuple[int, int] | None = None  # inside a 2-D run: (channels, bins)

    @property
    def channels(self) -> int:
        return self.grid[0] if self.grid else 1

    @property
    def bins(self) -> int:
        return self.grid[1] if self.grid else self.features


class Derived(Record):
    flow: Flow  # what the layer produces
    parameters: tuple[model.Parameter, ...]
    buffers: tuple[model.Buffer, ...]
    arguments: dict  # the bound values, defaults resolved (a pool's stride)


def _parameter(name: str, shape: tuple[int, ...]) -> model.Parameter:
    return model.Parameter(name, name, 0, False, tuple(shape))


def _norm_tensors(values: dict, size: int):
    parameters = ()
    if values.get("affine", values.get("elementwise_affine", True)):
        parameters = (_parameter("weight", (size,)),)
        if values.get("bias", True):
            parameters += (_parameter("bias", (size,)),)
    buffers = ()
    if values.get("track_running_stats", False):
        buffers = (model.Buffer("running_mean", (size,)), model.Buffer("running_var", (size,)),
                   model.Buffer("num_batches_tracked", ()))
    return parameters, buffers


def _axes(values: dict, name: str) -> tuple[int, int]:
    """A pair as (features, time), whatever the layer's `layout`."""
    pair = values[name]
    return pair[::-1] if values.get("layout") == "time_first" else pair


def derive(kind: LayerKind, values: dict, flow: Flow, spans: dict, entry_span: Span,
           problems: list[Diagnostic]) -> Derived | None:
    """The layer's output and tensors; None (with `problems` appended) when an argument
    cannot hold for the features it reads."""
    name = kind.name
    values = dict(values)
    features, time = flow.features, flow.time
    if name == "linear":
        out = values["out_features"]
        parameters = (_parameter("weight", (out, features)),)
        if values["bias"]:
            parameters += (_parameter("bias", (out,)),)
        return Derived(Flow(out, time), parameters, (), values)
    if name == "layer_norm":
        parameters, _ = _norm_tensors(values, features)
        return Derived(flow, parameters, (), values)
    if name == "batch_norm":
        size = flow.channels if flow.grid else features
        parameters, buffers = _norm_tensors(values, size)
        return Derived(flow, parameters, buffers, values)
    if kind.group == "step":  # activations, dropout, log_softmax: shape kept
        if name == "log_softmax" and flow.grid:
            return Derived(Flow(features, time), (), (), values)
        return Derived(flow, (), (), values)
    if name == "embedding":
        dim = values["embedding_dim"]
        index = values["padding_idx"]
        count = values["num_embeddings"]
        if index is not None and not -count <= index < count:
            problems.append(error("E021", f"`padding_idx` must be within the {count} "
                                  f"embeddings (-{count} to {count - 1}), found {index}",
                                  spans["padding_idx"]))
            return None
        return Derived(Flow(dim, time), (_parameter("weight", (count, dim)),), (), values)
    if name == "pool":
        return Derived(Flow(features, None), (), (), values)
    if name in ("subsample", "stack_frames"):
        factor = values["factor"]
        if name == "subsample":
            return Derived(Flow(features, timing.subsample(time, factor)), (), (), values)
        return Derived(Flow(factor * features, timing.stack_frames(time, factor)), (), (),
                       values)
    if name == "conv1d":
        return _conv1d(values, flow, spans, problems)
    if name in ("max_pool1d", "avg_pool1d"):
        if values["stride"] is None:
            values["stride"] = values["kernel_size"]
        if not _pool_padding(values["kernel_size"], values["padding"], spans, problems):
            return None
        return Derived(Flow(features, timing.pool(time, values["kernel_size"], values["stride"],
                                                  values["padding"], values["ceil_mode"])),
                       (), (), values)
    return _grid(kind, values, flow, spans, entry_span, problems)


def _pool_padding(kernel: int, padding: int, spans: dict, problems: list) -> bool:
    if 2 * padding > kernel:
        problems.append(error("E021", f"`padding` must be at most half of `kernel_size` "
                              f"({kernel}), found {padding}", spans.get("padding"),
                              help="PyTorch's pools pad at most half a window"))
        return False
    return True


def _groups(values: dict, channels: int, spans: dict, problems: list) -> bool:
    groups, out = values["groups"], values["out_channels"]
    wrong = [(what, count) for what, count in (("input channels", channels),
                                               ("`out_channels`", out)) if count % groups]
    if wrong:
        what, count = wrong[0]
        problems.append(error("E102", f"`groups = {groups}` does not divide the {count} "
                              f"{what}", spans.get("groups"),
                              help="`groups` must divide both the input channels and "
                                   "`out_channels`"))
        return False
    return True


def _conv1d(values: dict, flow: Flow, spans: dict, problems: list) -> Derived | None:
    if not _groups(values, flow.features, spans, problems):
        return None
    out, kernel = values["out_channels"], values["kernel_size"]
    parameters = (_parameter("weight", (out, flow.features // values["groups"], kernel)),)
    if values["bias"]:
        parameters += (_parameter("bias", (out,)),)
    time = timing.conv(flow.time, kernel, values["stride"], values["padding"],
                       values["dilation"])
    return Derived(Flow(out, time), parameters, (), values)


def _grid(kind: LayerKind, values: dict, flow: Flow, spans: dict, entry_span: Span,
          problems: list) -> Derived | None:
    """A 2-D layer: the map `[B, C, F, T]` (or `[B, C, T, F]` with `layout = time_first`)."""
    channels, bins = flow.channels, flow.bins
    convolution = kind.name == "conv2d"
    if not convolution and values["stride"] is None:
        values["stride"] = values["kernel_size"]
    kf, kt = _axes(values, "kernel_size")
    sf, st = _axes(values, "stride")
    pf, pt = _axes(values, "padding")
    df, dt = _axes(values, "dilation") if convolution else (1, 1)
    if not convolution:
        for kernel, padding in ((kf, pf), (kt, pt)):
            if not _pool_padding(kernel, padding, spans, problems):
                return None
    if convolution and not _groups(values, channels, spans, problems):
        return None
    if convolution:
        out_bins = (bins + 2 * pf - df * (kf - 1) - 1) // sf + 1
        time = timing.conv(flow.time, kt, st, pt, dt)
    else:
        time = timing.pool(flow.time, kt, st, pt, values["ceil_mode"])
        out_bins = _pool_length(bins, kf, sf, pf, values["ceil_mode"])
    if out_bins < 1:
        reach = kf if not convolution else df * (kf - 1) + 1
        problems.append(error(
            "E101", f"the window spans {reach} bins, but the map has {bins} bins"
            + (f" ({bins + 2 * pf} padded)" if pf else ""), spans.get("kernel_size", entry_span),
            help="a 2-D layer's pairs are `[features, time]`: check their order, or the "
                 "bins the layers before it leave"))
        return None
    parameters: tuple[model.Parameter, ...] = ()
    out_channels = channels
    if convolution:
        out_channels = values["out_channels"]
        kernel = (kt, kf) if values["layout"] == "time_first" else (kf, kt)
        parameters = (_parameter("weight", (out_channels, channels // values["groups"],
                                            *kernel)),)
        if values["bias"]:
            parameters += (_parameter("bias", (out_channels,)),)
    grid = (out_channels, out_bins)
    return Derived(Flow(out_channels * out_bins, time, grid), parameters, (), values)


def _pool_length(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """PyTorch's pooling length of one axis of known size."""
    span = size + 2 * padding - kernel
    if span < 0:
        return 0
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out
