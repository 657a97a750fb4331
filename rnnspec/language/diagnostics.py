"""Diagnostics as plain data, the registry of their codes, and their rustc-style rendering.

Finding a problem and printing it are separate: the parser and the checker build
`Diagnostic` values; `render` turns one into text with the source line and a caret.
"""

from __future__ import annotations

import unicodedata

from rnnspec.records import Record


class Span(Record):
    """A region of a source file. Lines and columns are 1-based; `end_column` is exclusive."""

    path: str
    line: int
    column: int
    end_line: int
    end_column: int

    def to(self, other: Span) -> Span:
        """The span from the start of `self` to the end of `other`."""
        return Span(self.path, self.line, self.column, other.end_line, other.end_column)


class Note(Record):
    message: str
    span: Span | None = None


class Diagnostic(Record):
    severity: str  # "error" or "warning"
    code: str
    message: str
    span: Span | None
    notes: tuple[Note, ...] = ()
    help: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


# The registry: every code the tool emits, with a one-line title. docs/diagnostics.md
# documents each with an example; a test keeps the two in step.
CODES: dict[str, str] = {
    # reading and syntax
    "E001": "syntax error",
    "E002": "unexpected character",
    "E003": "expression nested too deeply",
    "E004": "number literal out of range",
    "E005": "file is not valid UTF-8",
    "E006": "file cannot be read",
    # names
    "E010": "unknown name",
    "E011": "duplicate definition",
    "E012": "name not allowed",
    "E013": "constant defined in terms of itself",
    # values
    "E020": "wrong type",
    "E021": "value out of range",
    "E022": "division by zero",
    "E023": "value too large",
    "E024": "tensor too large to allocate",
    # stacks and blocks
    "E030": "unknown stack property",
    "E031": "missing required property",
    "E032": "stack without blocks",
    "E033": "unknown cell",
    "E034": "unknown block argument",
    "E035": "missing required argument",
    "E036": "block input size does not match",
    "E037": "`proj_size` not smaller than `hidden_size`",
    "E038": "positional argument that cannot bind",
    "E039": "block `batch_first` disagrees with its stack",
    # expectations
    "E040": "expectation for an unknown stack",
    "E041": "unknown expectation key",
    "E042": "expectation without `input`",
    "E043": "wrong number of dimensions",
    "E044": "shape mismatch",
    "E045": "unknown or missing block selector",
    "E046": "cell state of a block without one",
    # cells declared by their equations
    "E071": "sizes do not match in an equation",
    "E072": "matrix product with the wrong operands or sizes",
    "E073": "`chunk` that does not match its names or its vector",
    "E074": "not a function or value of the step equations",
    "E075": "assignment that is not allowed",
    "E076": "declaration of a cell that is not valid",
    "E077": "cell condition that fails for a block's sizes",
    "E078": "a condition used as a value, or a value used as a condition",
    "E079": "a `require` that is not between sizes, or that a block's sizes break",
    # verification against torch (`check --verify`)
    "E050": "derived shape disagrees with torch",
    # checkpoints (`check --weights`)
    "E060": "checkpoint implies another argument value",
    "E061": "checkpoint holds another cell",
    "E062": "checkpoint tensors no argument explains",
    "E063": "block missing from the checkpoint",
    "E064": "no tensor of the checkpoint matches the stack",
    # section 9: merged directions, residual blocks
    "E090": "`merge` on a block with one direction",
    "E091": "residual block whose input and output sizes differ",
    "E092": "`reverse` on a bidirectional block",
    "E101": "2-D window wider than its bins",
    "E102": "groups that do not divide the channels",
    "E103": "`from` naming a later or unknown entry",
    "E104": "parts of `concat` or `sum` that do not fit together",
    "E105": "`embedding` not first, or with `input_size`",
    "E106": "an entry that cannot follow `pool`, or `pool(final)` not after a block",
    "E107": "an entry shorter than one step",
    "E108": "a side input without a name",
    # warnings
    "W001": "dropout has no effect with one layer",
    "W002": "parameters exceed any single device's memory",
    "W003": "parameter of a cell never read",
    "W004": "local of a cell assigned but never read",
    "W005": "state of a cell never assigned",
    "W010": "`pool(last)` after a bidirectional block",
    "W011": "a layer's arguments in the order of PyTorch's constructor",
}


def error(code: str, message: str, span: Span | None, *, notes=(), help: str | None = None):
    assert code in CODES and code.startswith("E"), code
    return Diagnostic("error", code, message, span, tuple(notes), help)


def warning(code: str, message: str, span: Span | None, *, notes=(), help: str | None = None):
    assert code in CODES and code.startswith("W"), code
    return Diagnostic("warning", code, message, span, tuple(notes), help)


class Sink(list):
    """The diagnostics of one run, in the order found, with a way to ask whether a step
    added errors (in the manner of mypy's `ErrorWatcher`)."""

    def watch(self) -> Watch:
        return Watch(self)


class Watch:
    """`with sink.watch() as step: ...`, then `step.failed`: did the step add an error?"""

    def __init__(self, sink: Sink):
        self.sink = sink
        self.start = len(sink)
        self.end: int | None = None  # fixed when the step ends; until then, the sink's end

    def __enter__(self) -> Watch:
        self.start, self.end = len(self.sink), None
        return self

    def __exit__(self, *exc) -> None:
        self.end = len(self.sink)

    @property
    def failed(self) -> bool:
        return any(d.is_error for d in self.sink[self.start:self.end])


