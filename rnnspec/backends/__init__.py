"""The backends: what turns a checked spec into something that runs.

Each backend registers one `Backend` record (its package's `__init__` does, so reading the
registry imports no backend's heavy dependencies): its name, what it produces, a line of
help, and where its entry points are, as `module:function` strings imported only when the
backend is used. The CLI (`generate --backend`, `export`) and `rnnspec.generate`/`load` read
this registry; no other list of backend names exists.

- `produces == "module"`: `generate(result)` returns the Python source of a module and
  `load(source, path)` executes it (the PyTorch backends, `fused` and `explicit`, and
  `compiled`, the explicit module with its time loops in C++).
- `produces == "onnx"`: `generate(result, path, ...)` writes a model file (`onnx`).
"""

from __future__ import annotations

from rnnspec.backends.base import MODULE as MODULE
from rnnspec.backends.base import ONNX as ONNX
from rnnspec.backends.base import Backend


def _registered() -> dict[str, Backend]:
    # Each backend package declares its records; importing the packages is cheap (their
    # `__init__` modules hold facts only, never torch, jinja2 or onnx).
    from rnnspec.backends.compiled import BACKENDS as COMPILED_BACKENDS
    from rnnspec.backends.onnx import BACKENDS as ONNX_BACKENDS
    from rnnspec.backends.torch import BACKENDS as TORCH_BACKENDS

    every = (*TORCH_BACKENDS, *COMPILED_BACKENDS, *ONNX_BACKENDS)
    return {backend.name: backend for backend in every}


def backends(produces: str | None = None) -> tuple[Backend, ...]:
    """Every registered backend (those producing `produces`), the default first."""
    return tuple(b for b in _registered().values() if produces in (None, b.produces))


def names(produces: str | None = None) -> tuple[str, ...]:
    return tuple(backend.name for backend in backends(produces))


def default(produces: str = MODULE) -> Backend:
    """The backend used when none is named: the first registered one."""
    return backends(produces)[0]


def get(name: str, produces: str | None = None) -> Backend:
    """The backend called `name`; a ValueError naming the known ones otherwise."""
    found = _registered().get(name)
    if found is None or produces not in (None, found.produces):
        known = ", ".join(names(produces))
        raise ValueError(f"unknown backend {name!r}: expected one of {known}")
    return found
