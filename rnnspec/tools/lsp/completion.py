"""Completion for the language server, as plain data: what may be typed at an offset of a
document, read from the language's tokens (`language.lexer`) so that a file being typed,
which does not parse, still completes; keywords from the grammar, cells and arguments from
the registry, functions and initialisers from the cell checker's tables."""

from __future__ import annotations

import re

from rnnspec.records import Record
from rnnspec.tools.lsp.analysis import Analysis, format_value


class Completion(Record):
    label: str
    kind: str  # argument, cell, constant, key, keyword, property, value, function, name
    detail: str = ""
    insert: str | None = None


class Context(Record):
    """Where a position is: `where` is top, stack, expect, cell (a cell body), call (a
    block's arguments), function (inside a call in a cell body), header (a cell's size
    arguments), dims (inside `[...]`) or selector (`h0[` in an expect); `name` is the call's
    cell or function, the key of a selector; `block` and `block_name` the enclosing item."""

    where: str
    name: str | None = None
    block: str | None = None
    block_name: str | None = None


def item_start(text: str, offset: int) -> int:
    """Where the top-level item that holds `offset` starts: the last line before `offset`
    that begins (in its first column) with an item keyword (`let`, `stack`, `cell`,
    `expect`), else 0. Found with `str.rfind`, so a request reads the item it is in, not
    the document: an item's start is outside every bracket, and a half-typed item above
    does not swallow the one below it."""
    from rnnspec.language.parse import item_keywords

    best = 0
    for keyword in item_keywords():
        at = text.rfind("\n" + keyword, 0, offset)
        while at >= 0:
            end = at + 1 + len(keyword)
            if end >= len(text) or not (text[end].isalnum() or text[end] == "_"):
                best = max(best, at + 1)
                break
            at = text.rfind("\n" + keyword, 0, at)
    return best


_CELL_LINE = re.compile(r"^cell\b", re.MULTILINE)
_HEADER_CHARS = 4096  # of a `cell NAME(sizes) {` header read for its size arguments


def declared_cells(text: str) -> dict[str, tuple[str, ...]]:
    """Each `cell NAME(args)` at the start of a line of `text`, with its size arguments:
    only the headers are lexed (the lines are found by a regular expression)."""
    found: dict[str, tuple[str, ...]] = {}
    for match in _CELL_LINE.finditer(text):
        end = text.find("{", match.start(), match.start() + _HEADER_CHARS)
        header = text[match.start():end if end >= 0 else match.start() + _HEADER_CHARS]
        found.update(_declared_cells(_code(header)))
    return found


def _code(text: str) -> list:
    """The code tokens of `text` (comments dropped)."""
    from rnnspec.language.parse import tokenize

    return [t for t in tokenize(text) if t.kind != "comment"]


def _header(tokens, index: int) -> tuple[str | None, str | None]:
    """The keyword and name of the item whose `{` is `tokens[index]`: `cell Gated(k) {`."""
    at = index - 1
    if at >= 0 and tokens[at].text == ")":
        depth = 0
        while at >= 0:
            depth += {")": 1, "(": -1}.get(tokens[at].text, 0)
            if depth == 0:
                break
            at -= 1
        at -= 1
    name = tokens[at].text if at >= 0 else None
    keyword = tokens[at - 1].text if at >= 1 else None
    return keyword, name


def _context(tokens) -> Context:
    """The context at the end of `tokens` (code tokens, no comments)."""
    openers: list[tuple[str, str | None, str | None]] = []
    for index, token in enumerate(tokens):
        if token.text == "{":
            openers.append(("{", *_header(tokens, index)))
        elif token.text in ("(", "["):
            before = tokens[index - 1].text if index else None
            keyword = tokens[index - 2].text if index > 1 else None
            openers.append((token.text, keyword, before))
        elif token.text in (")", "]", "}") and openers:
            openers.pop()
    if not openers:
        return Context("top")
    last_block = max((i for i, o in enumerate(openers) if o[0] == "{"), default=-1)
    block = openers[last_block][1:] if last_block >= 0 else (None, None)
    char, keyword, name = openers[-1]
    if char == "{":
        return Context(keyword or "block", None, keyword, name)
    if char == "(":
        if block[0] == "cell":
            return Context("function", name, *block)
        if keyword == "cell":
            return Context("header", name, "cell", name)
        # the block's call, however deep the cursor is in its arguments' parentheses
        return Context("call", openers[last_block + 1][2], *block)
    if block[0] == "expect" and name is not None and name not in ("=", ","):
        return Context("selector", name, *block)
    return Context("dims", None, *block)


