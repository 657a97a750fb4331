"""The language's lexer (`language.lexer`): the parser's own tokens, comments kept, and a
token for every character the grammar has no terminal for."""

from __future__ import annotations

from conftest import OWN_EXAMPLES, ROOT, shared_examples
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnspec.language.lexer import COMMENT, UNKNOWN
from rnnspec.language.parse import _Nesting, _NestingTooDeep, parser, tokenize


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


def _conf_without_callbacks():
    """The parser's lexer configuration without its parenthesis counter."""
    conf = parser().lexer_conf
    bare = type(conf).__new__(type(conf))
    bare.__dict__.update(conf.__dict__, callbacks={})
    return bare


def _lark_basic_tokens(text: str):
    """Lark's own basic lexer over the parser's terminals: the reference `ParserLexer`
    (the lexer the parser runs) must agree with, positions and errors included."""
    from lark.exceptions import UnexpectedCharacters
    from lark.lexer import BasicLexer, LexerState, TextSlice

    try:
        return [(t.type, str(t), t.start_pos, t.line, t.column, t.end_line, t.end_column,
                 t.end_pos) for t in BasicLexer(_conf_without_callbacks()).lex(
                     LexerState(TextSlice.cast_from(text)), None)]
    except UnexpectedCharacters as exc:
        return ("error", exc.pos_in_stream, exc.line, exc.column)


def _parser_lexer_tokens(text: str):
    from lark.exceptions import UnexpectedCharacters
    from lark.lexer import LexerState, TextSlice

    from rnnspec.language.lexer import ParserLexer

    lexer = ParserLexer(_conf_without_callbacks())
    try:
        return [(t.type, str(t), t.start_pos, t.line, t.column, t.end_line, t.end_column,
                 t.end_pos) for t in lexer.lex(LexerState(TextSlice.cast_from(text)), None)]
    except UnexpectedCharacters as exc:
        return ("error", exc.pos_in_stream, exc.line, exc.column)


def test_the_parsers_lexer_equals_larks_basic_lexer_on_every_example():
    texts = _texts()
    for text in texts:
        assert _parser_lexer_tokens(text) == _lark_basic_tokens(text)
    assert len(texts) > 20


_PIECES = [*"abxlet_01.5e+-*/@<>=!(){}[],# \n\t\x0cé?$", "let", "stack", "if", "else", "and",
           "1_000", "1e-3", "//", "<=", "==", "!=", "# c\n", "lstm(", "\r"]


@given(st.lists(st.sampled_from(_PIECES), max_size=40).map("".join))
@settings(max_examples=300, deadline=None)
def test_the_parsers_lexer_equals_larks_basic_lexer_on_random_text(text):
    assert _parser_lexer_tokens(text) == _lark_basic_tokens(text)
