"""The layout's house rules, from `scripts/architecture.py`'s analysis of the sources: no
import cycle in `rnnspec` (function-level imports included), no module over 700 lines, no
class over 350, no function over 120, and at most 8 modules loose at the top of `rnnspec/`.
The analysis is also run on a small package made to break each rule, so that a rule that
stopped finding anything would fail here."""

from __future__ import annotations

import importlib.util
import textwrap

from conftest import ROOT

MAX_TOP_LEVEL_MODULES = 8


def _load_architecture():
    spec = importlib.util.spec_from_file_location("rnnspec_architecture",
                                                  ROOT / "scripts" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


architecture = _load_architecture()


def test_the_limits_are_the_house_rules():
    assert (architecture.MAX_MODULE, architecture.MAX_CLASS, architecture.MAX_FUNCTION) == (
        700, 350, 120)


def test_no_import_cycle():
    edges = architecture.graph()
    assert "rnnspec.cli" in edges and len(edges) > 20  # the whole package was read
    assert architecture.cycles(edges) == []


def test_no_oversized_module_class_or_function():
    assert architecture.oversized() == []


def test_few_modules_loose_at_the_top_of_the_package():
    loose = sorted(path.name for path in (ROOT / "rnnspec").glob("*.py"))
    assert len(loose) <= MAX_TOP_LEVEL_MODULES, loose


# ----------------------------------------------------------------------------- the analysis


def _package(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / "rnnspec" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_the_analysis_finds_a_cycle_through_a_function_level_import(tmp_path):
    _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from rnnspec import b\n",
        "sub/__init__.py": "",
        "b.py": "def f():\n    from rnnspec.sub import c\n",
        "sub/c.py": "from . import d\n",
        "sub/d.py": "def g():\n    import rnnspec.a\n",
        "e.py": "from rnnspec import a\n",  # imports into the cycle, not part of it
    })
    edges = architecture.graph(tmp_path)
    assert architecture.cycles(edges) == [["rnnspec.a", "rnnspec.b", "rnnspec.sub.c",
                                           "rnnspec.sub.d"]]


def test_the_analysis_finds_oversized_units(tmp_path):
    body = "    x = 1\n"
    _package(tmp_path, {
        "__init__.py": "",
        "long.py": "x = 1\n" * 701,
        "small.py": ("class Big:\n" + "    y = 1\n" * 350
                     + "\n\ndef long():\n" + body * 120
                     + "\n\ndef fine():\n" + body * 119),
    })
    found = architecture.oversized(tmp_path)
    assert len(found) == 3, found
    assert any("module rnnspec.long has 701 lines" in line for line in found)
    assert any("class Big has 351 lines" in line for line in found)
    assert any("function long has 121 lines" in line for line in found)
