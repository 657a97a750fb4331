"""The language's lexer (`language.lexer`): the parser's own tokens, comments kept, and a
token for every character the grammar has no terminal for."""

from __future__ import annotations

from conftest import OWN_EXAMPLES, ROOT, shared_examples

from rnnspec.language.lexer import COMMENT, UNKNOWN, tokenize
from rnnspec.language.parse import _Nesting, _NestingTooDeep, parser


def _texts() -> list[str]:
    paths = shared_examples() + sorted(OWN_EXAMPLES.glob("*.rnn")) + sorted(
        (ROOT / "tests" / "cases").glob("*.rnn"))
    texts = []
    for path in paths:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            continue
    return texts


def test_the_same_tokens_as_the_parser():
    """Every file the parser's lexer accepts: the same terminals, texts and offsets."""
    from lark.exceptions import LexError

    compared = 0
    for text in _texts():
        _Nesting.depth = 0  # the parser's lexer counts parentheses
        try:
            expected = [(t.type, str(t), t.start_pos) for t in parser().lex(text)]
        except (LexError, _NestingTooDeep):
            continue
        found = [(t.type, t.text, t.start) for t in tokenize(text) if t.type != COMMENT]
        assert found == expected
        compared += 1
    assert compared > 20


def test_comments_newlines_and_unknown_characters():
    text = "let A = 1.5  # é 𝔥 \n\n  stack S {x ** y . }"
    tokens = tokenize(text)
    assert [(t.type, t.kind, t.text) for t in tokens] == [
        ("LET", "name", "let"), ("NAME", "name", "A"), ("EQUAL", "op", "="),
        ("FLOAT", "float", "1.5"), (COMMENT, "comment", "# é 𝔥 "), ("STACK", "name", "stack"),
        ("NAME", "name", "S"), ("LBRACE", "op", "{"), ("NAME", "name", "x"),
        ("STAR", "op", "*"), ("STAR", "op", "*"), ("NAME", "name", "y"),
        (UNKNOWN, "other", "."), ("RBRACE", "op", "}")]
    assert [t.newlines for t in tokens][4:6] == [0, 2]
    assert all(text[t.start:t.start + len(t.text)] == t.text for t in tokens)
    assert tokenize("") == [] and tokenize("  \n# only")[0].newlines == 1
