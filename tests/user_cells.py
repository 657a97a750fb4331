"""Helpers for the user-cell tests (language.md section 8): the feature probe, the cell
items of examples/cells.rnn, spec text for a stack of them, the generated classes, and one
plain PyTorch runner of a step function over layers and directions.

Nothing here knows the generator's internals: only `rnnspec.check_source`,
`rnnspec.backends.torch.codegen.generate_source`/`load_source` and the generated API of
sections 7 and 8.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "examples" / "cells.rnn"
BACKENDS = ("fused", "explicit")
PROBE = "cell Probe { state h[hidden_size] h = tanh(h) }"


@functools.cache
def user_cells_supported() -> bool:
    """False while a one-line `cell` item is a syntax error (the feature has not landed)."""
    from rnnspec import check_source

    try:
        result = check_source(PROBE, "probe.rnn")
    except Exception:  # a crash is a bug the tests should show, not a reason to skip
        return True
    return not any(d.code == "E001" for d in result.diagnostics)


needs_user_cells = pytest.mark.skipif(
    not user_cells_supported(),
    reason="user cells (language.md section 8) are not implemented yet: "
           "`rnnspec.check_source` reports a `cell` item as a syntax error (E001)")


# ----------------------------------------------------------------------------- library


def cell_items(text: str) -> dict[str, str]:
    """Cell name -> the text of its `cell` item, comments dropped, in file order."""
    source = "\n".join(line.split("#", 1)[0].rstrip() for line in text.splitlines())
    items: dict[str, str] = {}
    for match in re.finditer(r"^cell\s+(\w+)", source, re.MULTILINE):
        depth, end = 0, None
        for index in range(source.index("{", match.end()), len(source)):
            if source[index] == "{":
                depth += 1
            elif source[index] == "}":
                depth -= 1
                if depth == 0:
                    end = index + 1
                    break
        assert end is not None, f"cell {match.group(1)} has no closing brace"
        items[match.group(1)] = source[match.start():end]
    return items


@functools.cache
def library() -> dict[str, str]:
    return cell_items(LIBRARY.read_text(encoding="utf-8"))


def argument_text(arguments: dict) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)
    return ", ".join(f"{k} = {value(v)}" for k, v in arguments.items())


def stack_source(name: str, input_size: int, batch_first: bool, blocks, cells=None) -> str:
    """A spec: the library cells the blocks use, then one stack.

    `blocks`: (block name, cell name, arguments) triples; `cells`: name -> item text
    (the library's by default)."""
    cells = library() if cells is None else cells
    used = list(dict.fromkeys(cell for _, cell, _ in blocks))
    lines = [f"stack {name} {{", f"    input_size = {input_size}"]
    if batch_first:
        lines.append("    batch_first = true")
    for block, cell, arguments in blocks:
        lines.append(f"    {block} = {cell}({argument_text(arguments)})")
    lines.append("}")
    return "\n\n".join([*(cells[c] for c in used), "\n".join(lines)]) + "\n"


def check_clean(source: str, path: str = "cells_test.rnn"):
    """The checked file; fails the test with the rendered errors if there are any."""
    from rnnspec import check_source
    from rnnspec.language.diagnostics import render

    result = check_source(source, path)
    errors = [d for d in result.diagnostics if d.is_error]
    if errors:
        sources = {path: source.split("\n")}
        text = "\n\n".join(render(d, sources) for d in errors)
        pytest.fail(f"spec has errors:\n{text}\n--- spec ---\n{source}")
    return result


@functools.lru_cache(maxsize=256)
def generated_module(source: str, backend: str):
    """The generated module object for spec text (cached: generation is the slow part)."""
    from rnnspec.backends.torch.codegen import generate_source, load_source

    result = check_clean(source)
    return load_source(generate_source(result, backend=backend), "cells_test.rnn")


def built(text: str, backend: str, device: str, name: str, path: str):
    """(stack `name` of the spec text, generated for `backend` and built on `device`, in
    eval mode; the checked file)."""
    import warnings

    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source, load_source

    result = check_source(text, path)
    assert result.ok, result.diagnostics
    module = load_source(generate_source(result, backend=backend), path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(module, name)(device=device).eval(), result


def as_tuple(state):
    """A block's state as returned by forward: a tensor (one state) or a tuple of them."""
    return state if isinstance(state, tuple) else (state,)


# ----------------------------------------------------------------------------- reference


def params_by_layer_dir(named, prefix: str = ""):
    """[layer][direction] -> {param name: tensor} from state-dict style names
    `<prefix><name>_l{k}` / `<prefix><name>_l{k}_reverse`."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\w+?)_l(\d+)(_reverse)?$")
    table: dict[tuple[int, int], dict] = {}
    for key, value in named.items():
        match = pattern.match(key)
        if match is None:
            continue
        name, layer, reverse = match.group(1), int(match.group(2)), match.group(3)
        table.setdefault((layer, 1 if reverse else 0), {})[name] = value
    layers = 1 + max(k for k, _ in table)
    directions = 1 + max(d for _, d in table)
    return [[table[(k, d)] for d in range(directions)] for k in range(layers)]


def run_reference(step_fn, params, x, h0s, *, batch_first: bool = False):
    """A stack of one recurrent block, in plain PyTorch, as PyTorch's own modules run it.

    `step_fn(p, x_t, states) -> new states` (a tuple; the first is the step's output) for
    one layer and direction, `x_t` of shape [B, features]; `params[k][d]` the parameters of
    layer k, direction d; `x` [T, B, I] ([B, T, I] with batch_first, [T, I] unbatched);
    `h0s` a tuple of initial states, each [D*L, B, size] ([D*L, size] unbatched), rows
    ordered layer-major then direction. The reverse direction runs the same step over the
    reversed sequence and its outputs are put back in time order; layer k > 0 reads the
    concatenation of both directions' outputs. Returns (output, final states) shaped as
    the inputs are.
    """
    import torch

    unbatched = x.dim() == 2
    if unbatched:
        x = x.unsqueeze(1)
        h0s = tuple(h.unsqueeze(1) for h in h0s)
    elif batch_first:
        x = x.transpose(0, 1)
    steps = x.shape[0]
    directions = len(params[0])
    finals: list[list] = [[] for _ in h0s]
    layer_input = x
    for layer, per_direction in enumerate(params):
        outputs = []
        for direction, p in enumerate(per_direction):
            row = layer * directions + direction
            states = tuple(h[row] for h in h0s)
            order = range(steps) if direction == 0 else range(steps - 1, -1, -1)
            out = [None] * steps
            for t in order:
                states = tuple(step_fn(p, layer_input[t], states))
                out[t] = states[0]
            outputs.append(torch.stack(out))
            for index, state in enumerate(states):
                finals[index].append(state)
        layer_input = torch.cat(outputs, dim=-1)
    output = layer_input
    final = tuple(torch.stack(f) for f in finals)
    if unbatched:
        return output.squeeze(1), tuple(f.squeeze(1) for f in final)
    if batch_first:
        output = output.transpose(0, 1)
    return output, final


# ----------------------------------------------------------------------------- text model
# A small independent reading of a cell item's text, enough to run the library's equations
# with torch today: the declarations by regex, the statements by Python's own parser (the
# expression forms of section 8 are Python syntax), `W @ v` as `F.linear(v, W)`.


def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets and parentheses."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


class CellText:
    """The declarations and statements of one `cell` item."""

    def __init__(self, item: str):
        header, body = item.split("{", 1)
        body = body.rsplit("}", 1)[0]
        match = re.match(r"cell\s+(\w+)\s*(?:\((.*)\))?", header.strip(), re.DOTALL)
        self.name = match.group(1)
        self.arguments = _split_top(match.group(2) or "")
        self.states: list[tuple[str, str]] = []
        self.params: list[tuple[str, list[str], str]] = []
        self.statements: list[str] = []
        self.requires: list[str] = []
        for line in (raw.strip() for raw in body.split("\n")):
            if not line:
                continue
            if line.startswith("require "):
                self.requires.append(line[len("require "):])
            elif line.startswith("state "):
                for part in _split_top(line[len("state "):]):
                    name, size = re.fullmatch(r"(\w+)\s*\[(.*)\]", part).groups()
                    self.states.append((name, size))
            elif line.startswith("param "):
                for part in _split_top(line[len("param "):]):
                    name, dims, init = re.fullmatch(r"(\w+)\s*\[(.*)\]\s*(?:=\s*(.*))?",
                                                    part).groups()
                    self.params.append((name, _split_top(dims), (init or "uniform").strip()))
            else:
                self.statements.append(line)

    def sizes(self, names: dict) -> tuple[dict, dict]:
        """(state name -> size, param name -> shape) for the given size names."""
        def value(text):
            return eval(text, {"__builtins__": {}}, dict(names))  # noqa: S307 (test-only)
        states = {n: value(s) for n, s in self.states}
        params = {n: tuple(value(d) for d in dims) for n, dims, _ in self.params}
        return states, params

    def numbers(self) -> dict[str, float]:
        """The header's number arguments (float defaults) and their defaults."""
        found = {}
        for argument in self.arguments:
            name, _, default = (part.strip() for part in argument.partition("="))
            if default and ("." in default or "e" in default.lower()):
                found[name] = float(default)
        return found

    def step(self, numbers: dict | None = None):
        """A step function `(p, x, states) -> states` that runs the statements with torch
        (in evaluation: `dropout` is the identity). Matrix parameters (2-D) and their
        `chunk`s are row blocks; a 3-D parameter `[heads, m, n]` multiplies block-diagonally
        (`torch.block_diag`); `and`/`or`/`not` and comparison chains act elementwise."""
        import ast

        import torch
        import torch.nn.functional as F

        def call(name, *args):
            return ast.Call(ast.Name(name, ast.Load()), list(args), [])

        class Rewrite(ast.NodeTransformer):
            def visit_BinOp(self, node):
                self.generic_visit(node)
                if isinstance(node.op, ast.MatMult):
                    return call("_matmul", node.left, node.right)
                return node

            def visit_BoolOp(self, node):
                self.generic_visit(node)
                function = "_and" if isinstance(node.op, ast.And) else "_or"
                result = node.values[0]
                for value in node.values[1:]:
                    result = call(function, result, value)
                return result

            def visit_UnaryOp(self, node):
                self.generic_visit(node)
                if isinstance(node.op, ast.Not):
                    return call("_not", node.operand)
                return node

            def visit_Compare(self, node):
                self.generic_visit(node)
                pairs, left = [], node.left
                for op, right in zip(node.ops, node.comparators):
                    pairs.append(ast.Compare(left, [op], [right]))
                    left = right
                result = pairs[0]
                for pair in pairs[1:]:
                    result = call("_and", result, pair)
                return result

        class Matrix:
            def __init__(self, value):
                self.value = value

        def matmul(w, v):
            w = w.value if isinstance(w, Matrix) else w
            if w.dim() == 3:  # heads: one block per head on the diagonal
                w = torch.block_diag(*w.unbind(0))
            return F.linear(v, w)

        def concat(*parts):  # parameters (no batch axis) meet batched values
            leading = max(parts, key=lambda part: part.dim()).shape[:-1]
            return torch.cat([part.expand(*leading, part.shape[-1]) for part in parts], -1)

        def where(condition, a, b):  # numbers as float64 tensors (the tests' dtype)
            a, b = (v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=torch.float64)
                    for v in (a, b))
            return torch.where(condition, a, b)

        def chunk(a, n):
            if isinstance(a, Matrix):
                return tuple(Matrix(piece) for piece in a.value.chunk(n, dim=0))
            return a.chunk(n, dim=-1)

        def layer_norm(a, weight=None, bias=None, eps=1e-5):
            return F.layer_norm(a, (a.shape[-1],), weight, bias, eps)

        functions = {
            "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "gelu": F.gelu,
            "silu": F.silu, "softplus": F.softplus, "logsigmoid": F.logsigmoid,
            "exp": torch.exp, "log": torch.log, "abs": torch.abs, "sqrt": torch.sqrt,
            "clamp": torch.clamp, "minimum": torch.minimum, "maximum": torch.maximum,
            "layer_norm": layer_norm, "concat": concat,
            "chunk": chunk, "_matmul": matmul, "where": where,
            "dropout": lambda a, p, per=None: a, "step": "step", "sequence": "sequence",
            "_and": torch.logical_and, "_or": torch.logical_or, "_not": torch.logical_not,
        }
        code = []
        for statement in self.statements:
            tree = Rewrite().visit(ast.parse(statement))
            assign = tree.body[0]
            if isinstance(assign.value, ast.Call) and getattr(assign.value.func, "id", "") \
                    == "chunk" and isinstance(assign.targets[0], ast.Name):
                assign.targets = [ast.Tuple([assign.targets[0]], ast.Store())]  # `(a,) =`
            tree = ast.fix_missing_locations(tree)
            code.append(compile(tree, f"<cell {self.name}>", "exec"))
        state_names = [n for n, _ in self.states]
        values = {**self.numbers(), **(numbers or {})}

        def step(p, x, states):
            params = {k: Matrix(v) if v.dim() == 2 else v for k, v in p.items()}
            env = {**functions, **values, **params, "x": x,
                   **dict(zip(state_names, states, strict=True))}
            for c in code:
                exec(c, env)  # noqa: S102 (test-only evaluation of the library's text)
            # a state given a value of parameters only: each sequence of the batch has it
            return tuple(env[n].expand_as(old) for n, old in zip(state_names, states))
        return step

    def assigned(self) -> list[str]:
        names = []
        for statement in self.statements:
            names += [t.strip() for t in statement.split("=", 1)[0].split(",")]
        return names
