"""What the language server knows about one version of a document, as plain data (no pygls
here): the checked file, hover text, definitions and the outline. Completion has its own
module (`completion`), user cells theirs (`cells`); `language_server` speaks the protocol.

Positions here are rnnspec's: 1-based lines and 1-based character (code point) columns,
as in every `Span`; the server converts them to the client's units with pygls' codec.
"""

from __future__ import annotations

import re

from rnnspec.language.diagnostics import Span
from rnnspec.records import Record

# Where each code is documented: docs/diagnostics.md of the project, one anchor per code.
DOCS_URL = "https://github.com/rnnspec/rnnspec/blob/main/docs/diagnostics.md"
SYNTAX_CODES = frozenset({"E001", "E002", "E003", "E005", "E006"})  # no syntax tree
MAX_HOVER_ROWS = 40  # parameters listed in a block's hover before "... and N more"

_WORD = re.compile(r"\w+")


def _contains(span: Span | None, line: int, column: int) -> bool:
    if span is None:
        return False
    return (span.line, span.column) <= (line, column) <= (span.end_line, span.end_column)


# ----------------------------------------------------------------------------- analysis


class Text:
    """A document's text by lines, with each line's offset (computed once: lookups are
    linear in nothing but the line they read)."""

    def __init__(self, text: str, path: str = ""):
        self.text = text
        self.path = path
        self.lines = text.split("\n")
        self._starts: list[int] | None = None

    def line(self, number: int) -> str:
        """The text of 0-based line `number` ("" past the end)."""
        return self.lines[number] if 0 <= number < len(self.lines) else ""

    def offset(self, line: int, column: int) -> int:
        """Character offset of a 1-based line and column (clamped to the text)."""
        if self._starts is None:
            starts, at = [], 0
            for text in self.lines:
                starts.append(at)
                at += len(text) + 1
            self._starts = starts
        index = min(max(line - 1, 0), len(self.lines) - 1)
        return min(self._starts[index] + max(column - 1, 0), len(self.text))

    def source(self, span: Span) -> str:
        """The text a span covers."""
        return self.text[self.offset(span.line, span.column):
                         self.offset(span.end_line, span.end_column)]

    def word_at(self, line: int, column: int) -> tuple[str, Span] | None:
        """The word (name or number) under or just before the 1-based position."""
        text = self.line(line - 1)
        for match in _WORD.finditer(text):
            if match.start() + 1 <= column <= match.end() + 1:
                return match.group(), Span(self.path, line, match.start() + 1, line,
                                           match.end() + 1)
        return None


class Analysis(Text):
    """One version of a document: its text and the checked file (with the parsed tree and
    the constants' values the checker kept). `version`: the document's version it is of."""

    def __init__(self, text: str, path: str, version: int | None = None):
        from rnnspec.check.checker import check_text

        super().__init__(text, path)
        self.version = version
        self.result = check_text(text, path)
        self._constants = None
        self.stacks = {s.name: s for s in self.result.stacks}

    @property
    def parsed(self) -> bool:
        """Whether the text parsed (no syntax or lexical error was reported)."""
        return not any(d.code in SYNTAX_CODES for d in self.result.diagnostics)

    def semantic(self):
        """(AST or None, constant values): the checker's, not parsed again."""
        if self._constants is None:
            from rnnspec.check.evaluate import POISON

            self._constants = {k: v for k, v in self.result.values.items()
                               if v is not None and v is not POISON}
        return self.result.tree, self._constants


def format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _shape(dims) -> str:
    from rnnspec.cells.shapes import format_shape

    return format_shape(dims)


# ----------------------------------------------------------------------------- hover


