"""PyTorch code pasted into a spec: the syntax error on a line holding a module's call
(`nn.LSTM(`, `torch.nn.GRU(`) becomes E033 at that call, with the call as rnnspec writes it.
No Lark here: the parser hands over the text and where its error is."""

from __future__ import annotations

import re

from rnnspec.language.diagnostics import Diagnostic, Span, error

# `nn.LSTM(` or `torch.nn.GRU(` copied from PyTorch code (group 1: the module's name)
TORCH_CALL = re.compile(r"(?:\btorch\s*\.\s*)?\bnn\s*\.\s*([A-Za-z_]\w*)\s*\(")
# what stands before the call on its line: `self.rnn = ` gives the block's name `rnn`
_TARGET = re.compile(r"^\s*(?:self\s*\.\s*)?([A-Za-z_]\w*)\s*=\s*$")
_KEYWORD = re.compile(r"\b([A-Za-z_]\w*)\s*=(?!=)\s*")
_QUOTED = re.compile(r"""(["'])([A-Za-z_]\w*)\1""")
MAX_REWRITE = 160  # a longer rewrite is not shown in a `help:`
_MAX_CALL = 2000  # characters searched for the call's closing parenthesis


# the first words of Python statements that a spec never starts a line with
_PYTHON_LINE = re.compile(r"[ \t]*(?:import|from|def|class|return|super|self|print|torch)\b")


def python_help(text: str, position: int) -> str | None:
    """A `help:` for a syntax error on a line of Python pasted into a spec."""
    start = text.rfind("\n", 0, position) + 1
    if _PYTHON_LINE.match(text, start) is None:
        return None
    return ("this line is Python: a spec holds `let`, `stack`, `expect` and `cell` "
            "definitions; write the model's recurrent layers as a `stack`")


def torch_call(text: str, position: int, path: str, inside_stack: bool) -> Diagnostic | None:
    """E033 at the PyTorch call on the line of a syntax error at `position` (an offset in
    `text`), when the error is at the call or before it on that line; None otherwise."""
    from rnnspec.cells.registry import BUILTIN_CELLS

    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    source = text[start:] if end < 0 else text[start:end]
    offset = position - start
    line = text.count("\n", 0, start) + 1
    for match in TORCH_CALL.finditer(source):
        if offset >= match.end(1):
            continue
        written = re.sub(r"\s+", "", match.group(0)[:match.end(1) - match.start()])
        span = Span(path, line, match.start() + 1, line, match.end(1) + 1)
        cell = match.group(1).lower()
        if cell not in BUILTIN_CELLS:
            hint = "rnnspec's cells are `rnn`, `lstm`, `gru` and the file's own `cell`s"
            return error("E033", f"unknown cell `{written}`", span, help=hint)
        prefix = written[:-len(match.group(1))]
        rewrite = _rewrite(text, start + match.end() - 1, source[:match.start()], cell)
        shown = f"`{rewrite}`" if rewrite else f"`{cell}(...)`"
        hint = f"write {shown}: rnnspec's cells are lowercase, without `{prefix}`"
        if not inside_stack:
            hint = (f"a block is written inside a stack (`stack NAME {{ input_size = ... }}`)"
                    f": write {shown} there; rnnspec's cells are lowercase, without "
                    f"`{prefix}`")
        return error("E033", f"unknown cell `{written}`", span, help=hint)
    return None


def _rewrite(text: str, opening: int, before: str, cell: str) -> str | None:
    """The call whose `(` is at `opening`, as rnnspec writes it: the cell in lowercase,
    `True`/`False` as `true`/`false`, quoted words bare, `name = value`; with the block's
    name when the line assigns it (`self.rnn = nn.LSTM(...)`). None when the call does not
    close, or is too long to show."""
    depth, at, limit = 0, opening, min(len(text), opening + _MAX_CALL)
    while at < limit:
        depth += {"(": 1, ")": -1}.get(text[at], 0)
        if depth == 0:
            break
        at += 1
    else:
        return None
    arguments = " ".join(text[opening + 1:at].split())
    if "#" in arguments:
        return None  # a comment inside the call: its text is not the arguments
    arguments = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", arguments))
    arguments = _QUOTED.sub(r"\2", arguments)
    arguments = _KEYWORD.sub(r"\1 = ", arguments)
    arguments = re.sub(r"\s*,\s*", ", ", arguments).strip().rstrip(",").strip()
    target = _TARGET.match(before)
    call = f"{cell}({arguments})"
    if target is not None:
        call = f"{target.group(1)} = {call}"
    return call if len(call) <= MAX_REWRITE else None
