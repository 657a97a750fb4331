"""The PyTorch backends and their facts: which torch.nn module runs a built-in cell.

Nothing here imports torch or jinja2; `codegen` (the templates) and `verify` do, when used.
"""

from __future__ import annotations

from rnnspec.backends.base import MODULE, Backend
from rnnspec.records import Record

_CODEGEN = "rnnspec.backends.torch.codegen"
FUSED = "fused"  # the backend that runs built-in cells as their torch.nn modules

# The first is the default of `rnnspec generate` and `rnnspec.generate`/`load`.
BACKENDS = (
    Backend(FUSED, MODULE, "nn.RNN/nn.LSTM/nn.GRU modules (cuDNN on CUDA)",
            f"{_CODEGEN}:generate_source", (("backend", FUSED),),
            loader=f"{_CODEGEN}:load_source"),
    Backend("explicit", MODULE, "the cell equations written out",
            f"{_CODEGEN}:generate_source", (("backend", "explicit"),),
            loader=f"{_CODEGEN}:load_source"),
)


class TorchModule(Record):
    """The torch.nn module that runs a built-in cell on the fused backend."""

    torch_class: str  # `LSTM`: the class in torch.nn
    arguments: tuple[str, ...] = ()  # constructor keywords beyond the common ones


# Keyed by the built-in cell's name (rnnspec.cells.registry.BUILTIN_CELLS).
TORCH_MODULES: dict[str, TorchModule] = {
    "rnn": TorchModule("RNN", ("nonlinearity",)),
    "lstm": TorchModule("LSTM", ("proj_size",)),
    "gru": TorchModule("GRU"),
}


def torch_module(cell) -> TorchModule | None:
    """The torch.nn module of a built-in cell (a `Cell` record); None for declared cells,
    which are always written out."""
    return TORCH_MODULES.get(cell.name) if cell.positional else None
