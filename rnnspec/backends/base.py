"""The record each backend registers (`rnnspec.backends` collects them)."""

from __future__ import annotations

from rnnspec.records import Record

MODULE, ONNX = "module", "onnx"  # what a backend produces


class Backend(Record):
    name: str
    produces: str  # MODULE (Python source) or ONNX (a model file)
    help: str  # one line, for the command line's help
    entry: str  # `module:function` that generates; called with `options` as keywords
    options: tuple[tuple[str, object], ...] = ()
    loader: str | None = None  # `module:function` that loads what `entry` produced

    def generate(self, *args, **kwargs):
        """Run the backend's entry point (importing it and its dependencies now)."""
        return _resolve(self.entry)(*args, **dict(self.options), **kwargs)

    def load(self, *args, **kwargs):
        if self.loader is None:
            raise ValueError(f"backend {self.name!r} produces {self.produces}, not a module")
        return _resolve(self.loader)(*args, **kwargs)

    def module(self):
        """The module of the entry point, for the backend's own constants."""
        import importlib

        return importlib.import_module(self.entry.partition(":")[0])


def _resolve(entry: str):
    import importlib

    module, _, function = entry.partition(":")
    return getattr(importlib.import_module(module), function)
