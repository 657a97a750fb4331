"""The check report, as text for people and as the JSON document of docs/reference.md (section 6).
Both read the checked model only."""

from __future__ import annotations

from rnnspec import model
from rnnspec.cells.shapes import format_shape
from rnnspec.language.diagnostics import Style, render, to_json
from rnnspec.model import format_bytes


def stack_text(stack: model.Stack, style: Style) -> list[str]:
    lines = [f"{stack.path}:{stack.span.line}: stack {style.bold(stack.name)}"
             + ("  (batch_first)" if stack.batch_first else "")]
    lines.append(f"  input   {format_shape(stack.input)}")
    lines.append(f"  output  {format_shape(stack.output)}")
    for side in stack.side_inputs:
        lines.append(f"  input {style.bold(side.name)}  {format_shape(side.shape)}"
                     + ("  (one per sequence)" if side.per_sequence else ""))
    if stack.min_input_time > 1:
        lines.append(f"  time    needs T >= {stack.min_input_time}")
    for entry in stack.entries:
        lines += entry_text(entry, style)
    size = format_bytes(stack.parameter_count * 4)
    lines.append(f"  parameters {stack.parameter_count:,} ({size} in float32)")
    return lines


def entry_text(entry: model.Entry, style: Style) -> list[str]:
    """A block or layer: its heading, then its parameters, buffers, states and output."""
    if entry.recurrent:
        heading = f"  block {style.bold(entry.name)}: {entry.cell}, {entry.summary}"
    else:
        heading = f"  layer {style.bold(entry.name)}: {entry.summary}"
    rows = [(p.name, format_shape(p.shape), f"{p.numel:,}") for p in entry.parameters]
    rows += [(b.name, format_shape(b.shape), "") for b in entry.buffers]
    rows += [(f"{key}, {model.final_key(key)}", format_shape(shape), "")
             for key, shape in entry.states.items()]
    rows.append(("output", format_shape(entry.output), ""))
    name_width = max(len(r[0]) for r in rows)
    shape_width = max(len(r[1]) for r in rows)
    count_width = max(len(r[2]) for r in rows)
    lines = [heading]
    for name, shape, count in rows:
        line = f"    {name:<{name_width}}  {shape:<{shape_width}}  {count:>{count_width}}"
        lines.append(line.rstrip())
    lines.append(f"    parameters {entry.parameter_count:,}")
    return lines


def text_report(results: list[model.CheckedFile], style: Style, sections=()) -> str:
    """`sections`: more lines after the stacks (each a list), such as `check --weights`'s."""
    out: list[str] = []
    for result in results:
        for stack in result.stacks:
            out += stack_text(stack, style) + [""]
    for section in sections:
        out += list(section) + [""]
    expectations = [e for r in results for e in r.expectations]
    if expectations:
        out.append("expectations")
        for e in expectations:
            verdict = style.note("ok") if e.ok else style.error("FAILED")
            out.append(f"  {e.path}:{e.line}: {e.stack}: {verdict}{bindings_text(e)}")
        out.append("")
    for result in results:
        sources = {result.path: result.text.split("\n")}
        for diagnostic in result.diagnostics:
            out += [render(diagnostic, sources, style), ""]
    out.append(summary(results))
    return "\n".join(out) + "\n"


def bindings_text(expectation: model.ExpectationResult) -> str:
    """` (T = 100, B = 32)`: what the expectation's `input` bound (`_` for any)."""
    if not expectation.bindings:
        return ""
    shown = ", ".join(f"{key} = {'_' if value is None else value}"
                      for key, value in expectation.bindings.items())
    return f" ({shown})"


def summary(results: list[model.CheckedFile]) -> str:
    diagnostics = [d for r in results for d in r.diagnostics]
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    stacks = sum(len(r.stacks) for r in results)
    met = sum(e.ok for r in results for e in r.expectations)
    total = sum(len(r.expectations) for r in results)

    def plural(n, word):
        return f"{n} {word}{'' if n == 1 else 's'}"

    return (f"{plural(stacks, 'stack')} checked, {met} of {plural(total, 'expectation')} met: "
            f"{plural(errors, 'error')}, {plural(warnings, 'warning')}")


# ----------------------------------------------------------------------------- JSON


def entry_json(entry: model.Entry) -> dict:
    """A block's document (section 6), or a layer's: its kind, sizes, tensors and output."""
    if entry.recurrent:
        return block_json(entry)
    return {
        "name": entry.name,
        "kind": entry.kind,
        "input_size": entry.input_size,
        "output_size": entry.output_size,
        "arguments": {key: list(value) if isinstance(value, tuple) else value
                      for key, value in entry.arguments.items()},
        "parameters": {p.name: list(p.shape) for p in entry.parameters},
        "buffers": {b.name: list(b.shape) for b in entry.buffers},
        "states": {},
        "output": list(entry.output),
        "time": None if entry.time is None else str(entry.time),
        "from": _source_json(entry.source),
        "parameter_count": entry.parameter_count,
    }


