"""The TextMate grammar (editors/vscode/syntaxes/rnnspec.tmLanguage.json), tokenized by the
real engine, vscode-textmate with vscode-oniguruma, installed with npm into the user's cache
on first use. Every keyword, number, comment, operator and name of the examples gets the
scope that an independent classification of the same token expects."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import OWN_EXAMPLES, ROOT, shared_examples

from rnnspec.cells.equations import FUNCTIONS as CELL_FUNCTIONS
from rnnspec.cells.equations import INITIALISERS
from rnnspec.cells.registry import BUILTIN_CELLS, COMMON_ARGUMENTS
from rnnspec.language.parse import tokenize
from rnnspec.layers.kinds import COMBINE, LAYER_KINDS

GRAMMAR = ROOT / "editors" / "vscode" / "syntaxes" / "rnnspec.tmLanguage.json"
SCRIPT = ROOT / "tests" / "textmate" / "tokenize.js"
PACKAGES = ["vscode-textmate@9.3.2", "vscode-oniguruma@2.0.1"]

DECLARATIONS = {"let", "stack", "expect", "cell", "state", "param", "require"}
# The grammar's lists, from the registry and the equation checker: the test fails when
# the language grows a cell, a function or a word and the TextMate grammar does not.
CELLS = set(BUILTIN_CELLS)
FUNCTIONS = set(CELL_FUNCTIONS) | set(INITIALISERS) | set(COMBINE)
# Layer kinds are scoped as cells are where an entry stands (in a stack, outside parentheses);
# in a cell's equations `tanh(...)` stays a function.
LAYERS = set(LAYER_KINDS)
_RULES = [rule for cell in BUILTIN_CELLS.values() for rule in cell.arguments] + list(
    COMMON_ARGUMENTS) + [rule for kind in LAYER_KINDS.values() for rule in kind.arguments]
# A side input's `over = time | sequence` (rnnspec/check/entries.py).
WORD_ARGUMENTS = {rule.name for rule in _RULES if rule.kind == "word"} | {"over", "per"}
WORDS = {choice for rule in _RULES for choice in rule.choices} | {"time", "sequence", "step"}
POOL_MODES = set(LAYER_KINDS["pool"].arguments[0].choices)

V2_TEXT = """\
# v2 syntax: cells, conditionals, comparisons, numbers of every form
let DROP = 0.4 if LAYERS > 1 and not SHALLOW else 0
let LAYERS = 1_024 // 512
let SMALL = 1e-3 + 2.5E+2 + 1_000.000_1
let SHALLOW = false

cell Gated(k = 2) {
    state h[hidden_size], c[hidden_size]
    param w[4 * hidden_size, input_size] = zeros  # gates
    param b[4 * hidden_size] = uniform(-0.1, 0.1)
    i, f, g, o = chunk(w @ x + b, 4)
    c = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h = sigmoid(o) * tanh(c) / 2 - c
}

stack S {
    input_size  = 8
    batch_first = true
    bi  = gru(hidden_size = 4, bidirectional = true, merge = sum)
    res = Gated(hidden_size = 8, residual = true, dropout = DROP, zoneout = 0.1)
    rnn(hidden_size = 8, nonlinearity = relu, bias = LAYERS == 2 or LAYERS != 3)
    avg = Gated(hidden_size = 8, bidirectional = not false, merge=mean, k = 2 if 3 >= 2 else 1)
    Gated(hidden_size = 4 // 2, merge = concat, recurrent_dropout = 0.5 if k <= 2 else 0.0)
}

cell Scaled(n = 2) {
    state h[hidden_size]
    param w[hidden_size, input_size + hidden_size] = normal(0, 0.02)
    a = concat(x, h)
    h = relu(w @ a) / 2 + clamp(h, -1, 1) * layer_norm(h)
}

expect S {
    input   = [_, 3, 8]
    h0[res] = [1, _, 8]
}
"""


def _node_modules() -> Path:
    """vscode-textmate and vscode-oniguruma, installed once into rnnspec's cache folder."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run the TextMate engine (not on PATH)")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "rnnspec" / "textmate"
    modules = folder / "node_modules"
    if not all((modules / p.split("@")[0] / "package.json").exists() for p in PACKAGES):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(
                ["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund",
                 "--no-save", *PACKAGES], capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"npm install of {' '.join(PACKAGES)} failed: {exc}")
        if result.returncode != 0:
            pytest.skip(f"npm install of {' '.join(PACKAGES)} failed: {result.stderr[-500:]}")
    return modules


def _tokenize_with_textmate(texts: list[str]) -> list:
    modules = _node_modules()
    result = subprocess.run(["node", str(SCRIPT), str(GRAMMAR)], input=json.dumps(texts),
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, NODE_PATH=str(modules)))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _line_tokens(line: str) -> list[tuple[str, str, int, int]]:
    return [(t.kind, t.text, t.start, t.start + len(t.text)) for t in tokenize(line)]


