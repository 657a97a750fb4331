"""The cell classes the emitter writes are formatter-stable: `ruff format --check` under the
project's configuration changes none of them (the goldens, the examples, random cells), and
`layout.statement` splits lines as ruff does. No torch needed."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import pytest
from cell_strategies import cells, render_cell
from hypothesis import HealthCheck, given, settings

from rnnspec import check_source
from rnnspec.backends.torch.emit import cell_source
from rnnspec.backends.torch.layout import statement

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
CELL_CLASS = re.compile(r"^class \w+\(_Recurrent\):\n(?:(?:[ \t][^\n]*)?\n)*", re.MULTILINE)


def _ruff() -> list[str]:
    if shutil.which("ruff"):
        return ["ruff"]
    try:
        import ruff  # noqa: F401
    except ImportError:
        pytest.skip("ruff is not installed")
    return [sys.executable, "-m", "ruff"]


def _format_diff(source: str) -> str:
    """What `ruff format` would change in `source` (the project's configuration)."""
    done = subprocess.run([*_ruff(), "format", "--diff", "--config",
                           str(ROOT / "pyproject.toml"), "--stdin-filename", "cells.py", "-"],
                          input=source, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode in (0, 1), done.stderr
    return done.stdout if done.returncode else ""


def _cell_classes(source: str) -> str:
    return "\n\n\n".join(m.group(0).rstrip() for m in CELL_CLASS.finditer(source)) + "\n"


def test_golden_cell_classes_are_formatter_stable():
    sources = sorted(GOLDEN.rglob("*.py.txt"))
    classes = [_cell_classes(path.read_text(encoding="utf-8")) for path in sources]
    classes = [text for text in classes if text.strip()]
    assert classes, "no cell classes in the goldens"
    assert _format_diff("\n\n\n".join(t.rstrip() for t in classes) + "\n") == ""


def test_example_cell_classes_are_formatter_stable():
    out = []
    for path in sorted((ROOT / "examples").glob("*.rnn")):
        result = check_source(path.read_text(encoding="utf-8"), path.name)
        out += [cell_source(cell, f"Cell{len(out)}") for cell in result.cells]
    assert out
    assert _format_diff("\n\n\n".join(out) + "\n") == ""


_RANDOM: list[str] = []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=cells())
def _collect(cell):
    result = check_source(render_cell(cell).text, "random_cell.rnn")
    _RANDOM.extend(cell_source(c, f"C{len(_RANDOM)}") for c in result.cells)


def test_random_cell_classes_are_formatter_stable():
    _RANDOM.clear()
    _collect()
    assert _RANDOM
    assert _format_diff("\n\n\n".join(_RANDOM) + "\n") == ""


LONG = [
    ("h = gates_x + _layer_norm(F.linear(h, w.weight_hh), w.layernorm_h_weight, w.layernorm_h_b)",
     "[B, hidden_size]"),
    ("c = _layer_norm(torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg), "
     "w.layernorm_c_weight, w.layernorm_c_bias, 1e-05)", "[B, hidden_size]"),
    ("i, f, g, o = (gates_x + _layer_norm(F.linear(h, w.recurrent_kernel), w.gamma_r, None, "
     "1e-05)).chunk(4, -1)", "each [B, hidden_size]"),
    ("hr, hz, hn = F.linear(hhhhhhhhhhhhh, w.weight_hh, w.bias_hhhhhhhhhhhh).chunk(3, -1)",
     "each [B, hidden_size]"),
    ("hr = F.linear(hhhhhhhhhhhhh, w.weight_hh, w.bias_hhhhhhhhhhhh) + gates_xxxxxxxxxxxxxx",
     "[B, hidden_size]"),
    ("h = aaaaaaaaaaaaaaaaaaaaaa + bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb * cccccccccccccccc + "
     "ddddddddddddddddddddddddd", "[B, n]"),
    ("s2, s1 = (piece.expand_as(s2) for piece in gates_ppppppppppppppppppppppppp.chunk(2, -1))",
     "each [B, 2 * hidden_size]"),
    ("v9 = (_concat(x, v7) + torch.exp(w.p10)) * -(w.p11 * (0.001 * 0.5))",
     "[T, B, hidden_size + input_size]"),
    ('initial = (("weight_ih", "normal", 0.0, 1.0), ("weight_hh", "normal", 0.0, 1.0), '
     '("layernorm_i_weight", "ones"))', None),
    ("return aaaaaaaaaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb, ccccccccccccccccccccccc",
     None),
]


def test_long_statements_are_laid_out_as_ruff_lays_them_out():
    lines = [statement(code, 8, comment) for code, comment in LONG]
    assert all(len(line) <= 100 or "#" in line for text in lines for line in text.split("\n"))
    source = "def f():\n    if x:\n" + "\n".join(lines) + "\n"
    compile(source, "long.py", "exec")
    assert _format_diff(source) == ""
