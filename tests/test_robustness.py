"""No input crashes rnnspec: the fuzz generators of scripts/fuzz.py driven by hypothesis,
and the inputs that have broken other parsers, each with its expected outcome."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import fuzz  # noqa: E402

from rnnspec import check_source  # noqa: E402
from rnnspec.check.checker import check_path  # noqa: E402
from rnnspec.check.report import json_report, text_report  # noqa: E402
from rnnspec.language.diagnostics import Style, render  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
VALID = "stack Net {\n    input_size = 3\n    lstm(hidden_size = 4)\n}\n"


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data):
    fuzz.exercise(data)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_token_soups(rng):
    fuzz.exercise(fuzz.token_soup(rng))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_mutated_specs(rng):
    fuzz.exercise(fuzz.mutate(rng))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=200))
def test_random_text(text):
    fuzz.exercise(text.encode("utf-8", "surrogatepass"))


def _only(text, code=None):
    """Check `text`; every diagnostic is located and renders; returns the result."""
    result = check_source(text, "t.rnn")
    for d in result.diagnostics:
        assert d.span is not None and d.span.line >= 1 and d.span.column >= 1
        render(d, {"t.rnn": text.split("\n")}, Style(False))
    json.loads(json_report([result]))
    if code is not None:
        assert [d.code for d in result.diagnostics] == [code], result.diagnostics
    return result


@pytest.mark.parametrize("text", ["", "# only a comment\n# and another", "\n\n\n", "   \t  "])
def test_empty_and_comment_only_files_are_fine(text):
    result = _only(text)
    assert result.ok and result.stacks == [] and result.diagnostics == []


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_crlf_and_lone_cr_line_endings_locate_like_lf(tmp_path, newline):
    bad = "stack Net {\n    input_size = 3\n    lstm(hidden_size = 0)\n}\n"
    spec = tmp_path / "x.rnn"
    spec.write_bytes(("\ufeff" + bad.replace("\n", newline)).encode("utf-8"))
    (d,) = check_path(str(spec)).diagnostics
    assert (d.code, d.span.line, d.span.column) == ("E021", 3, 24)


def test_byte_order_mark_is_ignored(tmp_path):
    spec = tmp_path / "x.rnn"
    spec.write_bytes(b"\xef\xbb\xbf" + VALID.encode())
    assert check_path(str(spec)).ok


def test_tabs_keep_the_caret_under_the_mistake():
    text = "stack Net {\n\tinput_size = 3\n\t\tlstm(hidden_size =\t0)\n}\n"
    result = _only(text, "E021")
    (d,) = result.diagnostics
    assert (d.span.line, d.span.column) == (3, 22)
    rendered = render(d, {"t.rnn": text.split("\n")}).splitlines()
    source_line = next(x for x in rendered if x.startswith("3 |"))
    caret_line = rendered[rendered.index(source_line) + 1]
    assert source_line[caret_line.index("^")] == "0"


def test_non_utf8_bytes_exit_2_with_the_offset(tmp_path):
    spec = tmp_path / "x.rnn"
    spec.write_bytes(b"stack Net {\n  input_size = \x80\n}")
    (d,) = check_path(str(spec)).diagnostics
    assert d.code == "E005" and "offset 27" in d.message and (d.span.line, d.span.column) == (2, 16)


def test_nul_byte_is_a_located_diagnostic():
    result = _only("stack Net {\n    input_size = 3\x00\n}\n", "E002")
    assert "U+0000" in result.diagnostics[0].message
    rendered = render(result.diagnostics[0], {"t.rnn": ["", "    input_size = 3\x00"]})
    assert "\x00" not in rendered and "\u2400" in rendered


def test_ten_thousand_nested_parentheses_are_a_diagnostic():
    text = "let H = " + "(" * 10_000 + "1" + ")" * 10_000 + "\n"
    _only(text, "E003")


def test_twenty_thousand_term_sums_evaluate():
    text = ("let H = " + " + ".join(["1"] * 20_000) + "\n"
            "stack Net {\n    input_size = 3\n    lstm(hidden_size = H - 19_990)\n}\n")
    result = _only(text)
    assert result.ok and result.stacks[0].blocks[0].hidden_size == 10


def test_long_runs_of_minus_signs_and_long_constant_chains():
    chain = "\n".join(f"let C{i} = C{i + 1}" for i in range(5_000)) + "\nlet C5000 = 7\n"
    minus = "-" * 4_000  # an even number of signs: still 3
    text = chain + f"stack Net {{\n    input_size = {minus}3\n    gru(hidden_size = C0)\n}}\n"
    result = _only(text)
    assert result.ok and result.stacks[0].blocks[0].hidden_size == 7


def test_integers_with_hundreds_of_digits_give_exact_counts_and_an_error():
    """Sizes beyond int64 cannot be built by PyTorch: an error, yet counted exactly."""
    big = 10**300 + 7
    text = f"stack Huge {{\n    input_size = 5\n    lstm(hidden_size = {big})\n}}\n"
    result = _only(text, "E023")
    assert result.diagnostics[0].span.line == 3
    (stack,) = result.stacks
    gates = 4 * big
    assert stack.parameter_count == gates * 5 + gates * big + 2 * gates
    assert f"{stack.parameter_count:,}" in text_report([result], Style(False))
    assert json.loads(json_report([result]))["stacks"][0]["parameter_count"] == (
        stack.parameter_count)


@pytest.mark.parametrize(("h", "code"), [(300_000, "W002"), (3_000_000, "E024")])
def test_stacks_beyond_any_memory_get_a_warning_and_exact_counts(h, code):
    """23.6 TiB of parameters: beyond any device (W002); 2.3 PiB: beyond what a process
    can map (E024, at the stack: each tensor alone would fit). Counts stay exact."""
    text = "stack Big {\n    input_size = 10**6\n}\n".replace("10**6", "1_000_000")
    text = text.replace("}", f"    lstm(hidden_size = {h:_}, num_layers = 9)\n}}")
    result = _only(text, code)
    assert result.ok == (code == "W002")
    i = 1_000_000
    per_layer = 4 * h * h + 2 * 4 * h
    assert result.stacks[0].parameter_count == 4 * h * i + per_layer + 8 * (4 * h * h + per_layer)


@pytest.mark.parametrize("value", ["1e999", "nan", "inf", "-1e999"])
def test_non_finite_numbers_are_refused(value):
    text = ("stack Net {\n    input_size = 3\n"
            f"    lstm(hidden_size = 4, num_layers = 2, dropout = {value})\n}}\n")
    result = _only(text)
    assert [d.code for d in result.diagnostics] in (["E004"], ["E010"])
    assert result.diagnostics[0].span.line == 3


def test_integer_literals_beyond_the_limit_are_refused():
    _only(f"let H = {'9' * 5000}\n", "E004")


def test_unicode_lookalike_identifiers_are_refused_with_a_suggestion():
    result = _only("stack Nеt {\n    input_size = 3\n    lstm(hidden_size = 4)\n}\n", "E012")
    assert result.diagnostics[0].help == "did you mean `Net`?"


@pytest.mark.parametrize("spec, code, line, column", [
    ("stack Net {\n input_size = 3\n lstm(hidden_sise = 4)\n}\n", "E034", 3, 7),
    ("stack Net {\n input_size = 3\n lstn(hidden_size = 4)\n}\n", "E033", 3, 2),
    ("stack Net {\n input_sise = 3\n lstm(hidden_size = 4)\n}\n", "E030", 2, 2),
    ("let HIDDEN = 4\nstack Net {\n input_size = 3\n lstm(hidden_size = HIDEN)\n}\n",
     "E010", 4, 21),
    (VALID + "expect Nte {\n input = [1, 2, 3]\n}\n", "E040", 5, 8),
    (VALID + "expect Net {\n input = [1, 2, 3]\n hn = [1, 2, 4]\n}\n", "E041", 7, 2),
])
def test_did_you_mean(spec, code, line, column):
    (d,) = _only(spec).diagnostics
    assert (d.code, d.span.line, d.span.column) == (code, line, column)
    assert d.help and d.help.startswith("did you mean `")


def test_every_independent_error_is_reported_once():
    text = ("let A = B\nstack Net {\n    input_size = 0\n    lstm(hidden_size = A)\n"
            "    gru(hidden_size = 2.5)\n}\nstack Net2 {\n    lstm(hidden_size = 1)\n}\n")
    codes = [d.code for d in _only(text).diagnostics]
    assert codes == ["E010", "E021", "E020", "E031"]


@pytest.mark.slow
def test_large_spec_is_linear(tmp_path):
    """Parse + check time per stack stays flat from 1,000 to 4,000 stacks."""
    one = "stack S{i} {{\n    input_size = 16\n    lstm(hidden_size = 32, num_layers = 2)\n}}\n"

    def seconds(count):
        text = "".join(one.format(i=i) for i in range(count))
        started = time.perf_counter()
        assert check_source(text, "big.rnn").ok
        return (time.perf_counter() - started) / count

    seconds(200)  # warm the parser
    small, large = min(seconds(1_000) for _ in range(2)), min(seconds(4_000) for _ in range(2))
    assert large < small * 2.5, (small, large)  # generous: a shared machine is noisy


@pytest.mark.parametrize("data, status", [
    (b"", 0), (b"\xff\xfe", 2), (b"stack {", 1), (b"let x = 1 //\n0", 1),
    (("let H = " + "(" * 5000).encode(), 1),
])
def test_cli_outcomes_are_only_0_1_or_2(tmp_path, data, status):
    spec = tmp_path / "in.rnn"
    spec.write_bytes(data)
    for args in (["check"], ["check", "--json"], ["generate", "-o", str(tmp_path / "o.py")]):
        run = subprocess.run([sys.executable, "-m", "rnnspec", *args, str(spec)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == status, (args, run.stdout, run.stderr)
        assert "Traceback" not in run.stdout + run.stderr
        if "--json" in args:
            json.loads(run.stdout)


def test_the_deepest_stack_checks_and_generates():
    """10,000 bidirectional projected layers: every path stays linear (a template that
    recomputed a column width per parameter once took minutes here)."""
    from rnnspec.backends.torch.codegen import generate_source

    text = ("stack Deep {\n    input_size = 20\n"
            "    lstm(hidden_size = 50, num_layers = 10_000, bidirectional = true, "
            "proj_size = 10)\n}\n")
    result = _only(text)
    assert result.ok and len(result.stacks[0].blocks[0].parameters) == 10_000 * 2 * 5
    for backend in ("fused", "explicit"):
        compile(generate_source(result, backend=backend), "<deep>", "exec")


def test_long_lines_are_shown_as_a_window_around_the_span():
    text = "stack Net {\n    input_size = 3\n    lstm(hidden_size = 0)  " + "#" * 5_000 + "\n}\n"
    (d,) = _only(text, "E021").diagnostics
    rendered = render(d, {"t.rnn": text.split("\n")}).splitlines()
    shown = next(x for x in rendered if x.startswith("3 |"))
    caret = rendered[rendered.index(shown) + 1]
    assert len(shown) < 200 and shown.endswith("...")
    assert shown[caret.index("^")] == "0"


def test_saved_inputs_replay_through_the_surface_their_suffix_names(tmp_path, monkeypatch):
    def strict(data):
        assert data != b"bad", "the oracle refused it"

    monkeypatch.setitem(fuzz.SURFACES, "strict", fuzz.Surface(
        lambda rng: b"", strict, ".strict", 5))
    fuzz.save(tmp_path, b"bad", "crash", "found", ".strict")
    fuzz.save(tmp_path, b"good", "crash", "found", ".strict")
    fuzz.save(tmp_path, VALID.encode(), "crash", "found")  # .rnn: the spec surface
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".rnn", ".strict", ".strict",
                                                            ".txt", ".txt", ".txt"]
    assert fuzz.replay(tmp_path) == 1  # only b"bad" still fails
    assert fuzz.replay(tmp_path, "spec") == 0
    assert fuzz.replay(tmp_path, "strict") == 1


def test_the_lsp_surface_makes_sessions_the_server_answers():
    import random

    pytest.importorskip("pygls")
    surface = fuzz.SURFACES["lsp"]
    data = surface.make(random.Random(1))
    assert data.startswith(b"Content-Length: ") and b'"method": "exit"' in data
    assert surface.exercise(data) is None
    late = json.dumps({"jsonrpc": "2.0", "id": 77, "method": "textDocument/hover"}).encode()
    with pytest.raises(AssertionError, match="no reply"):  # after `exit`: never read
        surface.exercise(data + b"Content-Length: %d\r\n\r\n" % len(late) + late)


def test_the_checkpoint_surface_reads_valid_files_and_refuses_broken_ones():
    import random

    pytest.importorskip("safetensors")
    pytest.importorskip("torch")
    import fuzz_checkpoint

    valid = fuzz_checkpoint.valid()
    assert fuzz.SURFACES["checkpoint"].exercise(valid) == "ok"
    assert fuzz_checkpoint.exercise(valid[:20]) == "refused"  # truncated in its header
    header, body = fuzz_checkpoint._split(valid)
    header["lstm.weight_ih_l1000000"] = header.pop("lstm.weight_ih_l1")
    started = time.monotonic()
    assert fuzz_checkpoint.exercise(fuzz_checkpoint._join(header, body)) == "refused"
    assert time.monotonic() - started < 5
    outcomes = {fuzz_checkpoint.exercise(fuzz_checkpoint.make(random.Random(n)))
                for n in range(40)}
    assert outcomes <= {"ok", "refused"} and "refused" in outcomes
