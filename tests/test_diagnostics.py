"""Every diagnostic code: fires at the right line and column, renders as its golden file,
and is documented in docs/diagnostics.md (which scripts/diagnostics_doc.py writes)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, UPDATE_GOLDEN, assert_golden

from rnnspec.check.checker import check_path
from rnnspec.check.report import json_document, text_report
from rnnspec.language.diagnostics import CODES, Style
from rnnspec.tools.checkpoints.compare import attach

CASES = Path(__file__).resolve().parent / "cases"
CASE_FILES = sorted(CASES.glob("*.rnn"))
MARKER = re.compile(rb"^#! ([EW]\d{3}) (\d+):(\d+)$", re.M)


def _marker(path: Path):
    match = MARKER.search(path.read_bytes())
    assert match, f"{path.name} has no `#! CODE LINE:COL` line"
    return match.group(1).decode(), int(match.group(2)), int(match.group(3))


def _check_case(path: Path, monkeypatch):
    monkeypatch.chdir(path.parent)
    result = check_path(path.name)
    weights = path.with_suffix(".weights.json")
    if weights.exists():  # a `check --weights` case: the checkpoint's names and shapes
        shapes = json.loads(weights.read_text(encoding="utf-8"))
        tensors = {name: (tuple(shape), "float32") for name, shape in shapes.items()}
        attach(result, result.stacks[0], tensors, weights.name)
    return result


def test_every_code_has_a_case():
    covered = {_marker(p)[0] for p in CASE_FILES}
    # E006 (unreadable file) has no file to show; E050 needs a bug (see test_verify.py)
    assert covered == set(CODES) - {"E006", "E050"}


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.stem)
def test_code_fires_at_its_location(path, monkeypatch):
    code, line, column = _marker(path)
    result = _check_case(path, monkeypatch)
    located = [(d.code, d.span.line, d.span.column) for d in result.diagnostics]
    assert (code, line, column) in located
    # one root cause, one diagnostic: the case triggers nothing else
    assert len(result.diagnostics) == 1, located
    assert result.ok == code.startswith("W")


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.stem)
def test_rendering_matches_golden(path, monkeypatch):
    result = _check_case(path, monkeypatch)
    assert_golden(f"diagnostics/{path.stem}.txt", text_report([result], Style(False)))


# ----------------------------------------------------------------------------- several
# Files with several independent problems: every one is reported, each once, at its own
# location, and nothing else (no cascade). Each `#! CODE LINE:COL` line is one diagnostic.
SEVERAL = sorted((CASES / "several").glob("*.rnn"))


@pytest.mark.parametrize("path", SEVERAL, ids=lambda p: p.stem)
def test_every_independent_problem_is_reported_once(path, monkeypatch):
    expected = sorted((m.group(1).decode(), int(m.group(2)), int(m.group(3)))
                      for m in MARKER.finditer(path.read_bytes()))
    assert len(expected) > 1, f"{path.name} names fewer than two diagnostics"
    result = _check_case(path, monkeypatch)
    assert sorted((d.code, d.span.line, d.span.column) for d in result.diagnostics) == expected
    assert result.ok == all(code.startswith("W") for code, _, _ in expected)


@pytest.mark.parametrize("path", SEVERAL, ids=lambda p: p.stem)
def test_several_render_as_golden(path, monkeypatch):
    result = _check_case(path, monkeypatch)
    assert_golden(f"diagnostics/several/{path.stem}.txt", text_report([result], Style(False)))


def test_unreadable_file_is_e006(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = check_path("missing.rnn")
    assert not result.readable
    (diagnostic,) = result.diagnostics
    assert diagnostic.code == "E006" and "missing.rnn" in diagnostic.message
    assert json_document([result])["ok"] is False


def test_docs_list_every_code():
    text = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    for code, title in CODES.items():
        assert f"## {code}: {title}" in text


def test_docs_are_up_to_date():
    """docs/diagnostics.md is what scripts/diagnostics_doc.py writes from the cases."""
    script = ROOT / "scripts" / "diagnostics_doc.py"
    produced = subprocess.run([sys.executable, str(script), "--stdout"], capture_output=True,
                              text=True, check=True, cwd=ROOT).stdout
    doc = ROOT / "docs" / "diagnostics.md"
    if UPDATE_GOLDEN:
        doc.write_text(produced, encoding="utf-8")
    assert doc.read_text(encoding="utf-8") == produced, "run scripts/diagnostics_doc.py"
