"""The checked model: its imports and the records every consumer reads."""

import ast
from pathlib import Path

import rnnspec.model


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_model_imports_nothing_from_the_registry():
    # not even inside a function: the registry imports the model
    modules = _imported_modules(Path(rnnspec.model.__file__))
    assert not any(m.startswith("rnnspec.cells") for m in modules), modules
    assert not any(m.startswith(("rnnspec.check", "rnnspec.backends", "rnnspec.tools"))
                   for m in modules), modules
