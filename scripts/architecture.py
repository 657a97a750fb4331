"""Report what makes rnnspec's layout hard to read: import cycles and oversized units.

    python scripts/architecture.py          # print the findings; exit 1 when there are any
    python scripts/architecture.py --graph  # also print the whole import graph

(a) The import graph of the `rnnspec` package, counting every `import` and `from ... import`
    anywhere in a module (function-level imports included, since a cycle hidden in a function
    is still a cycle), and every cycle in it.
(b) Modules over 700 lines, classes over 350 lines, functions over 120 lines.

The limits are the house rules of the project; the script only reads the sources (nothing is
imported), so it runs without torch, jinja2, onnx or pygls.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "rnnspec"
MAX_MODULE, MAX_CLASS, MAX_FUNCTION = 700, 350, 120


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by its dotted name (`rnnspec.cli`, `rnnspec.check`)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from` import names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is a module of the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that `module` imports anywhere (top level or in a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, is_package, node)
            # `from rnnspec import model` names a submodule; `from rnnspec import load`
            # names something of the package itself
            names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                     for alias in node.names]
        else:
            continue
        for name in names:
            target = _known(name, known)
            if target is not None and target != module:
                found.add(target)
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges) + 100))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def oversized(root: Path = ROOT) -> list[str]:
    """`path:line: kind name has N lines (limit L)` for every unit over its limit."""
    findings = []
    for name, path in modules(root).items():
        text = path.read_text(encoding="utf-8")
        relative = path.relative_to(root)
        lines = len(text.splitlines())
        if lines > MAX_MODULE:
            findings.append(f"{relative}:1: module {name} has {lines} lines "
                            f"(limit {MAX_MODULE})")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, ast.ClassDef):
                kind, limit = "class", MAX_CLASS
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                kind, limit = "function", MAX_FUNCTION
            else:
                continue
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            size = node.end_lineno - first + 1
            if size > limit:
                findings.append(f"{relative}:{node.lineno}: {kind} {node.name} has {size} "
                                f"lines (limit {limit})")
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", action="store_true", help="print the whole import graph")
    args = parser.parse_args(argv)
    edges = graph()
    if args.graph:
        print("import graph (function-level imports included):")
        for name in sorted(edges):
            print(f"  {name} -> {', '.join(sorted(edges[name])) or '(nothing of rnnspec)'}")
    found = cycles(edges)
    for component in found:
        print(f"import cycle: {' <-> '.join(component)}")
    sizes = oversized()
    for line in sizes:
        print(line)
    total = len(found) + len(sizes)
    print(f"{len(edges)} modules: {len(found)} import cycle(s), {len(sizes)} oversized unit(s)")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
