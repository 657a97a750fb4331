"""The checker's side of issue 19, case by case: a 400-digit literal, `h * 99999999999999999999`
and `h * (1 / 0)` are located errors at `check`, and `export` of such a spec exits 1 with
them (no OverflowError); a duplicate top-level name is reported at its second definition
with the note at the first, for every pair of kinds (one namespace)."""

from __future__ import annotations

import cli_process
import pytest
from conftest import ROOT
from test_equation_numbers import CELL  # a cell whose step adds a given number

from rnnspec.check.checker import check_text

BIG = "1" + "0" * 399  # 400 digits



@pytest.mark.parametrize(("text", "code", "line"), [
    (CELL.format(f"h * {BIG}"), "E023", 4),
    (CELL.format("h * 99999999999999999999"), "E023", 4),
    (CELL.format("h * (1 / 0)"), "E022", 4),
    (f"stack S {{\n    input_size = 3\n    gru(hidden_size = {BIG})\n}}\n", "E023", 3),
    (f"let big = {BIG}\nstack S {{\n    input_size = big\n    gru(hidden_size = 4)\n}}\n",
     "E023", 3),
])
def test_numbers_are_located_errors_and_export_stops_at_them(tmp_path, text, code, line):
    result = check_text(text, "spec.rnn")
    assert [(d.code, d.span.line) for d in result.diagnostics] == [(code, line)]
    spec = tmp_path / "spec.rnn"
    spec.write_text(text, encoding="utf-8")
    run = cli_process.run("export", spec, "-o", tmp_path / "out.onnx", cwd=ROOT)
    assert run.returncode == 1, run.stderr
    assert f"error[{code}]" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out.onnx").exists()


KINDS = {
    "let": "let Net = 3\n",
    "stack": "stack Net {\n    input_size = 3\n    gru(hidden_size = 4)\n}\n",
    "cell": ("cell Net {\n    state h[hidden_size]\n    param w[hidden_size, input_size]\n"
             "    h = tanh(w @ x)\n}\n"),
}


@pytest.mark.parametrize("second", KINDS)
@pytest.mark.parametrize("first", KINDS)
def test_a_duplicate_name_is_reported_at_its_second_definition(first, second):
    text = "# two definitions of one name\n" + KINDS[first] + KINDS[second]
    later = 2 + KINDS[first].count("\n")
    (problem,) = check_text(text, "spec.rnn").diagnostics
    assert (problem.code, problem.span.line) == ("E011", later)
    (note,) = problem.notes
    assert note.message == "`Net` is first defined here" and note.span.line == 2