def _declared_cells(tokens) -> dict[str, tuple[str, ...]]:
    """Each `cell NAME(args)` of the text with its size arguments, read from the tokens,
    so that a file being typed (which does not parse) still completes its cells."""
    found: dict[str, tuple[str, ...]] = {}
    depth = 0
    for index, token in enumerate(tokens):
        if token.text in ("{", "(", "["):
            depth += 1
        elif token.text in ("}", ")", "]"):
            depth = max(0, depth - 1)
        elif token.text == "cell" and depth == 0 and index + 1 < len(tokens) \
                and tokens[index + 1].kind == "name":
            arguments, at = [], index + 2
            if at < len(tokens) and tokens[at].text == "(":
                level, at = 1, at + 1
                while at < len(tokens) and level:
                    text = tokens[at].text
                    level += {"(": 1, ")": -1}.get(text, 0)
                    if level == 1 and tokens[at].kind == "name" and tokens[at - 1].text in (
                            "(", ","):
                        arguments.append(text)
                    at += 1
            found[tokens[index + 1].text] = tuple(arguments)
    return found


def _cell_scope(tokens) -> list[tuple[str, str]]:
    """(name, what) of the names a statement at the end of `tokens` (inside a cell body)
    can read: sizes, the step's input, states, parameters and the locals assigned so far."""
    start = max((i for i, t in enumerate(tokens) if t.text == "cell"), default=None)
    if start is None:
        return []
    body = tokens[start:]
    names = [("x", "the step's input"), ("input_size", "size"), ("hidden_size", "size")]
    if len(body) > 1:
        names += [(n, "size argument") for n in _declared_cells(body).get(body[1].text, ())]
    depth, declaring = 0, None
    for index, token in enumerate(body):
        text = token.text
        if token.newlines and depth == 1 and index and body[index - 1].text != ",":
            declaring = None  # a new line: a new statement or declaration
        if text in ("(", "[", "{"):
            depth += 1
        elif text in (")", "]", "}"):
            depth -= 1
        if depth != 1:
            continue
        if text in ("state", "param"):
            declaring = text
        elif token.kind == "name" and declaring and index + 1 < len(body) \
                and body[index + 1].text == "[":
            names.append((text, declaring))
        elif text == "=" and declaring == "param":
            continue  # `param a[n] = zeros, b[n] = ones`: an initialiser, more may follow
        elif text == "=":
            declaring = None
            at, targets = index - 1, []
            while at >= 0 and body[at].kind == "name":
                targets.insert(0, (body[at].text, "local"))
                if at == 0 or body[at - 1].text != ",":
                    break
                at -= 2
            names += targets
    return list(dict.fromkeys(names))


def _records(analysis, previous) -> dict:
    """The file's checked user cells by name: this version's, else those of the last
    version that parsed (`previous`), so that typing inside a call still completes."""
    for source in (analysis, previous):
        if source is not None and source.result.cells:
            return {c.name: c for c in source.result.cells}
    return {}


def _stacks(analysis, previous) -> dict:
    """The checked stacks by name, this version's or the last parsed version's."""
    for source in (analysis, previous):
        if source is not None and source.stacks:
            return source.stacks
    return {}


