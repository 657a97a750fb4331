"""One translation unit per generated module: the C++ of all its cells (`cpp` prints the
generic loop, `fused` the CPU fast path), one `TORCH_LIBRARY` op per cell, in a namespace
named by the source's hash."""

from __future__ import annotations

import hashlib

from rnnspec.backends.compiled import backward
from rnnspec.backends.compiled.cpp import _PRELUDE, LINE, Unsupported
from rnnspec.backends.compiled.fused import PRELUDE, FusedCell

_SCHEMA = """
// The schema of every cell's op (after its name).
#define SCHEMA "(Tensor[] inputs, Tensor[] state, Tensor[] weights, float[] numbers, " \\
  "bool reverse, Tensor? valid, Tensor? keep, float zoneout, Tensor? zone) -> Tensor[]"
"""


def _entry(index: int, fused: bool) -> list[str]:
    fast = [
        "  if (fusable(a)) {",
        f"    if (a.state[0].scalar_type() == at::kFloat) return loop_{index}_fused<float>(a);",
        f"    return loop_{index}_fused<double>(a);",
        "  }",
    ]
    return [
        f"std::vector<Tensor> loop_{index}(at::TensorList inputs, at::TensorList state,",
        "    at::TensorList weights, c10::ArrayRef<double> numbers, bool reverse,",
        "    const std::optional<Tensor>& valid, const std::optional<Tensor>& keep,",
        "    double zoneout, const std::optional<Tensor>& zone) {",
        "  const Args a{inputs, state, weights, numbers, reverse, valid, keep, zoneout, zone};",
        *(fast if fused else []),
        f"  return loop_{index}_generic(a);",
        "}",
    ]


class Source:
    """The C++ of a module's cells: its text, its namespace and each cell's entry."""

    def __init__(self, text: str, namespace: str, cells: dict):
        self.text = text
        self.namespace = namespace
        self.cells = cells  # class name -> (op name, roles, reads dropout)

    def table(self) -> list[str]:
        """The entries of the module's `_COMPILED` dict, as `ruff format` writes them."""
        lines = []
        for name, (op, roles, drops) in self.cells.items():
            quoted = [f'"{role}"' for role in roles]
            names = f"({', '.join(quoted)}{',' if len(quoted) == 1 else ''})"
            line = f'    "{name}": ("{op}", {names}, {drops}),'
            if len(line) <= 100:
                lines.append(line)
                continue
            lines += [f'    "{name}": (', f'        "{op}",']
            if len(names) + 9 <= 100:
                lines.append(f"        {names},")
            else:
                lines += ["        (", *(f"            {q}," for q in quoted), "        ),"]
            lines += [f"        {drops},", "    ),"]
        return lines


def module_source(cells: list[tuple[str, object]]) -> Source:
    """The translation unit of `cells` ((class name, `Step`) in the module's order): one
    op per cell, `torch.ops.<namespace>.loop_<k>`. Cells it cannot write are left out."""
    parts: list[str] = []
    entries = {}
    registrations = []
    for class_name, step in cells:
        cell = FusedCell(step, len(entries))
        try:
            lines = [f"// {class_name}", *cell.generic(), ""]
        except Unsupported:
            continue
        try:
            lines += [*cell.fused(), ""]
            fused = True
        except Unsupported:
            fused = False
        lines += _entry(cell.index, fused)
        trained = backward.train_source(step, cell.index) if fused else None
        if trained is not None:  # the generated backward (else autograd's over the generic)
            lines += ["", *trained[0]]
        parts.append("\n".join(lines))
        entries[class_name] = (f"loop_{cell.index}", cell.roles, cell.dropout)
        registrations.append(f'  m.def("loop_{cell.index}" SCHEMA, &loop_{cell.index});')
        registrations += trained[1] if trained is not None else []
    body = "\n\n".join(parts)
    registration = "\n".join(_wrap(line, 2) for line in registrations)
    lines = "\n".join(_wrap(line, 0) for line in body.split("\n"))
    text = (
        _PRELUDE
        + PRELUDE
        + backward.PRELUDE
        + "\n"
        + lines
        + "\n\n}  // namespace\n"
        + _SCHEMA
        + backward.SCHEMA
        + "\nTORCH_LIBRARY(NAMESPACE, m) {\n"
        + registration
        + "\n}\n"
    )
    namespace = "rnnspec_" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return Source(text.replace("NAMESPACE", namespace), namespace, entries)


def _wrap(line: str, _indent: int) -> str:
    """A C++ line within `LINE` characters: broken after commas, the rest indented."""
    if len(line) <= LINE:
        return line
    indent = len(line) - len(line.lstrip(" "))
    out, current = [], ""
    for piece in _split(line):
        if current and len(current) + len(piece) > LINE:
            out.append(current.rstrip())
            current = " " * (indent + 4) + piece.lstrip()
        else:
            current += piece
    out.append(current.rstrip())
    return "\n".join(out)


def _split(line: str) -> list[str]:
    """`line` cut after each `, ` and before each ` + `-like operator, outside strings."""
    pieces, current, quoted = [], "", False
    for i, char in enumerate(line):
        current += char
        if char == '"':
            quoted = not quoted
        if not quoted and (
            char == ","
            or (char == " " and line[i + 1 : i + 2] in "+-*/")
            and line[i + 2 : i + 3] == " "
        ):
            pieces.append(current)
            current = ""
    pieces.append(current)
    return pieces