def _source_json(source) -> dict | None:
    return None if source is None else {"mode": source.mode, "parts": list(source.parts)}


def block_json(block: model.Block) -> dict:
    document = {
        "name": block.name,
        "cell": block.cell,
        "input_size": block.input_size,
        "hidden_size": block.hidden_size,
        "num_layers": block.num_layers,
        "bidirectional": block.bidirectional,
        "bias": block.bias,
        "dropout": block.dropout,
        "proj_size": block.proj_size,
        "nonlinearity": block.nonlinearity,
    }
    # every other argument of the cell, as the registry lists it (merge, residual, the
    # regularisers, ...): a new argument reaches the JSON without an edit here
    declared = set(block.spec.declared)
    for rule in block.spec.arguments:
        if rule.name not in document and rule.name not in declared | {"batch_first"}:
            document[rule.name] = block.arguments[rule.name]
    document.update({
        "parameters": {p.name: list(p.shape) for p in block.parameters},
        "states": {key: list(shape) for key, shape in block.states.items()},
        "output": list(block.output),
        "parameter_count": block.parameter_count,
    })
    if block.spec.step is not None:
        document["arguments"] = {name: block.arguments[name] for name in block.spec.declared}
    return document


def cell_json(cell, path: str) -> dict:
    """A declared cell, its sizes as text: the document's `cells` list (section 8)."""
    return {
        "name": cell.name,
        "path": path,
        "line": cell.span.line,
        "arguments": {name: cell.rules[name].default for name in cell.declared},
        "states": {state.name: str(state.size) for state in cell.states},
        "parameters": {p.role: [str(d) for d in p.dims] for p in cell.parameters},
    }


def stack_json(stack: model.Stack) -> dict:
    document = {
        "name": stack.name,
        "path": stack.path,
        "line": stack.span.line,
        "input_size": stack.input_size,
        "batch_first": stack.batch_first,
        "input": list(stack.input),
        "output": list(stack.output),
        "parameter_count": stack.parameter_count,
        # the recurrent blocks, as in v2; a stack with layers also lists every entry in
        # order under "entries" (the language has no layer kinds yet)
        "blocks": [block_json(b) for b in stack.blocks],
    }
    document["min_input_time"] = stack.min_input_time
    if stack.side_inputs:
        document["side_inputs"] = {
            side.name: {"size": side.size, "over": "sequence" if side.per_sequence else "time",
                        "shape": list(side.shape)} for side in stack.side_inputs}
    entries = []
    for entry in stack.entries:
        document_entry = entry_json(entry)
        if entry.recurrent:
            # every argument as it holds (the input size derived, whether written or not)
            arguments = {key: value for key, value in entry.arguments.items()
                         if key != "batch_first"}
            arguments["input_size"] = entry.input_size
            document_entry = {"kind": entry.cell, **document_entry, "arguments": arguments,
                              "buffers": {}, "time": str(entry.time),
                              "from": _source_json(entry.source)}
        entries.append(document_entry)
    document["entries"] = entries
    return document


def json_document(results: list[model.CheckedFile]) -> dict:
    document = {
        "ok": all(r.ok for r in results),
        "diagnostics": [to_json(d) for r in results for d in r.diagnostics],
        "stacks": [stack_json(s) for r in results for s in r.stacks],
        "expectations": [
            {"stack": e.stack, "path": e.path, "line": e.line, "ok": e.ok,
             "bindings": dict(e.bindings or {})}
            for r in results for e in r.expectations
        ],
    }
    cells = [cell_json(c, r.path) for r in results for c in r.cells]
    if cells:  # a v1 document keeps the keys of section 6 exactly
        document["cells"] = cells
    return document


_FLAT_LIST = r"\[\n\s+((?:[^\[\]{}\n]+,\n\s+)*[^\[\]{}\n]+)\n\s+\]"
_BINDINGS = r'"bindings": \{\n\s+((?:[^\[\]{}\n]+,\n\s+)*[^\[\]{}\n]+)\n\s+\}'


def json_report(results: list[model.CheckedFile], extra: dict | None = None) -> str:
    """The JSON document, indented, with each shape kept on one line: `[2, "B", 50]`.
    `extra`: more top-level members, such as `check --weights`'s `"weights"`."""
    import json
    import re

    text = json.dumps(dict(json_document(results), **(extra or {})), indent=2)
    # JSON strings never hold a raw newline, so only real lists of scalars match
    text = re.sub(_FLAT_LIST, lambda m: "[" + re.sub(r",\n\s+", ", ", m.group(1)) + "]", text)
    text = re.sub(_BINDINGS, lambda m: '"bindings": {' + re.sub(r",\n\s+", ", ", m.group(1))
                  + "}", text)
    return text + "\n"