def hover_text(analysis: Analysis, line: int, column: int) -> tuple[str, Span] | None:
    """Markdown for what is at the 1-based position, with the span it is about."""
    spec, constants = analysis.semantic()
    word = analysis.word_at(line, column)
    if spec is not None and word is not None and word[0] in constants and not _is_key(
            spec, line, column):
        name, span = word
        let = next((c for c in spec.lets if c.name == name), None)
        written = ""
        if let is not None:
            text = analysis.source(let.value.span)
            if text.strip() != format_value(constants[name]):
                written = f" (`{text}`)"
        return f"**{name}** = `{format_value(constants[name])}`{written}", span
    if spec is not None:
        from rnnspec.tools.lsp import cells as lsp_cells

        found = lsp_cells.hover(analysis, spec, line, column)
        if found is not None:
            return found
        for expect in spec.expects:
            for entry in expect.entries:
                key_span = entry.key_span if entry.selector is None else entry.key_span.to(
                    entry.selector.span)
                if _contains(key_span, line, column):
                    return _expect_key_hover(analysis, expect.stack, entry), entry.span
        for stack_ast in spec.stacks + tuple(spec.expects):
            name_span = getattr(stack_ast, "name_span", None) or stack_ast.stack_span
            name = getattr(stack_ast, "name", None) or stack_ast.stack
            if _contains(name_span, line, column) and name in analysis.stacks:
                return _stack_hover(analysis.stacks[name]), name_span
    from rnnspec.tools.lsp import layers as lsp_layers

    for stack_ast in spec.stacks if spec is not None else ():
        if not _contains(stack_ast.span, line, column):
            continue
        stack = analysis.stacks.get(stack_ast.name)
        if stack is None:
            return _broken_stack_hover(analysis, stack_ast, line, column)
        for side in stack.side_inputs:
            if _contains(side.span, line, column):
                return lsp_layers.side_input_hover(side), side.span
        items = entry_items(stack_ast)
        if len(stack.entries) != len(items):
            continue
        for entry, entry_ast in zip(stack.entries, items):
            if _contains(entry_ast.span, line, column):
                return lsp_layers.entry_hover(entry, stack, block_hover), entry_ast.span
    return None


def _broken_stack_hover(analysis: Analysis, stack_ast, line: int, column: int):
    """A block of a stack with errors: the entries that derived before the first broken
    one keep their hover; the others say why they have no shapes."""
    from types import SimpleNamespace

    from rnnspec.tools.lsp import layers as lsp_layers

    batch_first, derived = analysis.result.partial.get(stack_ast.name, (False, {}))
    stack = SimpleNamespace(batch_first=batch_first is True)
    for index, item in enumerate(entry_items(stack_ast)):
        if not _contains(item.span, line, column):
            continue
        entry = derived.get(index)
        if entry is not None:
            return lsp_layers.entry_hover(entry, stack, block_hover), item.span
        name = item.name or item.cell
        return (f"**{name}**: `{item.cell}`, not derived: this entry or one before it in "
                f"stack `{stack_ast.name}` has errors (see the diagnostics)"), item.span
    return None


def entry_items(stack_ast) -> list:
    """A parsed stack's entries: its calls but the side inputs (`NAME = input(size)`)."""
    from rnnspec.layers.kinds import INPUT

    return [b for b in stack_ast.blocks if b.cell != INPUT]


def _is_key(spec, line: int, column: int) -> bool:
    return any(_contains(e.key_span, line, column) for x in spec.expects for e in x.entries)


def block_hover(block, stack) -> str:
    rows = [f"**{block.name}**: `{block.cell}`, {block.summary}", "",
            "| tensor | shape |", "| --- | --- |"]
    parameters = list(block.parameters)
    for parameter in parameters[:MAX_HOVER_ROWS]:
        rows.append(f"| `{parameter.name}` | `{_shape(parameter.shape)}` |")
    if len(parameters) > MAX_HOVER_ROWS:
        rows.append(f"| ... and {len(parameters) - MAX_HOVER_ROWS} more | |")
    from rnnspec.cells.registry import state_keys

    for state in block.state_names:
        initial, final = state_keys(state)
        rows.append(f"| `{initial}`, `{final}` | `{_shape(block.states[initial])}` |")
    rows.append(f"| output | `{_shape(block.output)}` |")
    rows += ["", f"{block.parameter_count:,} parameters"
             f" ({'batch first' if stack.batch_first else 'time first'}; "
             "`T` time, `B` batch)"]
    return "\n".join(rows)


def _stack_hover(stack) -> str:
    from rnnspec.tools.lsp import layers as lsp_layers

    return lsp_layers.stack_hover(stack)


def _expect_key_hover(analysis: Analysis, stack_name: str, entry) -> str:
    written = entry.key + (f"[{entry.selector.value}]" if entry.selector else "")
    stack = analysis.stacks.get(stack_name)
    if stack is None:
        return f"`{written}`: stack `{stack_name}` has no derived shapes"
    shape = derived_shape(stack, entry.key, entry.selector.value if entry.selector else None)
    if shape is None:
        return f"`{written}`: no derived shape"
    return f"`{written}` of `{stack.name}`: derived `{_shape(shape)}`"


