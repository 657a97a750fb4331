"""`rnnspec draw`: valid, deterministic, golden SVG with every shape from the checked model."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from conftest import ROOT, SHARED_EXAMPLES, assert_golden

from rnnspec.check.checker import check_text
from rnnspec.tools.draw import PALETTE, cell_fill, draw_svg

SVG = "{http://www.w3.org/2000/svg}"

TEN_BLOCKS = "stack Deep {\n    input_size = 40\n" + "".join(
    f"    {name} = {cell}(hidden_size = {size}{extra})\n"
    for name, cell, size, extra in [
        ("embed", "gru", 64, ""), ("enc1", "lstm", 128, ", bidirectional = true"),
        ("enc2", "lstm", 128, ", num_layers = 2, dropout = 0.1"),
        ("proj", "lstm", 256, ", proj_size = 64"), ("mix", "rnn", 64, ", nonlinearity = relu"),
        ("wide", "gru", 512, ", bidirectional = true"), ("narrow", "gru", 32, ""),
        ("deep", "rnn", 32, ", num_layers = 4"), ("back", "lstm", 48, ", bias = false"),
        ("head", "gru", 16, ""),
    ]) + "}\n"


def _svg(text: str) -> str:
    result = check_text(text, "spec.rnn")
    assert result.ok, result.diagnostics
    return draw_svg(result.stacks)


def _texts(svg: str) -> list[str]:
    root = ET.fromstring(svg.encode("utf-8"))
    assert root.tag == f"{SVG}svg"
    return [t.text for t in root.iter(f"{SVG}text")]


@pytest.mark.parametrize("name", ["seed", "tagger", "projection", "cells", "padded"])
def test_shared_examples(name):
    text = (SHARED_EXAMPLES / f"{name}.rnn").read_text(encoding="utf-8")
    svg = _svg(text)
    assert svg == _svg(text)  # deterministic
    _texts(svg)  # valid XML
    assert_golden(f"draw/{name}.svg", svg)


# A user cell of four states, merged directions, residual blocks, regularisers.
FOUR_STATES = """\
cell Quad(k = 3) {
    state h[hidden_size], c[hidden_size], n[hidden_size], m[k]
    param w[4 * hidden_size, input_size], u[4 * hidden_size, hidden_size]
    param v[k, hidden_size]
    i, f, o, z = chunk(w @ x + u @ h, 4)
    c = sigmoid(f) * c + sigmoid(i) * tanh(z)
    n = sigmoid(f) * n + 1
    h = sigmoid(o) * tanh(c) / n
    m = tanh(v @ h)
}

