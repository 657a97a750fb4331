"""Built-in cells as equations (`rnnspec.cells.builtin`): each variant checks, in
PyTorch's parameter order, and the check path never loads it."""

import subprocess
import sys

import pytest
from conftest import ROOT

from rnnspec.cells import builtin
from rnnspec.cells.registry import BUILTIN_CELLS, derive

VARIANTS = [
    ("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("rnn", {"bias": False}),
    ("lstm", {}), ("lstm", {"bias": False}), ("lstm", {"proj_size": 3}),
    ("lstm", {"proj_size": 3, "bias": False}), ("gru", {}), ("gru", {"bias": False}),
]


@pytest.mark.parametrize(("name", "arguments"), VARIANTS)
def test_each_variant_checks_with_pytorchs_parameters(name, arguments):
    cell = BUILTIN_CELLS[name]
    block = derive(cell, input_size=5, hidden_size=7, **arguments)
    step = builtin.step(cell, block.arguments)
    roles = [p.role for p in block.parameters if p.layer == 0 and not p.reverse]
    assert list(step.params) == roles
    assert step.states == tuple(s.name for s in cell.states)
    assert "weight_hh" in step.recurrent_weights
    assert not step.conditions


def test_variants_are_checked_once():
    cell = BUILTIN_CELLS["gru"]
    first = builtin.step(cell, {"bias": True})
    assert builtin.step(cell, {"bias": True, "num_layers": 3}) is first


def test_gru_resets_after_the_recurrent_projection():
    texts = [a.text for a in builtin.step(BUILTIN_CELLS["gru"], {"bias": True}).statements]
    assert "hr, hz, hn = chunk(weight_hh @ h + bias_hh, 3)" in texts
    assert "n = tanh(xn + r * hn)" in texts


def test_the_check_path_does_not_load_the_builtin_equations():
    code = ("import sys; from rnnspec.check.checker import check_path; "
            "check_path('examples/seed.rnn'); print('rnnspec.cells.builtin' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
