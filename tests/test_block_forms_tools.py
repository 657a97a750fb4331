"""Section 11's block forms in the tools: `fmt` keeps them (idempotent, same meaning), the
language server hovers and completes them, `draw` shows a reverse-only block's direction."""

from __future__ import annotations

from rnnspec.check.checker import check_text
from rnnspec.check.report import json_document
from rnnspec.tools.draw import draw_svg
from rnnspec.tools.fmt import format_text
from rnnspec.tools.lsp.analysis import Analysis, hover_text
from rnnspec.tools.lsp.completion import completions

MESSY = """\
stack   Enc{
  input_size=4
  back=lstm(hidden_size=8,reverse=true,initial_state=learned)
  gru( hidden_size = 3 , initial_state = zeros )
}
"""


def test_fmt_keeps_the_block_forms():
    formatted = format_text(MESSY)
    assert "back = lstm(hidden_size = 8, reverse = true, initial_state = learned)" in formatted
    assert format_text(formatted) == formatted
    before, after = check_text(MESSY, "a.rnn"), check_text(formatted, "a.rnn")
    assert before.ok and after.ok
    assert json_document([before])["stacks"] == json_document([after])["stacks"]


def _position(text: str, needle: str) -> tuple[int, int]:
    offset = text.index(needle)
    line = text.count("\n", 0, offset)
    return line + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def test_hover_shows_the_direction_and_the_learned_vectors():
    text = format_text(MESSY)
    found = hover_text(Analysis(text, "spec.rnn"), *_position(text, "back ="))
    assert found is not None
    assert "reverse, learned initial states" in found[0]
    assert "| `h0_l0` | `[8]` |" in found[0] and "| `c0_l0` | `[8]` |" in found[0]
    assert "| `weight_ih_l0_reverse`" not in found[0]


def test_completion_offers_the_arguments_and_their_words():
    text = "stack S {\n    input_size = 4\n    gru(hidden_size = 3, initial_state = )\n}\n"
    offset = text.index("= )") + 2
    labels = [c.label for c in completions(Analysis(text, "spec.rnn"), text, offset)]
    assert labels[:2] == ["zeros", "learned"]
    offset = text.index("initial_state")
    names = [c.label for c in completions(Analysis(text, "spec.rnn"), text, offset)]
    assert {"reverse", "initial_state"} <= set(names)


def test_draw_shows_a_reverse_block():
    result = check_text(MESSY, "a.rnn")
    svg = draw_svg(result.stacks)
    assert "1 layer, reverse direction, 4 → 8" in svg
    assert "1 layer, one direction, 8 → 3" in svg
    assert "learned initial states" in svg
