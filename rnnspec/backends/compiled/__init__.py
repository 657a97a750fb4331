"""The compiled backend: the explicit backend's module, each cell's time loop generated as
C++ (`cpp`), built once per module and cached (`build`), forward and backward without
Python work per time step.

Nothing here imports torch or jinja2; `codegen` and `build` do, when used.
"""

from __future__ import annotations

from rnnspec.backends.base import MODULE, Backend

COMPILED = "compiled"

BACKENDS = (
    Backend(
        COMPILED,
        MODULE,
        "the cell equations as C++ loops (built once, cached)",
        "rnnspec.backends.torch.codegen:generate_source",
        (("backend", COMPILED),),
        loader="rnnspec.backends.torch.codegen:load_source",
    ),
)
