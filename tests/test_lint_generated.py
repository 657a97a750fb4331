"""Generated code is lint-clean and formatter-stable: the golden generated sources pass
`ruff check --isolated` (ruff's own defaults), the project's ruff
configuration (line length 100 included) and `ruff format --check` under that
configuration; the modules generated with both backends from a fixed-seed corpus of random
stacks (tests/strategies.py) and random cells (tests/cell_strategies.py) pass the format
check."""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GOLDEN, ROOT

SOURCES = sorted(GOLDEN.glob("**/*.py.txt"))
CONFIG = str(ROOT / "pyproject.toml")
needs_ruff = pytest.mark.skipif(importlib.util.find_spec("ruff") is None,
                                reason="ruff is not installed")


def _ruff(*options: str, source: str, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", *options, "--stdin-filename", name, "-"],
        input=source, capture_output=True, text=True, cwd=ROOT)


def _ruff_files(*arguments: str, folder: Path) -> subprocess.CompletedProcess:
    """One ruff run over every module in `folder` (outside the project: its own paths)."""
    return subprocess.run([sys.executable, "-m", "ruff", *arguments, "--no-cache", "."],
                          capture_output=True, text=True, cwd=folder)


def _golden_name(path: Path) -> str:
    return (f"{path.parent.name}_generated_"
            + path.name.replace(".py.txt", "").replace(".", "_") + ".py")


def _write(folder: Path, sources: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        (folder / name).write_text(source, encoding="utf-8", newline="\n")
    return folder


@functools.cache
def _random_corpus() -> dict[str, str]:
    """Modules generated with both backends from a few dozen random specs, a fixed seed."""
    from cell_strategies import cells, render_cell
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from strategies import render, stack_specs

    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import BACKENDS, generate_source

    specs: list[str] = []
    quiet = settings(max_examples=20, derandomize=True, database=None, deadline=None,
                     suppress_health_check=list(HealthCheck))

    @quiet
    @given(stack=stack_specs(max_blocks=4))
    def stacks(stack):
        specs.append(render(stack))

    @quiet
    @given(cell=cells(), layers=st.integers(1, 2), bidirectional=st.booleans(),
           batch_first=st.booleans())
    def user_cells(cell, layers, bidirectional, batch_first):
        specs.append(render_cell(cell).text + "\nstack S {\n    input_size = 3\n"
                     f"    batch_first = {'true' if batch_first else 'false'}\n"
                     f"    rec = {cell.name}(hidden_size = 4, num_layers = {layers}, "
                     f"bidirectional = {'true' if bidirectional else 'false'})\n}}\n")

    pieces = st.sampled_from([
        "linear(7)", "layer_norm()", "batch_norm()", "relu()", "gelu()", "dropout(0.2)",
        "locked_dropout(0.3)", "hardtanh(0.0, 20.0)", "leaky_relu(0.1)", "conv1d(6, 3)",
        "max_pool1d(2)", "avg_pool1d(3, stride = 2, padding = 1, ceil_mode = true)",
        "subsample(2)", "stack_frames(2)", "gru(hidden_size = 5)",
        "lstm(hidden_size = 4, bidirectional = true)", "conv2d(3, [3, 3], padding = [1, 1])",
        "max_pool2d([2, 1])", "conv2d(2, [3, 2], stride = [1, 2], layout = time_first)"])

    @quiet
    @given(entries=st.lists(st.tuples(pieces, st.booleans()), min_size=1, max_size=7),
           head=st.sampled_from(["", "pool(mean)", "pool(last)", "pool(max)"]),
           side=st.booleans(), batch_first=st.booleans())
    def networks(entries, head, side, batch_first):
        lines = [f"    batch_first = {'true' if batch_first else 'false'}",
                 "    input_size = 9"]
        if side:
            lines.append("    a_speaker_embedding_with_a_long_name = input(4, over = sequence)")
        names = []
        for index, (piece, named) in enumerate(entries):
            name = f"entry_with_a_rather_long_name_{index}" if named else None
            lines.append(f"    {name} = {piece}" if name else f"    {piece}")
            names.append(name)
        if side:
            last = names[-1] or "input"
            lines.append(f"    joined = linear(3, from = concat({last}, "
                         "a_speaker_embedding_with_a_long_name))")
        if head:
            lines.append(f"    {head}")
        specs.append("stack Net {\n" + "\n".join(lines) + "\n}\n")

    stacks()
    user_cells()
    networks()
    corpus = {}
    for index, text in enumerate(dict.fromkeys(specs)):  # each distinct spec once
        result = check_source(text, f"random_{index}.rnn")
        if not result.ok:
            continue
        for backend in BACKENDS:
            corpus[f"random_{index}_{backend}.py"] = generate_source(result, backend=backend)
    return corpus


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
    own = _ruff("--config", CONFIG, source=source, name=f"rnnspec/{name}")
    assert own.returncode == 0, own.stdout + own.stderr


FORMAT = ("format", "--check", "--diff", "--config", CONFIG)
LINT = (("check", "--isolated"), ("check", "--config", CONFIG))


def _assert_clean(folder: Path, checks=(FORMAT, *LINT)) -> None:
    """`ruff format --check` (the project's configuration), `ruff check --isolated` and
    `ruff check` with the project's configuration, each one run over the whole folder."""
    for arguments in checks:
        run = _ruff_files(*arguments, folder=folder)
        assert run.returncode == 0, f"ruff {' '.join(arguments[:2])}:\n{run.stdout}{run.stderr}"


@needs_ruff
def test_every_golden_generated_source_is_formatter_stable(tmp_path):
    _assert_clean(_write(tmp_path / "golden", {_golden_name(p): p.read_text(encoding="utf-8")
                                              for p in SOURCES}))


@needs_ruff
def test_random_generated_sources_are_formatter_stable_and_lint_clean(tmp_path):
    # random cells compute values nothing reads, chunk pieces nobody uses and double
    # negations: the lowering drops dead values and the emitter writes `-(-a)`
    corpus = _random_corpus()
    assert len(corpus) >= 40, sorted(corpus)
    _assert_clean(_write(tmp_path / "random", corpus))


@needs_ruff
def test_the_lint_check_can_fail():
    """The same check on a line over the project's limit and an unused import fails."""
    source = "import torch\n\nx = '" + "a" * 120 + "'\n"
    assert _ruff("--isolated", source=source, name="bad.py").returncode != 0
    own = _ruff("--config", CONFIG, source="x = '" + "a" * 120 + "'\n",
                name="rnnspec/bad.py")
    assert own.returncode != 0


@needs_ruff
def test_the_format_check_can_fail(tmp_path):
    """`ruff format --check` fails on a call split where it fits on one line."""
    folder = _write(tmp_path / "split", {"split.py": "x = max(\n    1, 2\n)\n"})
    assert _ruff_files("format", "--check", "--config", CONFIG, folder=folder).returncode != 0


@needs_ruff
def test_the_projects_own_code_passes_ruff():
    """The project's rule for its own code (rnnspec/, tests/, benchmarks/, scripts/): `ruff
    check` under its configuration is clean; `test_the_lint_check_can_fail` shows the same
    configuration refuses an over-long line."""
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                           CONFIG, "rnnspec", "tests", "benchmarks", "scripts"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