stack Wide {
    input_size = 16
    quad = Quad(hidden_size = 16, bidirectional = true, merge = mean, residual = true, k = 5)
    lstm(hidden_size = 16, residual = true, zoneout = 0.1)
    last = Quad(hidden_size = 8, num_layers = 2, recurrent_dropout = 0.25)
}
"""


def test_user_cells_merge_and_residual():
    svg = _svg(FOUR_STATES)
    texts = _texts(svg)
    result = check_text(FOUR_STATES, "spec.rnn")
    (stack,) = result.stacks
    quad = stack.blocks[0]
    assert list(quad.states) == ["h0", "c0", "n0", "m0"]
    for key in ("h0 [2, B, 16]", "c0 [2, B, 16]", "n0 [2, B, 16]", "m0 [2, B, 5]"):
        assert key in texts  # every state of the cell beside its box
    assert texts.count("merge: mean") == 1
    assert texts.count("residual") == 2 and texts.count("+") == 2
    assert "k 5" in texts  # the cell's own argument
    assert "zoneout 0.1" in texts and "recurrent dropout 0.25, k 3" in texts
    root = ET.fromstring(svg.encode("utf-8"))
    boxes = [r for r in root.iter(f"{SVG}rect") if r.get("rx") == "8"]
    assert len(boxes) == 3
    assert float(boxes[0].get("height")) >= 14 + 18 * 4  # four states fit beside it
    paths = [p for p in root.iter(f"{SVG}path") if p.get("marker-end") == "url(#residual)"]
    assert len(paths) == 2
    assert_golden("draw/four_states.svg", svg)


def test_colours_come_from_data_not_from_names():
    """A box's colour is the cell's name hashed into the palette: stable, the same for
    equal names, no table of cell names in the module (issue 8: no module branches on a
    cell's name)."""
    import ast as python_ast

    import rnnspec.tools.draw as draw
    from rnnspec.cells.registry import BUILTIN_CELLS

    source = python_ast.parse((ROOT / "rnnspec" / "tools" / "draw.py").read_text(encoding="utf-8"))
    strings = {node.value for node in python_ast.walk(source)
               if isinstance(node, python_ast.Constant) and isinstance(node.value, str)}
    assert not strings & set(BUILTIN_CELLS)
    assert not hasattr(draw, "CELL_FILL")
    for name in [*BUILTIN_CELLS, "PeepholeLSTM", "Quad", "é"]:
        assert cell_fill(name) in PALETTE and cell_fill(name) == cell_fill(name)
    assert len({cell_fill(name) for name in BUILTIN_CELLS}) == len(BUILTIN_CELLS)


def test_every_shape_of_the_model_is_on_the_picture():
    for text in [(SHARED_EXAMPLES / "tagger.rnn").read_text(encoding="utf-8"), TEN_BLOCKS,
                 (SHARED_EXAMPLES / "cells.rnn").read_text(encoding="utf-8"),
                 (SHARED_EXAMPLES / "padded.rnn").read_text(encoding="utf-8"), FOUR_STATES]:
        result = check_text(text, "spec.rnn")
        texts = _texts(draw_svg(result.stacks))
        for stack in result.stacks:
            assert f"input {_shape(stack.input)}" in texts
            assert f"output {_shape(stack.output)}" in texts
            for block in stack.blocks[:-1]:
                assert _shape(block.output) in texts
            for block in stack.blocks:
                assert f"{block.name} · {block.cell}" in texts
                assert f"{block.parameter_count:,} parameters" in texts
                for key, shape in block.states.items():
                    assert f"{key} {_shape(shape)}" in texts


def _shape(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def test_ten_blocks():
    svg = _svg(TEN_BLOCKS)
    texts = _texts(svg)
    assert sum(1 for t in texts if " · " in t) == 10
    assert "embed · gru" in texts and "wide · gru" in texts
    assert "h0 [1, B, 64]" in texts and "c0 [1, B, 256]" in texts  # proj keeps c wide
    assert_golden("draw/ten_blocks.svg", svg)


def test_names_are_escaped():
    """Names reach the picture only escaped (the checker allows no markup in names, so the
    escaping is tested on the model directly)."""
    result = check_text("stack S {\n    input_size = 3\n    lstm(hidden_size = 2)\n}\n", "s")
    (stack,) = result.stacks
    hostile = '<b>&"x\''
    block = stack.blocks[0]._replace(name=hostile)
    svg = draw_svg([stack._replace(name=hostile, entries=(block,))])
    assert f"stack {hostile}" in _texts(svg) and f"{hostile} · lstm" in _texts(svg)
    assert "<b>" not in svg


def _draw(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "rnnspec", "draw", *args], cwd=cwd,
                          capture_output=True, text=True, env=env)


def test_cli(tmp_path):
    spec = tmp_path / "tagger.rnn"
    spec.write_text((SHARED_EXAMPLES / "tagger.rnn").read_text(encoding="utf-8"))
    result = _draw("tagger.rnn", "--stack", "Tagger", "-o", "out.svg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.svg").read_text() == _svg(spec.read_text())
    stdout = _draw("tagger.rnn", cwd=tmp_path)
    assert stdout.returncode == 0 and stdout.stdout == _svg(spec.read_text())

    unknown = _draw("tagger.rnn", "--stack", "Tager", "-o", "x.svg", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "has no stack `Tager`" in unknown.stderr and "did you mean `Tagger`?" in unknown.stderr
    mistake = tmp_path / "mistake.rnn"
    mistake.write_text((SHARED_EXAMPLES / "seed_mistake.rnn").read_text(encoding="utf-8"))
    failed = _draw("mistake.rnn", "-o", "y.svg", cwd=tmp_path)
    assert failed.returncode == 1 and "error[E044]" in failed.stderr
    assert not (tmp_path / "x.svg").exists() and not (tmp_path / "y.svg").exists()


# Section 10: layers, time arithmetic, `from` wiring and side inputs.
WIRED = """\
stack Wired {
    input_size = 40
    speaker = input(64, over = sequence)
    noise   = input(8)
    conv = conv1d(32, 3, stride = 2)
    fc   = linear(32, from = concat(input, noise))
    sub  = subsample(2, from = conv)
    lstm = lstm(hidden_size = 16)
    out  = linear(16, from = sum(lstm, lstm))
}
"""


def _elements(svg: str, tag: str, **attributes) -> list:
    root = ET.fromstring(svg.encode("utf-8"))
    return [e for e in root.iter(f"{SVG}{tag}")
            if all(e.get(k) == v for k, v in attributes.items())]


@pytest.mark.parametrize("name", ["deepspeech2", "unmix", "sentiment"])
def test_layer_examples(name):
    text = (ROOT / "examples" / f"{name}.rnn").read_text(encoding="utf-8")
    svg = _svg(text)
    assert svg == _svg(text)
    texts = _texts(svg)
    (stack,) = check_text(text, "spec.rnn").stacks
    layers = [e for e in stack.entries if not e.recurrent]
    # a layer is a box of its own style, a block keeps its rounded box
    assert len(_elements(svg, "rect", **{"class": "layer"})) == len(layers)
    assert len(_elements(svg, "rect", rx="8")) == len(stack.entries) - len(layers)
    for entry in stack.entries:
        kind = entry.kind if not entry.recurrent else entry.cell
        assert f"{entry.name} · {kind}" in texts
        assert f"{entry.parameter_count:,} parameters" in texts
    assert f"output {_shape(stack.output)}" in texts
    assert_golden(f"draw/{name}.svg", svg)


def test_time_formulas_label_the_edges():
    text = (ROOT / "examples" / "deepspeech2.rnn").read_text(encoding="utf-8")
    svg = _svg(text)
    texts = _texts(svg)
    assert "[(T - 1) // 2 + 1, B, 32, 41]" in texts  # conv2's output, on its arrow
    assert "time (T - 1) // 2 + 1" in texts  # in conv1's box: it changes time
    (stack,) = check_text(text, "spec.rnn").stacks
    timed = [e for e in stack.entries if e.time is not None and str(e.time) != "T"]
    assert texts.count("T' = (T - 1) // 2 + 1") == len(timed)
    # a stack whose time stays `T` has no time labels
    assert not _elements(_svg((ROOT / "examples" / "unmix.rnn").read_text()), "text",
                         **{"class": "time"})


def test_from_wiring_and_side_inputs():
    svg = _svg(WIRED)
    texts = _texts(svg)
    assert "input speaker [B, 64] (one per sequence)" in texts
    assert "input noise [T, B, 8]" in texts
    assert "32 → 32, from conv" in texts
    assert "48 → 32, from concat(input, noise)" in texts
    assert "16 → 16, from sum(lstm, lstm)" in texts
    # edges: input and noise into fc, conv into sub (lstm is the previous entry of out)
    assert len(_elements(svg, "path", **{"class": "wire"})) == 3
    # the arrows into fc and sub carry nothing into them: dashed, without an arrowhead
    dashed = [e for e in _elements(svg, "line") if e.get("stroke-dasharray") == "3 3"]
    assert len(dashed) == 2 and all(e.get("marker-end") is None for e in dashed)
    assert 'id="wire"' in svg
    assert_golden("draw/wired.svg", svg)


def test_unmix_skip_is_an_edge():
    svg = _svg((ROOT / "examples" / "unmix.rnn").read_text(encoding="utf-8"))
    assert "1024 → 512, from concat(skip, lstm)" in _texts(svg)
    (wire,) = _elements(svg, "path", **{"class": "wire"})  # skip; lstm is the one before
