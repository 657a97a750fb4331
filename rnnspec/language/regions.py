"""The top-level regions of a file's text, for the parse that goes on after a syntax error
(`parse.parse_recovering`): where a definition may start, and what a dropped part was."""

from __future__ import annotations

import re

from rnnspec.language import ast
from rnnspec.language.diagnostics import Span

_HEADER = re.compile(r"([A-Za-z_]+)[ \t\f\n]+((?![0-9])\w+)")


def item_starts(text: str, keywords) -> list[int]:
    """Offsets where a top-level definition may start: 0, and each of `keywords` (`let`,
    `stack`, ...) that is the first word of its line or follows a `}`, outside comments."""
    words = "|".join(re.escape(w) for w in keywords)
    starts = [0]
    for match in re.finditer(rf"#[^\n]*|(?<!\w)(?:{words})(?!\w)", text):
        if match.group().startswith("#"):
            continue
        before = text[text.rfind("\n", 0, match.start()) + 1:match.start()].rstrip(" \t\f")
        if match.start() > 0 and (not before or before.endswith("}")):
            starts.append(match.start())
    return starts


def unparsed_part(text: str, path: str, begin: int, keywords) -> ast.Unparsed:
    """The part from `begin` that did not parse: the definition its header names, if any."""
    match = _HEADER.match(text, begin)
    if match is None or match.group(1) not in keywords:
        return ast.Unparsed("", "", None)
    line = text.count("\n", 0, match.start(2)) + 1
    column = match.start(2) - (text.rfind("\n", 0, match.start(2)) + 1) + 1
    span = Span(path, line, column, line, column + len(match.group(2)))
    return ast.Unparsed(match.group(1), match.group(2), span)
