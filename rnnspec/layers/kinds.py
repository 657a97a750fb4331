"""One record per layer kind (language reference, section 10): its arguments in PyTorch's
constructor order (after the input size, which the stack gives), its group, and how it
changes features and time. What a kind is in PyTorch (its module, its forward) belongs to
the backends (`backends/torch/network.py`, `backends/onnx/layers.py`); the checker
reads only this.

Groups:
- `step`: per step, `[T, B, F] -> [T, B, F']` (linear, norms, dropout, activations);
- `time`: 1-D layers that change time (conv1d, pools, subsample, stack_frames);
- `grid`: 2-D layers, on `[B, C, F, T]` (conv2d, 2-D pools);
- `head`: `pool`, which ends time;
- `embedding`: the first entry, reading integer ids.
`elementwise` kinds (activations, dropout) act on a 2-D run's map as they are; `batch_norm`
inside a 2-D run is `BatchNorm2d`.
"""

from __future__ import annotations

from rnnspec.cells.registry import ArgumentRule
from rnnspec.cells.shapes import MAX_DIMENSION
from rnnspec.records import Record


class LayerKind(Record):
    name: str
    group: str  # step, time, grid, head, embedding
    arguments: tuple[ArgumentRule, ...]
    elementwise: bool = False  # keeps every value's place: allowed inside a 2-D run
    meaning: str = ""


def _int(name, default=None, *, minimum=None, meaning="", required=False):
    return ArgumentRule(name, "int", default, required=required or default is None,
                        minimum=minimum, maximum=MAX_DIMENSION, meaning=meaning)


def _pair(name, default=None, *, minimum=None, meaning=""):
    return ArgumentRule(name, "pair", default, required=default is None and name != "stride",
                        minimum=minimum, maximum=MAX_DIMENSION, meaning=meaning)


def _float(name, default, *, minimum=None, maximum=None, meaning=""):
    return ArgumentRule(name, "float", default, minimum=minimum, maximum=maximum,
                        meaning=meaning)


def _bool(name, default, meaning=""):
    return ArgumentRule(name, "bool", default, meaning=meaning)


_P = _float("p", 0.5, minimum=0.0, maximum=1.0, meaning="the probability of zeroing a value")
_LAYOUT = ArgumentRule("layout", "word", "features_first",
                       choices=("features_first", "time_first"), keyword_only=True,
                       meaning="whether the map is `[B, C, F, T]` or `[B, C, T, F]`")

# `stride` defaults to `kernel_size` for pools: its default None stands for that.
_POOL_1D = (_int("kernel_size", minimum=1),
            ArgumentRule("stride", "int", None, minimum=1, maximum=MAX_DIMENSION),
            _int("padding", 0, minimum=0), _bool("ceil_mode", False))
_POOL_2D = (_pair("kernel_size", minimum=1),
            ArgumentRule("stride", "pair", None, minimum=1, maximum=MAX_DIMENSION),
            _pair("padding", (0, 0), minimum=0), _bool("ceil_mode", False), _LAYOUT)
_CONV_1D = (_int("out_channels", minimum=1), _int("kernel_size", minimum=1),
            _int("stride", 1, minimum=1), _int("padding", 0, minimum=0),
            _int("dilation", 1, minimum=1), _int("groups", 1, minimum=1), _bool("bias", True))
_CONV_2D = (_int("out_channels", minimum=1), _pair("kernel_size", minimum=1),
            _pair("stride", (1, 1), minimum=1), _pair("padding", (0, 0), minimum=0),
            _pair("dilation", (1, 1), minimum=1), _int("groups", 1, minimum=1),
            _bool("bias", True), _LAYOUT)

_KINDS = (
    LayerKind("linear", "step", (_int("out_features", minimum=1), _bool("bias", True))),
    LayerKind("layer_norm", "step", (_float("eps", 1e-5, minimum=0.0),
                                     _bool("elementwise_affine", True), _bool("bias", True))),
    LayerKind("batch_norm", "step", (_float("eps", 1e-5, minimum=0.0),
                                     _float("momentum", 0.1, minimum=0.0, maximum=1.0),
                                     _bool("affine", True), _bool("track_running_stats", True))),
    LayerKind("dropout", "step", (_P,), elementwise=True),
    LayerKind("locked_dropout", "step", (_P,), elementwise=True),
    *(LayerKind(name, "step", (), elementwise=True)
      for name in ("relu", "tanh", "sigmoid", "gelu", "silu")),
    LayerKind("hardtanh", "step", (_float("min_val", -1.0), _float("max_val", 1.0)),
              elementwise=True),
    LayerKind("leaky_relu", "step", (_float("negative_slope", 0.01),), elementwise=True),
    LayerKind("log_softmax", "step", ()),
    LayerKind("embedding", "embedding",
              (_int("num_embeddings", minimum=1), _int("embedding_dim", minimum=1),
               ArgumentRule("padding_idx", "int", None, minimum=-MAX_DIMENSION,
                            maximum=MAX_DIMENSION))),
    LayerKind("conv1d", "time", _CONV_1D),
    LayerKind("max_pool1d", "time", _POOL_1D),
    LayerKind("avg_pool1d", "time", _POOL_1D),
    LayerKind("subsample", "time", (_int("factor", minimum=1),)),
    LayerKind("stack_frames", "time", (_int("factor", minimum=1),)),
    LayerKind("conv2d", "grid", _CONV_2D),
    LayerKind("max_pool2d", "grid", _POOL_2D),
    LayerKind("avg_pool2d", "grid", _POOL_2D),
    LayerKind("pool", "head", (ArgumentRule("mode", "word", None, required=True,
                                            choices=("last", "first", "mean", "max", "final")),)),
)

LAYER_KINDS: dict[str, LayerKind] = {kind.name: kind for kind in _KINDS}

# An entry's `from` (wiring) and a stack's side inputs: words every entry may use.
FROM = "from"
INPUT = "input"
COMBINE = ("concat", "sum")
