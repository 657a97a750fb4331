"""The README's Quickstart is what CI runs, and its examples are real."""

from __future__ import annotations

import re

from conftest import ROOT


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_quickstart_opens_with_two_commands():
    install, tests = quickstart_commands()
    assert "pip install" in install and "rnnspec check examples/" in install
    assert "pytest" in tests


def test_ci_runs_the_readme_commands_verbatim():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in quickstart_commands():
        assert command in ci


def test_the_readme_tour_checks_clean():
    import rnnspec

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = text.split("## A tour of the language", 1)[1]
    spec = re.search(r"```\n(.*?)```", tour, re.S).group(1)
    result = rnnspec.check_source(spec, "tour.rnn")
    assert result.ok and not result.diagnostics, result.diagnostics
    assert all(e.ok for e in result.expectations) and len(result.expectations) == 2
