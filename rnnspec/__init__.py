"""rnnspec: declare recurrent PyTorch stacks in .rnn files, check every shape before
anything runs, and generate the PyTorch modules.

The public API (nothing heavy is imported until it is used):

- `check_file(path)` / `check_source(text, path)`: the checked model and its diagnostics.
- `generate(path, backend="fused")`: the source of the generated module.
- `load(path, backend="fused")`: the generated classes, as a module object, without a file.
"""

from __future__ import annotations

__version__ = "0.1.0"
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


def generate(path, backend: str = "fused") -> str:
    """The Python source of the module generated for the spec at `path`."""
    from rnnspec.backends.torch.codegen import generate_source

    return generate_source(_checked_or_raise(path), backend=backend)


def load(path, backend: str = "fused"):
    """A module object holding the classes generated for the spec at `path`.

    Nothing is written to disk; tracebacks through the generated code show its lines.
    """
    from rnnspec.backends.torch.codegen import generate_source, load_source

    result = _checked_or_raise(path)
    return load_source(generate_source(result, backend=backend), result.path)