def sort_key(d: Diagnostic):
    s = d.span
    return (s.path, s.line, s.column, d.code) if s else ("", 0, 0, d.code)


# ----------------------------------------------------------------------------- rendering

TAB_WIDTH = 4
SHOWN_WIDTH = 160  # characters of a source line shown around a span


def _display_char(ch: str) -> str:
    """How one source character is shown: tabs expanded, control characters made visible."""
    if ch == "\t":
        return " " * TAB_WIDTH
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block: NUL becomes ␀
    if code == 0x7F:
        return "\u2421"
    if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
        return "\ufffd"
    return ch


def _width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _layout(line: str, start: int, end: int) -> tuple[str, int, int]:
    """The displayed line, and the display offset and width of columns [start, end)."""
    shown: list[str] = []
    offset = caret_start = caret_end = 0
    for index, ch in enumerate(line, start=1):
        if index == start:
            caret_start = offset
        if index == end:
            caret_end = offset
        text = _display_char(ch)
        shown.append(text)
        offset += sum(_width(c) for c in text)
    if start > len(line):
        caret_start = offset + (start - len(line) - 1)
    if end > len(line):
        caret_end = offset + (end - len(line) - 1)
    return "".join(shown), caret_start, max(1, caret_end - caret_start)


class Style:
    """ANSI colours, or none."""

    def __init__(self, colour: bool):
        self.colour = colour

    def _wrap(self, codes: str, text: str) -> str:
        return f"\x1b[{codes}m{text}\x1b[0m" if self.colour else text

    def error(self, text):
        return self._wrap("1;31", text)

    def warning(self, text):
        return self._wrap("1;33", text)

    def note(self, text):
        return self._wrap("1;36", text)

    def bold(self, text):
        return self._wrap("1", text)

    def gutter(self, text):
        return self._wrap("1;34", text)


def _snippet(span: Span, lines: list[str], style: Style, marker: str, paint) -> list[str]:
    if not (1 <= span.line <= len(lines) + 1):
        return []
    line = lines[span.line - 1] if span.line <= len(lines) else ""
    column = span.column
    end = span.end_column if span.end_line == span.line else len(line) + 1
    end = max(end, column + 1)
    if len(line) > SHOWN_WIDTH:
        # A long line is shown as a window around the span (never the whole of a huge
        # one-line file, once per diagnostic)
        first = max(0, min(column - 1 - SHOWN_WIDTH // 3, len(line) - SHOWN_WIDTH))
        last = first + SHOWN_WIDTH
        before = "..." if first > 0 else ""
        line = before + line[first:last] + ("..." if last < len(line) else "")
        column = column - first + len(before)
        end = min(end - first + len(before), len(line) + 1)
    shown, start, width = _layout(line, column, end)
    number = str(span.line)
    pad = " " * len(number)
    return [
        f"{pad} {style.gutter('|')}",
        f"{style.gutter(number)} {style.gutter('|')} {shown}".rstrip(),
        f"{pad} {style.gutter('|')} {' ' * start}{paint(marker * width)}",
    ]


def render(d: Diagnostic, sources: dict[str, list[str]], style: Style | None = None) -> str:
    """One diagnostic in the rustc manner: location line, snippet with caret, notes, help."""
    style = style or Style(False)
    paint = style.error if d.is_error else style.warning
    head = f"{d.severity}[{d.code}]"
    where = f"{d.span.path}:{d.span.line}:{d.span.column}: " if d.span else ""
    out = [f"{style.bold(where)}{paint(head)}: {style.bold(d.message)}"]
    if d.span:
        out += _snippet(d.span, sources.get(d.span.path, []), style, "^", paint)
    for note in d.notes:
        if note.span:
            out.append(f"{style.note('note')}: {note.message}")
            out.append(f"  --> {note.span.path}:{note.span.line}:{note.span.column}")
            out += _snippet(note.span, sources.get(note.span.path, []), style, "-", style.note)
        else:
            out.append(f"{style.note('note')}: {note.message}")
    if d.help:
        out.append(f"{style.note('help')}: {d.help}")
    return "\n".join(out)


def to_json(d: Diagnostic) -> dict:
    s = d.span
    return {
        "severity": d.severity,
        "code": d.code,
        "message": d.message,
        "path": s.path if s else None,
        "line": s.line if s else None,
        "column": s.column if s else None,
        "end_line": s.end_line if s else None,
        "end_column": s.end_column if s else None,
        "help": d.help,
        "notes": [
            {
                "message": n.message,
                "path": n.span.path if n.span else None,
                "line": n.span.line if n.span else None,
                "column": n.span.column if n.span else None,
            }
            for n in d.notes
        ],
    }


def did_you_mean(name: str, candidates) -> str | None:
    """The closest candidate to a misspelt name, as a `help:` text, or None."""
    import difflib

    candidates = sorted(set(candidates))
    folded = {c.casefold(): c for c in candidates}
    if name.casefold() in folded:
        return f"did you mean `{folded[name.casefold()]}`?"
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else None