def _followed_by_assignment(code: list, index: int) -> bool:
    """The name at `index` is followed by `=`, or by `[...]` and then `=` (an expect key)."""
    position = index + 1
    if position < len(code) and code[position][1] == "[":
        while position < len(code) and code[position][1] != "]":
            position += 1
        position += 1
    return position < len(code) and code[position][1] == "="


def _expected_scopes(text: str):
    """(line, start, end, scope): what each token of `text` must be scoped as."""
    parens = 0
    in_stack = False
    previous: list = []  # the code tokens seen so far, across lines
    for number, line in enumerate(text.split("\n")):
        tokens = _line_tokens(line)
        code = [t for t in tokens if t[0] != "comment"]
        first_word = code[0][1] if code else None
        for kind, value, start, end in tokens:
            if kind == "comment":
                yield number, start, end, "comment.line.number-sign.rnnspec"
                continue
            index = code.index((kind, value, start, end))
            if value == "{" and len(previous) > 1 and previous[-2][1] == "stack":
                in_stack = True
            elif value == "}":
                in_stack = False
            previous.append((kind, value))
            prev = code[index - 1][1] if index else None
            before_prev = code[index - 2][1] if index > 1 else None
            nxt = code[index + 1][1] if index + 1 < len(code) else None
            if kind == "int":
                scope = "constant.numeric.integer.rnnspec"
            elif kind == "float":
                scope = "constant.numeric.float.rnnspec"
            elif kind == "name":
                scope = _name_scope(value, prev, nxt, index, first_word, parens,
                                    _followed_by_assignment(code, index), before_prev,
                                    in_stack)
            else:
                scope = _operator_scope(value)
                parens += {"(": 1, ")": -1}.get(value, 0)
            yield number, start, end, scope


def _name_scope(word, prev, nxt, index, first_word, parens, assigned, before_prev,
                in_stack=False) -> str:
    if word in DECLARATIONS:
        return "keyword.other.declaration.rnnspec"
    if word in ("if", "else"):
        return "keyword.control.conditional.rnnspec"
    if word in ("and", "or", "not"):
        return "keyword.operator.logical.rnnspec"
    if word in ("true", "false"):
        return "constant.language.boolean.rnnspec"
    if prev in ("stack", "expect"):
        return "entity.name.type.stack.rnnspec"
    if prev == "cell":
        return "entity.name.type.cell.rnnspec"
    if prev == "let":
        return "variable.other.constant.rnnspec"
    if first_word in ("state", "param") and nxt == "[":
        return "entity.name.variable.rnnspec"
    if parens and word == "from" and nxt == "=":
        return "keyword.other.wiring.rnnspec"
    if parens and nxt == "=":
        return "variable.parameter.rnnspec"
    if in_stack and parens == 1 and prev == "(" and before_prev == "pool" and word in POOL_MODES:
        return "constant.language.choice.rnnspec"
    if parens and prev == "=" and before_prev in WORD_ARGUMENTS and word in WORDS:
        return "constant.language.choice.rnnspec"
    if index == 0 and assigned:
        return "variable.other.property.rnnspec"
    if word in CELLS or (in_stack and not parens and nxt == "(" and word in LAYERS):
        return "support.type.cell.rnnspec"
    if word == "input":
        return "support.function.rnnspec" if nxt == "(" else "variable.language.input.rnnspec"
    if word in FUNCTIONS:
        return "support.function.rnnspec"
    if word == "_":
        return "constant.language.wildcard.rnnspec"
    if nxt == "(":
        return "entity.name.function.call.rnnspec"
    return "variable.other.rnnspec"


def _operator_scope(op: str) -> str:
    if op in ("<", "<=", ">", ">=", "==", "!="):
        return "keyword.operator.comparison.rnnspec"
    if op in ("+", "-", "*", "/", "//", "@"):
        return "keyword.operator.arithmetic.rnnspec"
    return {
        "=": "keyword.operator.assignment.rnnspec",
        ",": "punctuation.separator.comma.rnnspec",
        "(": "punctuation.section.parens.begin.rnnspec",
        ")": "punctuation.section.parens.end.rnnspec",
        "[": "punctuation.section.brackets.begin.rnnspec",
        "]": "punctuation.section.brackets.end.rnnspec",
        "{": "punctuation.section.block.begin.rnnspec",
        "}": "punctuation.section.block.end.rnnspec",
    }[op]


def test_grammar_file_is_valid_json_with_the_expected_identity():
    grammar = json.loads(GRAMMAR.read_text(encoding="utf-8"))
    assert grammar["scopeName"] == "source.rnnspec"
    package = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text())
    assert package["contributes"]["grammars"][0]["scopeName"] == "source.rnnspec"
    assert package["contributes"]["languages"][0]["extensions"] == [".rnn"]
    configuration = json.loads(
        (ROOT / "editors" / "vscode" / "language-configuration.json").read_text())
    assert configuration["comments"]["lineComment"] == "#"


