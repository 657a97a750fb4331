"""`rnnspec fmt`: golden layouts, idempotence, meaning preservation, comments, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cell_strategies import cells, render_cell
from conftest import OWN_EXAMPLES, ROOT, SHARED_EXAMPLES, assert_golden, shared_examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import render, stack_specs

from rnnspec.check.checker import check_text
from rnnspec.check.report import json_document
from rnnspec.language.parse import parse
from rnnspec.tools.fmt import format_source, format_text, tokenize

CASES = sorted((ROOT / "tests" / "cases").glob("*.rnn"))


def _parses(path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return False
    return parse(text, path.name)[0] is not None


ALL_SPECS = [p for p in shared_examples() + sorted(OWN_EXAMPLES.glob("*.rnn")) + CASES
             if _parses(p)]


def _meaning(text: str) -> dict:
    """What a spec means: the checked model (the JSON document's stacks and cells, and each
    cell's checked step), the diagnostics and expectation outcomes, without positions
    (formatting moves lines)."""
    result = check_text(text, "spec.rnn")
    document = json_document([result])
    for item in document["stacks"] + document.get("cells", []):
        del item["line"]
    return {
        "ok": document["ok"],
        "stacks": document["stacks"],
        "cells": document.get("cells", []),
        "steps": [_step(cell) for cell in result.cells],
        "diagnostics": [(d["severity"], d["code"], d["message"])
                        for d in document["diagnostics"]],
        "expectations": [(e["stack"], e["ok"]) for e in document["expectations"]],
    }


def _step(cell) -> dict:
    """A user cell's checked step without spans: its statements as the checker wrote them
    back, each target's symbolic size, the parameters' initialisers and the conditions."""
    step = cell.step
    return {
        "equations": cell.equations,
        "statements": [(a.targets, a.states, a.text, [str(s) for s in a.sizes])
                       for a in step.statements],
        "parameters": [(p.role, [str(d) for d in p.dims], p.init) for p in cell.parameters],
        "recurrent_weights": step.recurrent_weights,
        "conditions": [(str(size), divisor, text) for size, divisor, _, text
                       in step.conditions],
        "arguments": [(r.name, r.default) for r in cell.arguments],
    }


def significant(text: str) -> list[str]:
    """The tokens that carry meaning: no comments, and no trailing comma before a closer.

    Formatting never changes this sequence (the tests below hold it to that).
    """
    tokens = [t.text for t in tokenize(text) if t.kind != "comment"]
    return [t for i, t in enumerate(tokens)
            if not (t == "," and i + 1 < len(tokens) and tokens[i + 1] in (")", "]"))]


def _comments(text: str) -> list[str]:
    return [t.text for t in tokenize(text) if t.kind == "comment"]


def _assert_formats_well(text: str) -> str:
    formatted = format_source(text)
    assert format_text(formatted) == formatted, "not idempotent"
    assert significant(formatted) == significant(text)
    assert _comments(formatted) == _comments(text)
    assert _meaning(formatted) == _meaning(text)
    return formatted


# ----------------------------------------------------------------------------- goldens


@pytest.mark.skipif(not shared_examples(), reason="../shared/examples missing")
@pytest.mark.parametrize("path", shared_examples(), ids=lambda p: p.stem)
def test_shared_example_golden(path):
    """Every shared example, the v2 ones (cells, merge, residual) included, through the
    same path as `rnnspec fmt`: parsed first, then laid out."""
    formatted = _assert_formats_well(path.read_text(encoding="utf-8"))
    assert_golden(f"fmt/{path.name}", formatted)


def test_v2_examples_are_in_the_property_tests():
    """The examples with cells, conditionals and section 9's arguments parse, so the
    idempotence and meaning tests below run on them (not only the token layout)."""
    names = {(p.parent.name, p.name) for p in ALL_SPECS}
    for name in ("cells.rnn", "padded.rnn"):
        assert ("examples", name) in names
        if shared_examples():
            assert (SHARED_EXAMPLES.name, name) in names
    # every golden case parses but the syntax errors and `nn.LSTM(...)` pasted from code
    refused = {p.name for p in CASES} - {p.name for p in ALL_SPECS}
    assert refused == {"E001_syntax.rnn", "E002_character.rnn", "E003_nesting.rnn",
                       "E005_not_utf8.rnn", "E033_torch_call.rnn"}
    meaning = _meaning((OWN_EXAMPLES / "cells.rnn").read_text(encoding="utf-8"))
    assert meaning["cells"] and all(step["statements"] for step in meaning["steps"])


def test_canonical_examples_are_left_alone():
    """The layout is the one the examples are written in: seed_mistake, projection and
    cells_mistake are already canonical; seed differs only in one expect block's padding."""
    for name in ("seed_mistake", "cells_mistake"):
        text = (SHARED_EXAMPLES / f"{name}.rnn").read_text(encoding="utf-8")
        assert format_text(text) == text
    seed = (SHARED_EXAMPLES / "seed.rnn").read_text(encoding="utf-8")
    assert format_text(seed) == seed.replace("input  = [100, 32, 20]\n    h_n    =",
                                             "input = [100, 32, 20]\n    h_n   =")


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_every_spec_that_parses_formats_without_changing_meaning(path):
    _assert_formats_well(path.read_text(encoding="utf-8"))


_SEPARATORS = [" ", "  ", "\n", "\n\n", "\n\n\n", "\t", " # note\n", "\n  # own line\n\n"]


def _scramble(text: str, draw) -> str:
    """The same tokens with other whitespace and extra comments between them."""
    out = []
    tokens = tokenize(text)
    for index, token in enumerate(tokens):
        out.append(token.text)
        if token.kind == "comment":
            out.append("\n")
            continue
        nxt = tokens[index + 1] if index + 1 < len(tokens) else None
        tight_ok = nxt is not None and (token.kind == "op" or nxt.kind == "op") and not (
            token.kind == "op" and nxt.kind == "op" and token.text not in "()[]{},"
            and nxt.text not in "()[]{},")
        choices = _SEPARATORS + ([""] if tight_ok else [])
        out.append(draw(st.sampled_from(choices)))
    return "".join(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack=stack_specs(), data=st.data())
def test_generated_specs(stack, data):
    text = render(stack)
    scrambled = _scramble(text, data.draw)
    formatted = _assert_formats_well(scrambled)
    # the scrambled and the clean text agree once formatted, apart from the comments
    assert significant(formatted) == significant(format_source(text))
    for line in formatted.splitlines():
        assert line == line.rstrip()
        assert (len(line) - len(line.lstrip(" "))) % 4 == 0


def _cell_spec(cell, draw) -> str:
    """A random cell, a stack that uses it with section 9's arguments, and a conditional."""
    body = render_cell(cell).text
    bidirectional = draw(st.booleans())
    merge = draw(st.sampled_from(["concat", "sum", "mean", "mul"])) if bidirectional \
        else "concat"
    residual = draw(st.booleans()) and (merge != "concat" or not bidirectional)
    regulariser = draw(st.sampled_from(["", ", recurrent_dropout = 0.25",
                                        ", zoneout = 0.1", ", weight_dropout = 0.5"]))
    return (
        f"let DEEP = {draw(st.integers(1, 3))}\n"
        "let DROP = 0.2 if DEEP > 1 and not false else 0\n\n"
        + body + "\n"
        "stack S {\n    input_size = 6\n"
        f"    rec = {cell.name}(hidden_size = 6, num_layers = DEEP, dropout = DROP, "
        f"bidirectional = {'true' if bidirectional else 'false'}"
        f"{f', merge = {merge}' if bidirectional else ''}, "  # merge needs two directions
        f"residual = {'true' if residual else 'false'}{regulariser})\n"
        "    lstm(hidden_size = 4)\n}\n"
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=cells(), data=st.data())
def test_generated_cells(cell, data):
    """Random user cells in a stack with merge, residual and a regulariser: scrambled
    whitespace and comments, then formatted: the same cells, steps and stacks."""
    text = _cell_spec(cell, data.draw)
    assert check_text(text, "spec.rnn").ok, text
    scrambled = _scramble(text, data.draw)
    formatted = _assert_formats_well(scrambled)
    assert check_text(formatted, "spec.rnn").ok
    assert significant(formatted) == significant(format_source(text))
    for line in formatted.splitlines():
        assert line == line.rstrip()
        assert (len(line) - len(line.lstrip(" "))) % 4 == 0


def test_comments_survive_where_they_were():
    text = (
        "# head\n\nlet A=5 # five\n\n\n# about S\nstack S{input_size=A # in\n"
        "  # before the block\n  lstm(hidden_size=A, # h\n num_layers = 2)\n  # last\n}\n"
        "# tail\n"
    )
    formatted = _assert_formats_well(text)
    assert formatted == (
        "# head\n"
        "\n"
        "let A = 5  # five\n"
        "\n"
        "# about S\n"
        "stack S {\n"
        "    input_size = A  # in\n"
        "    # before the block\n"
        "    lstm(hidden_size = A,  # h\n"
        "        num_layers = 2)\n"
        "    # last\n"
        "}\n"
        "\n"
        "# tail\n"
    )


def test_layout_rules():
    text = ("let A=5 let B =A*2+-3\nlet C = ( A+B )//2 stack S{input_size=A batch_first=true "
            "lstm(hidden_size=B,num_layers=2,) enc=gru(hidden_size = 4)}"
            "expect S{input=[1,2,A]\n\n\nh0[ enc ]=[1,2,4] output = [ 1 , 2 , 4 , ]}")
    assert _assert_formats_well(text) == (
        "let A = 5\n"
        "let B = A * 2 + -3\n"
        "let C = (A + B) // 2\n"
        "\n"
        "stack S {\n"
        "    input_size  = A\n"
        "    batch_first = true\n"
        "    lstm(hidden_size = B, num_layers = 2)\n"
        "    enc = gru(hidden_size = 4)\n"
        "}\n"
        "\n"
        "expect S {\n"
        "    input = [1, 2, A]\n"
        "\n"
        "    h0[enc] = [1, 2, 4]\n"
        "    output  = [1, 2, 4]\n"
        "}\n"
    )


def test_v2_tokens_lay_out_well():
    """Cells, conditional expressions and comparison operators: the token rules are ready
    for the grammar that will accept them."""
    text = ("cell Gated(k=2){state h[hidden_size],c[hidden_size] param w[4*hidden_size,"
            "input_size]=zeros i,f,g,o=chunk(w@x+b,4) h=sigmoid(o)*tanh(c)}\n"
            "let P = 0.4 if num_layers>1 and not deep else-1\n"
            "stack S{input_size=8 bi=gru(hidden_size=4,bidirectional=true,merge=sum)"
            " res=lstm(hidden_size=8,residual=true)}")
    formatted = format_text(text)
    assert formatted == (
        "cell Gated(k = 2) {\n"
        "    state h[hidden_size], c[hidden_size]\n"
        "    param w[4 * hidden_size, input_size] = zeros\n"
        "    i, f, g, o = chunk(w @ x + b, 4)\n"
        "    h = sigmoid(o) * tanh(c)\n"
        "}\n"
        "\n"
        "let P = 0.4 if num_layers > 1 and not deep else -1\n"
        "\n"
        "stack S {\n"
        "    input_size = 8\n"
        "    bi  = gru(hidden_size = 4, bidirectional = true, merge = sum)\n"
        "    res = lstm(hidden_size = 8, residual = true)\n"
        "}\n"
    )
    assert format_text(formatted) == formatted
    assert significant(formatted) == significant(text)


def test_a_long_call_keeps_the_breaks_after_its_commas():
    text = ("stack S {\n    input_size = 8\n    context = lstm(hidden_size = 8, num_layers = 2,"
            "\n                   residual = true ,\n\n recurrent_dropout=0.25)\n"
            "    gru(hidden_size = 4,\n        dropout = 0)\n}\n")
    assert _assert_formats_well(text) == (
        "stack S {\n"
        "    input_size = 8\n"
        "    context = lstm(hidden_size = 8, num_layers = 2,\n"
        "        residual = true,\n"
        "        recurrent_dropout = 0.25)\n"
        "    gru(hidden_size = 4,\n"
        "        dropout = 0)\n"
        "}\n"
    )
    # a break elsewhere in a call (before a comma, after `(`) is not kept
    assert format_text("let A = max(1\n, 2)\nlet B = f(\n3)\n") == (
        "let A = max(1, 2)\nlet B = f(3)\n")


def test_empty_and_comment_only():
    assert format_text("") == ""
    assert format_text("\n\n  \n") == ""
    assert format_text("\n# only\n\n\n# comments   \n") == "# only\n\n# comments\n"


# ----------------------------------------------------------------------------- the command


def _fmt(*args, cwd=None, stdin=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "rnnspec", "fmt", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, input=stdin)


MESSY = "stack S{input_size=20\nlstm(hidden_size=50)}\n"
CLEAN = "stack S {\n    input_size = 20\n    lstm(hidden_size = 50)\n}\n"


def test_cli_check_diff_and_write(tmp_path):
    messy, clean = tmp_path / "messy.rnn", tmp_path / "clean.rnn"
    messy.write_text(MESSY)
    clean.write_text(CLEAN)
    os.chmod(messy, 0o640)

    checked = _fmt("--check", "messy.rnn", "clean.rnn", cwd=tmp_path)
    assert checked.returncode == 1
    assert checked.stderr == "would reformat messy.rnn\n"
    assert messy.read_text() == MESSY

    assert _fmt("--check", "clean.rnn", cwd=tmp_path).returncode == 0

    diff = _fmt("--diff", "messy.rnn", cwd=tmp_path)
    assert diff.returncode == 0
    assert diff.stdout.startswith("--- messy.rnn\n+++ messy.rnn (formatted)\n")
    assert "+    lstm(hidden_size = 50)\n" in diff.stdout
    assert "-stack S{input_size=20\n" in diff.stdout
    assert messy.read_text() == MESSY

    written = _fmt("messy.rnn", "clean.rnn", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert written.stderr == "reformatted messy.rnn\n"
    assert messy.read_text() == CLEAN
    assert (messy.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.rnn", "messy.rnn"]


def test_cli_refuses_a_file_that_does_not_parse(tmp_path):
    broken = tmp_path / "broken.rnn"
    broken.write_text("stack S {\n    input_size = = 20\n}\n")
    result = _fmt("broken.rnn", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("broken.rnn:2:18: error[E001]: expected a value, found `=`")
    assert "^" in result.stderr
    assert broken.read_text() == "stack S {\n    input_size = = 20\n}\n"


def test_cli_io_errors_and_stdin(tmp_path):
    missing = _fmt("nope.rnn", cwd=tmp_path)
    assert missing.returncode == 2 and "error[E006]" in missing.stderr
    piped = _fmt("-", stdin=MESSY)
    assert piped.returncode == 0 and piped.stdout == CLEAN


def test_layer_syntax_formats_stably():
    """Section 10's forms: pairs `[a, b]`, `from = concat(a, b)` and `sum`, side inputs
    `NAME = input(64, over = sequence)`, heads; formatting twice is formatting once."""
    text = ("stack S{input_size=40 speaker=input( 64 ,over=sequence ) noise=input(8)"
            " conv=conv2d(32,[ 41 , 11 , ],stride=[2,2],padding=[20,5]) fc=linear(16,"
            "from=concat( conv,speaker,noise )) s=linear(16, from = sum(fc,fc))"
            " lstm(hidden_size=8) pool( last )}")
    assert _assert_formats_well(text) == (
        "stack S {\n"
        "    input_size = 40\n"
        "    speaker = input(64, over = sequence)\n"
        "    noise   = input(8)\n"
        "    conv    = conv2d(32, [41, 11], stride = [2, 2], padding = [20, 5])\n"
        "    fc      = linear(16, from = concat(conv, speaker, noise))\n"
        "    s       = linear(16, from = sum(fc, fc))\n"
        "    lstm(hidden_size = 8)\n"
        "    pool(last)\n"
        "}\n"
    )
    # a break after a comma inside a pair or a `concat` is kept, and stays where it is
    broken = ("stack S {\n    input_size = 4\n    c = conv1d(8, 3,\n"
              "  from = concat(input,\n input))\n}\n")
    once = _assert_formats_well(broken)
    assert format_text(once) == once
    assert once.count("\n") == broken.count("\n")


@pytest.mark.parametrize("name", ["deepspeech2", "unmix", "sentiment"])
def test_layer_examples_are_formatted_and_stable(name):
    text = (OWN_EXAMPLES / f"{name}.rnn").read_text(encoding="utf-8")
    assert format_text(text) == text
    assert format_text(format_text(text)) == text


def test_section_11_forms_format_canonically():
    """`require`, comparisons and logic, `where`, `dropout(..., per = step)`, heads and rows
    of a matrix are laid out as the rest of the language."""
    messy = ("cell   Mix(clip=3.0,theta = 0.5, heads=2) {\n"
             "  require   input_size==hidden_size\n"
             "  state h[hidden_size]\n"
             "  param W[2*hidden_size, hidden_size]\n"
             "  param R[heads, hidden_size//heads, hidden_size // heads]\n"
             "  A,B = chunk(W,2)\n"
             "  a = clamp(A@h + R @ h, -clip, clip)\n"
             "  h = where(x>theta and not(a<0.0), x*h, dropout(a,0.25,per=step))\n"
             "}\n")
    tidy = ("cell Mix(clip = 3.0, theta = 0.5, heads = 2) {\n"
            "    require input_size == hidden_size\n"
            "    state h[hidden_size]\n"
            "    param W[2 * hidden_size, hidden_size]\n"
            "    param R[heads, hidden_size // heads, hidden_size // heads]\n"
            "    A, B = chunk(W, 2)\n"
            "    a = clamp(A @ h + R @ h, -clip, clip)\n"
            "    h = where(x > theta and not (a < 0.0), x * h, dropout(a, 0.25, per = step))\n"
            "}\n")
    assert format_text(messy) == tidy
    assert format_text(tidy) == tidy