def _argument_rules(cell: str | None, records: dict, declared: dict) -> tuple[tuple, bool]:
    """The rules of every argument a block of `cell` takes, and whether they may be passed
    by position: from the layer's or the registry's record (built-in, or the file's checked
    cell), else every block's arguments plus the sizes the cell's header names."""
    from rnnspec.cells.registry import BUILTIN_CELLS, COMMON_ARGUMENTS, ArgumentRule
    from rnnspec.tools.lsp import layers as lsp_layers

    layer = lsp_layers.layer_rules(cell)
    if layer:
        return layer, True
    record = BUILTIN_CELLS.get(cell or "") or records.get(cell or "")
    if record is not None:
        return record.arguments, record.positional
    return (*COMMON_ARGUMENTS, *(ArgumentRule(n, "int", None, meaning="size argument of "
                                              f"cell `{cell}`")
                                 for n in declared.get(cell or "", ()))), False


def _written_arguments(tokens) -> tuple[list[str | None], bool]:
    """The arguments before the cursor in the innermost block call of `tokens`: each one's
    keyword (None when positional), and whether the cursor is past a `NAME =` already."""
    depth, start = 0, None
    for index in range(len(tokens) - 1, -1, -1):
        text = tokens[index].text
        if text in (")", "]", "}"):
            depth += 1
        elif text in ("(", "[", "{"):
            if depth == 0 and text == "(":
                start = index  # keep going out: the call of the block is the outermost
            elif depth == 0:
                break
            depth = max(0, depth - 1)
    if start is None:
        return [], False
    written: list[str | None] = []
    current: list = []
    depth = 0
    for token in tokens[start + 1:]:
        if token.text in ("(", "["):
            depth += 1
        elif token.text in (")", "]"):
            depth -= 1
        if token.text == "," and depth == 0:
            written.append(current[0].text if len(current) > 1 and current[1].text == "="
                           else None)
            current = []
        else:
            current.append(token)
    return written, len(current) > 1 and current[1].text == "="


def _call_completions(rules: tuple, positional: bool, written: list, values: list) -> list:
    """At an argument's name: the names not given yet, and when a value may go here by
    position (no keyword before it), the values of the next positional argument."""
    given = {name for name in written if name is not None}
    order = [r for r in rules if not r.keyword_only] if positional else []
    by_position = len(written) if all(name is None for name in written) else None
    if by_position is not None and by_position > len(order):
        by_position = None
    if by_position is not None:
        given |= {r.name for r in order[:by_position]}
    items = [Completion(r.name, "argument", r.meaning, f"{r.name} = ")
             for r in rules if r.name not in given]
    if by_position is None or by_position >= len(order):
        return items
    rule = order[by_position]
    if rule.kind == "bool":
        return items + [Completion(c, "value", rule.meaning) for c in ("true", "false")]
    if rule.choices:
        return items + [Completion(c, "value", rule.meaning) for c in rule.choices]
    return items + (values if rule.kind in ("int", "float") else [])


_VALUE_OF = re.compile(r"(\w+)\s*=\s*\w*$")
_PARTS = re.compile(r"\b(?:concat|sum)\(\s*(?:\w+\s*,\s*)*\w*$")  # in `from = concat(`


def _entry_names(stack) -> list[str]:
    return [e.name for e in stack.entries] if stack is not None else []