def derived_shape(stack, key: str, selector=None):
    """The shape an expect key is compared with (T and B symbolic), or None."""
    if key == "input":
        return stack.input
    block = None
    if key == "output" and isinstance(selector, str):  # any entry's output (section 10)
        entry = next((e for e in stack.entries if e.name == selector), None)
        return None if entry is None else entry.output
    if isinstance(selector, int) and 0 <= selector < len(stack.blocks):
        block = stack.blocks[selector]
    elif isinstance(selector, str):
        block = next((b for b in stack.blocks if b.name == selector), None)
    elif selector is None and (key == "output" or len(stack.blocks) == 1):
        block = stack.blocks[-1] if key == "output" else stack.blocks[0]
    if block is None:
        return None
    if key == "output":
        return block.output
    from rnnspec.cells.registry import state_keys

    for state in block.state_names:
        initial, final = state_keys(state)
        if key in (initial, final):
            return block.states.get(initial)
    return None


# ----------------------------------------------------------------------------- definitions


def definition(analysis: Analysis, line: int, column: int) -> Span | None:
    spec, _ = analysis.semantic()
    if spec is None:
        return None
    stacks = {s.name: s for s in spec.stacks}
    for expect in spec.expects:
        if _contains(expect.stack_span, line, column) and expect.stack in stacks:
            return stacks[expect.stack].name_span
        for entry in expect.entries:
            if entry.selector is not None and _contains(entry.selector.span, line, column):
                return _block_definition(stacks.get(expect.stack), entry.selector.value,
                                         analysis.stacks.get(expect.stack))
    word = analysis.word_at(line, column)
    if word is None:
        return None
    from rnnspec.tools.lsp import cells as lsp_cells

    found = lsp_cells.definition(spec, word[0], line, column)
    if found is not None:
        return found
    for let in spec.lets:
        if let.name == word[0]:
            return let.name_span
    if word[0] in stacks:
        return stacks[word[0]].name_span
    return None


def _block_definition(stack_ast, selector, stack) -> Span | None:
    if stack_ast is None:
        return None
    items = entry_items(stack_ast)
    if isinstance(selector, int):
        blocks = [b for b, e in zip(items, stack.entries) if e.recurrent] if (
            stack is not None and len(items) == len(stack.entries)) else items
        if 0 <= selector < len(blocks):
            block = blocks[selector]
            return block.name_span or block.cell_span
        return None
    for index, block in enumerate(items):
        name = block.name or (stack.entries[index].name if stack is not None
                              and index < len(stack.entries) else None)
        if name == selector:
            return block.name_span or block.cell_span
    return None


# ----------------------------------------------------------------------------- symbols


class Symbol(Record):
    name: str
    kind: str  # constant, stack, block, expect, key, cell, state, param
    detail: str
    span: Span
    selection: Span
    children: tuple = ()


def symbols(analysis: Analysis) -> list[Symbol]:
    spec, constants = analysis.semantic()
    if spec is None:
        return []
    out: list[Symbol] = []
    for let in spec.lets:
        value = constants.get(let.name)
        out.append(Symbol(let.name, "constant", "" if value is None else format_value(value),
                          let.span, let.name_span))
    for stack in spec.stacks:
        checked = analysis.stacks.get(stack.name)
        children = []
        items = entry_items(stack)
        known = checked is not None and len(checked.entries) == len(items)
        for index, block in enumerate(items):
            name = block.name or (checked.entries[index].name if known else block.cell)
            children.append(Symbol(name, "block", block.cell, block.span,
                                   block.name_span or block.cell_span))
        detail = f"{checked.parameter_count:,} parameters" if checked else ""
        out.append(Symbol(stack.name, "stack", detail, stack.span, stack.name_span,
                          tuple(children)))
    for expect in spec.expects:
        children = [Symbol(e.key + (f"[{e.selector.value}]" if e.selector else ""), "key", "",
                           e.span, e.key_span) for e in expect.entries]
        out.append(Symbol(f"expect {expect.stack}", "expect", "", expect.span,
                          expect.stack_span, tuple(children)))
    from rnnspec.tools.lsp import cells as lsp_cells

    out += lsp_cells.symbols(spec, analysis, Symbol)
    return sorted(out, key=lambda s: (s.span.line, s.span.column))
