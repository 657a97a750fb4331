"""rnnspec: declare recurrent PyTorch stacks in .rnn files, check every shape before
anything runs, and generate the PyTorch modules.

The public API (nothing heavy is imported until it is used):

- `check_file(path)` / `check_source(text, path)`: the checked model and its diagnostics.
- `generate(path, backend=None)`: the source of the generated module.
- `load(path, backend=None)`: the generated classes, as a module object, without a file.

`backend` names a backend of `rnnspec.backends` that produces a module (`fused`, the
default, or `explicit`).
"""

from __future__ import annotations

from rnnspec.resources import VERSION as __version__

__all__ = ["__version__", "check_file", "check_source", "generate", "load", "SpecError"]


class SpecError(ValueError):
    """A spec with errors was given to `generate` or `load`; `diagnostics` lists them."""

    def __init__(self, message: str, diagnostics):
        super().__init__(message)
        self.diagnostics = diagnostics


def check_file(path):
    """Parse and check the spec at `path` (a `rnnspec.model.CheckedFile`)."""
    from rnnspec.check.checker import check_path

    return check_path(str(path))


def check_source(text: str, path: str = "<string>"):
    """Parse and check spec text; `path` is used in diagnostics."""
    from rnnspec.check.checker import check_text

    return check_text(text, path)


def _checked_or_raise(path):
    from rnnspec.language.diagnostics import render

    result = check_file(path)
    if not result.ok:
        sources = {result.path: result.text.split("\n")}
        errors = [d for d in result.diagnostics if d.is_error]
        text = "\n\n".join(render(d, sources) for d in errors)
        raise SpecError(f"{result.path} has {len(errors)} error(s):\n{text}", errors)
    return result


def _module_backend(name: str | None):
    from rnnspec import backends

    return backends.default() if name is None else backends.get(name, backends.MODULE)


def generate(path, backend: str | None = None) -> str:
    """The Python source of the module generated for the spec at `path`."""
    result = _checked_or_raise(path)
    return _module_backend(backend).generate(result)


def load(path, backend: str | None = None):
    """A module object holding the classes generated for the spec at `path`.

    Nothing is written to disk; tracebacks through the generated code show its lines.
    """
    result = _checked_or_raise(path)
    chosen = _module_backend(backend)
    return chosen.load(chosen.generate(result), result.path)
