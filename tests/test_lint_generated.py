"""Generated code is lint-clean: every golden generated source passes `ruff check --isolated`
(ruff's own defaults) and the project's ruff configuration (line length 100 included)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from conftest import GOLDEN, ROOT

SOURCES = sorted(GOLDEN.glob("**/*.py.txt"))
needs_ruff = pytest.mark.skipif(importlib.util.find_spec("ruff") is None,
                                reason="ruff is not installed")


def _ruff(*options: str, source: str, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", *options, "--stdin-filename", name, "-"],
        input=source, capture_output=True, text=True, cwd=ROOT)


def test_there_are_generated_sources_to_lint():
    assert len(SOURCES) >= 10


@needs_ruff
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: f"{p.parent.name}-{p.name}")
def test_generated_source_passes_ruff(path):
    source = path.read_text(encoding="utf-8")
    name = "generated_" + path.name.replace(".py.txt", "").replace(".", "_") + ".py"
    isolated = _ruff("--isolated", source=source, name=name)
    assert isolated.returncode == 0, isolated.stdout + isolated.stderr
    # the project's configuration, as if the module lay in the package
    own = _ruff("--config", str(ROOT / "pyproject.toml"), source=source,
                name=f"rnnspec/{name}")
    assert own.returncode == 0, own.stdout + own.stderr


@needs_ruff
def test_the_lint_check_can_fail():
    """The same check on a line over the project's limit and an unused import fails."""
    source = "import torch\n\nx = '" + "a" * 120 + "'\n"
    assert _ruff("--isolated", source=source, name="bad.py").returncode != 0
    own = _ruff("--config", str(ROOT / "pyproject.toml"), source="x = '" + "a" * 120 + "'\n",
                name="rnnspec/bad.py")
    assert own.returncode != 0