def completions(analysis: Analysis | None, text: str, offset: int,
                previous: Analysis | None = None) -> list[Completion]:
    """What may be typed at `offset` of `text`. `previous`: the document's last version
    that parsed, for what the current one (half typed) cannot say: its cells and stacks.
    Only the item that holds `offset` is lexed (`item_start`), and the cells' headers."""
    from rnnspec.language.parse import cell_keywords, item_keywords

    tokens = _code(text[item_start(text, offset):offset])
    context = _context(tokens)
    where = context.where
    constants = analysis.semantic()[1] if analysis is not None else {}
    values = [Completion(c, "constant", format_value(v)) for c, v in sorted(constants.items())]
    declared = declared_cells(text)
    records = _records(analysis, previous)
    stacks = _stacks(analysis, previous)
    if where == "call":
        from rnnspec.tools.lsp import layers as lsp_layers

        stack = stacks.get(context.block_name)
        before = text[max(0, offset - 200):offset]
        value = _VALUE_OF.search(before)
        if _PARTS.search(before) or (value is not None and value.group(1) == "from"):
            return lsp_layers.from_completions(Completion, stack, _entry_names(stack))
        rules, positional = _argument_rules(context.name, records, declared)
        written, after_equals = _written_arguments(tokens)
        if not after_equals:  # an argument's name, or a value by position
            return _call_completions(rules, positional, written, values)
        by_name = {r.name: r for r in rules}
        rule = by_name.get(value.group(1)) if value is not None else None
        if rule is not None and (rule.choices or rule.kind == "bool"):  # `merge = ` -> sum...
            choices = list(rule.choices) or ["true", "false"]
            return [Completion(c, "value", rule.meaning) for c in choices] + values
        return values
    if where == "stack":
        from rnnspec.cells.registry import BUILTIN_CELLS, STACK_PROPERTIES

        cells = [Completion(c, "cell", "recurrent cell", f"{c}(hidden_size = )")
                 for c in BUILTIN_CELLS]
        cells += [Completion(c, "cell", "declared cell", f"{c}(hidden_size = )")
                  for c in declared if c not in BUILTIN_CELLS]
        from rnnspec.tools.lsp import layers as lsp_layers

        cells += lsp_layers.kind_completions(Completion)
        return (cells + [Completion(p, "property", "stack property", f"{p} = ")
                         for p in STACK_PROPERTIES] + values)
    if where == "expect":
        return _expect_keys(stacks.get(context.block_name), records, declared) + values
    if where == "selector":
        stack = stacks.get(context.block_name)
        names = [b.name for b in stack.blocks] if stack is not None else []
        return [Completion(n, "name", "block") for n in names] + [
            Completion(str(i), "value", "block position") for i in range(len(names))]
    if where in ("cell", "function"):
        from rnnspec.cells.equations import FUNCTIONS, INITIALISERS

        line = text[text.rfind("\n", 0, offset) + 1:offset].lstrip()
        if where == "cell" and line.startswith("param") and "=" in line:
            outside = re.sub(r"\[[^\]]*\]|\([^)]*\)", "", line)
            if outside.rfind("=") < outside.rfind(","):
                return []  # `param a[n] = zeros, b`: the name of the next parameter
            return [Completion(i, "function", "initialiser") for i in INITIALISERS]
        items = [Completion(f, "function", "function", f"{f}(") for f in FUNCTIONS]
        items += [Completion(n, "name", what) for n, what in _cell_scope(tokens)]
        if where == "cell" and (not tokens or tokens[-1].text in ("{", "}", ")", "]")
                                or tokens[-1].kind in ("name", "int", "float")):
            items = [Completion(k, "keyword", "") for k in cell_keywords()] + items
        return items + values
    if where == "dims" and context.block == "cell":
        sizes = [n for n, what in _cell_scope(tokens)
                 if what in ("size", "size argument")]
        return [Completion(n, "name", "size") for n in sizes] + values
    if where in ("dims", "header"):
        return values + ([Completion("_", "value", "any size")] if where == "dims" else [])
    return [Completion(k, "keyword", "") for k in item_keywords()] + values


def _expect_keys(stack, records, declared) -> list[Completion]:
    """`input`, `output` and the `s0` / `s_n` keys of the states of the stack's cells
    (`h0[block]` forms when the stack has several blocks)."""
    from rnnspec.cells.registry import BUILTIN_CELLS, state_keys

    if stack is not None:
        states = [s for b in stack.blocks for s in b.state_names]
    else:
        cells = list(BUILTIN_CELLS.values()) + [records[n] for n in declared if n in records]
        states = [s.name for cell in cells for s in cell.states]
    keys = ["input", "output"] + list(dict.fromkeys(
        key for s in states for key in state_keys(s)))
    items = [Completion(k, "key", "expectation", f"{k} = ") for k in keys]
    if stack is not None and len(stack.blocks) > 1:
        items += [Completion(f"{k}[{b.name}]", "key", "expectation", f"{k}[{b.name}] = ")
                  for b in stack.blocks for s in b.state_names for k in state_keys(s)]
    return items
