"""Golden files for the shared reference examples: text report, JSON report and the
generated source of both backends. RNNSPEC_UPDATE_GOLDEN=1 refreshes them."""

from __future__ import annotations

import json

import pytest
from conftest import OWN_EXAMPLES, SHARED_EXAMPLES, assert_golden, shared_examples

from rnnspec.backends.torch.codegen import generate_source
from rnnspec.check.checker import check_path
from rnnspec.check.report import json_report, text_report
from rnnspec.language.diagnostics import Style

EXAMPLES = shared_examples() + sorted(OWN_EXAMPLES.glob("*.rnn"))
needs_examples = pytest.mark.skipif(not shared_examples(), reason="../shared/examples missing")


def _folder(path) -> str:
    return "shared" if path.parent == SHARED_EXAMPLES else "own"


def _checked(path, monkeypatch):
    monkeypatch.chdir(path.parent)
    return check_path(path.name)


@needs_examples
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{_folder(p)}-{p.stem}")
def test_text_report(path, monkeypatch):
    result = _checked(path, monkeypatch)
    assert_golden(f"{_folder(path)}/{path.stem}.txt", text_report([result], Style(False)))


@needs_examples
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{_folder(p)}-{p.stem}")
def test_json_report(path, monkeypatch):
    result = _checked(path, monkeypatch)
    text = json_report([result])
    json.loads(text)
    assert_golden(f"{_folder(path)}/{path.stem}.json", text)


@needs_examples
@pytest.mark.parametrize("backend", ["fused", "explicit"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{_folder(p)}-{p.stem}")
def test_generated_source(path, backend, monkeypatch):
    result = _checked(path, monkeypatch)
    if not result.ok:
        pytest.skip("a spec with errors generates nothing")
    assert_golden(f"{_folder(path)}/{path.stem}.{backend}.py.txt",
                  generate_source(result, backend=backend))


@needs_examples
def test_shared_examples_have_the_documented_results(monkeypatch):
    """seed, tagger and projection check clean; seed_mistake fails at line 10 with 30 vs 20."""
    outcomes = {p.stem: _checked(p, monkeypatch) for p in shared_examples()}
    for name in ("seed", "tagger", "projection"):
        assert outcomes[name].ok and all(e.ok for e in outcomes[name].expectations)
        assert not outcomes[name].diagnostics
    mistake = outcomes["seed_mistake"]
    (diagnostic,) = mistake.diagnostics
    assert diagnostic.span.line == 10
    assert "30" in diagnostic.message and "20" in diagnostic.message
    assert [e.ok for e in mistake.expectations] == [False]


@needs_examples
def test_v2_shared_examples_have_the_documented_results(monkeypatch):
    """cells.rnn and padded.rnn check clean; cells_mistake.rnn has one error, at line 7, at
    the first `@`, with both sizes in words."""
    outcomes = {p.stem: _checked(p, monkeypatch) for p in shared_examples()}
    for name in ("cells", "padded"):
        assert outcomes[name].ok and all(e.ok for e in outcomes[name].expectations)
        assert not outcomes[name].diagnostics, outcomes[name].diagnostics
    mistake = outcomes["cells_mistake"]
    (diagnostic,) = mistake.diagnostics
    line = mistake.text.split("\n")[6]
    assert diagnostic.span.line == 7 and diagnostic.span.column == line.index("@") + 1
    assert "hidden_size" in diagnostic.message and "input_size" in diagnostic.message