def test_the_grammar_knows_every_word_of_the_language():
    """Every keyword terminal of rnnspec/language/rnnspec.lark and every word the registry and the
    equation checker know appear in the TextMate grammar."""
    import re

    lark = (ROOT / "rnnspec" / "language" / "rnnspec.lark").read_text(encoding="utf-8")
    keywords = set(re.findall(r'^[A-Z]+: "([a-z_]+)"$', lark, re.MULTILINE))
    assert {"let", "stack", "expect", "cell", "state", "param", "if", "else", "and", "or",
            "not", "true", "false"} <= keywords
    operators = set(re.findall(r'^[A-Z]+: "([^a-z\w]+)"$', lark, re.MULTILINE))
    assert {"@", "/", "//", "<", "<=", ">", ">=", "==", "!="} <= operators
    grammar = GRAMMAR.read_text(encoding="utf-8")
    alternatives = set(re.findall(r"\w+", grammar))
    for word in keywords | CELLS | FUNCTIONS | WORDS | WORD_ARGUMENTS:
        assert word in alternatives, word
    for operator in operators - set("=,(){}[]"):
        assert operator in V2_TEXT, operator


def test_every_token_of_the_examples_gets_its_scope():
    paths = shared_examples() + sorted(OWN_EXAMPLES.glob("*.rnn"))
    texts = [p.read_text(encoding="utf-8") for p in paths] + [V2_TEXT]
    names = [p.name for p in paths] + ["<v2>"]
    tokenized = _tokenize_with_textmate(texts)
    checked, wrong = 0, []
    for name, text, lines in zip(names, texts, tokenized):
        for number, start, end, scope in _expected_scopes(text):
            covering = [t for t in lines[number] if t[0] < end and t[1] > start]
            assert covering, (name, number, start)
            for _, _, scopes in covering:
                checked += 1
                if scope not in scopes:
                    value = text.split("\n")[number][start:end]
                    wrong.append(f"{name}:{number + 1}:{start + 1} `{value}`: expected {scope}, "
                                 f"got {scopes}")
    assert not wrong, "\n".join(wrong)
    assert checked > 500  # every example's every token, not an empty loop


LAYERS_TEXT = """\
stack Layers {
    input_size = 40
    speaker = input(64, over = sequence)
    noise   = input(8, over = time)
    conv = conv2d(32, [41, 11], stride = [2, 2], layout = features_first)
    max_pool2d([2, 2])
    conv1d(16, 3, from = concat(conv, noise))
    fc = linear(16, from = sum(input, input))
    lstm = lstm(hidden_size = 8, from = input)
    pool(mode = mean)
    tanh()
    pool(final)
}

cell UsesFunctions {
    state h[hidden_size]
    param w[hidden_size, input_size] = zeros
    h = tanh(w @ x) + relu(h) + sigmoid(h) + gelu(h) + silu(h) + layer_norm(h)
}
"""


def test_every_layer_kind_is_in_the_grammar():
    """Each key of LAYER_KINDS, the wiring words and the pool modes appear in the grammar, and
    each kind written as an entry is scoped as a cell by the real engine."""
    import re

    grammar = GRAMMAR.read_text(encoding="utf-8")
    alternatives = set(re.findall(r"\w+", grammar))
    for word in LAYERS | POOL_MODES | {"from", "input", *COMBINE}:
        assert word in alternatives, word
    entries = "\n".join(f"    {kind}()" for kind in sorted(LAYER_KINDS))
    text = "stack All {\n    input_size = 4\n" + entries + "\n}\n"
    [lines] = _tokenize_with_textmate([text])
    for number, line in enumerate(text.split("\n")):
        word = line.strip().rstrip("()")
        if word in LAYER_KINDS:
            start = line.index(word)
            covering = [t for t in lines[number] if t[0] <= start < t[1]]
            assert covering and "support.type.cell.rnnspec" in covering[0][2], (word, covering)


def test_every_token_of_the_layer_syntax_gets_its_scope():
    [lines] = _tokenize_with_textmate([LAYERS_TEXT])
    wrong = []
    for number, start, end, scope in _expected_scopes(LAYERS_TEXT):
        for _, _, scopes in [t for t in lines[number] if t[0] < end and t[1] > start]:
            if scope not in scopes:
                wrong.append(f"{number + 1}:{start + 1}: expected {scope}, got {scopes}")
    assert not wrong, "\n".join(wrong)
    # the kinds that are also cell functions stay functions in a cell's equations
    cell_line = LAYERS_TEXT.split("\n").index(
        "    h = tanh(w @ x) + relu(h) + sigmoid(h) + gelu(h) + silu(h) + layer_norm(h)")
    tanh = [t for t in lines[cell_line] if t[0] == 8]
    assert "support.function.rnnspec" in tanh[0][2]
