"""What the language server says of section 10's entries, as plain data (no pygls here):
the hover of a layer (its kind, parameters and buffers, output, and the time formula of a
layer that changes time), the stack's entries and shortest input in its hover, and the
layer kinds and their arguments for completion, read from `layers.kinds.LAYER_KINDS`.
"""

from __future__ import annotations

from rnnspec.layers.kinds import COMBINE, FROM, INPUT, LAYER_KINDS

MAX_HOVER_ROWS = 40


def _shape(dims) -> str:
    from rnnspec.cells.shapes import format_shape

    return format_shape(dims)


def _reads(entry) -> str:
    source = getattr(entry, "source", None)
    if source is None:
        return ""
    if source.mode == "name":
        return f"reads `{source.parts[0]}`"
    return f"reads `{source.mode}({', '.join(source.parts)})`"


def layer_hover(layer, stack) -> str:
    """A layer's kind and sizes, its parameters and buffers with their PyTorch keys, its
    output (time as its formula in `T`), and the formula of a layer that changes time."""
    sizes = f"{layer.input_size} → {layer.output_size}"
    if layer.grid is not None:
        sizes += f" ({layer.grid[0]} channels × {layer.grid[1]} bins)"
    rows = [f"**{layer.name}**: `{layer.kind}`, {sizes}"]
    if layer.time is not None and layer.changes_time:
        rows += ["", f"time `{layer.time}` (reads `{layer.input_time}`)"]
    elif layer.time is None:
        rows += ["", "no time axis: after `pool`" if layer.kind != "pool"
                 else "ends time: `[T, B, F] → [B, F]`"]
    reads = _reads(layer)
    if reads:
        rows += ["", reads]
    rows += ["", "| tensor | shape |", "| --- | --- |"]
    tensors = [(f"`{layer.name}.{p.name}`", p.shape) for p in layer.parameters] + [
        (f"`{layer.name}.{b.name}` (buffer)", b.shape) for b in layer.buffers]
    for name, shape in tensors[:MAX_HOVER_ROWS]:
        rows.append(f"| {name} | `{_shape(shape)}` |")
    if len(tensors) > MAX_HOVER_ROWS:
        rows.append(f"| ... and {len(tensors) - MAX_HOVER_ROWS} more | |")
    rows.append(f"| output | `{_shape(layer.output)}` |")
    rows += ["", f"{layer.parameter_count:,} parameters"
             f" ({'batch first' if stack.batch_first else 'time first'}; "
             "`T` time, `B` batch)"]
    return "\n".join(rows)


def block_extra(block) -> str:
    """What a block's hover adds in section 10: where it reads from, and its time when that
    is not `T` (a block after a layer that changed time)."""
    parts = []
    if str(block.time) != "T":
        parts.append(f"time `{block.time}`")
    reads = _reads(block)
    if reads:
        parts.append(reads)
    return ", ".join(parts)


def stack_hover(stack) -> str:
    blocks = len(stack.blocks)
    layers = len(stack.entries) - blocks
    head = f"**stack {stack.name}**: {blocks} block{'s' if blocks != 1 else ''}"
    if layers:
        head += f", {layers} layer{'s' if layers != 1 else ''}"
    rows = [f"{head}, {stack.parameter_count:,} parameters", ""]
    if layers:
        rows += ["| entry | kind | output |", "| --- | --- | --- |"]
        for entry in stack.entries:
            kind = entry.cell if entry.recurrent else entry.kind
            rows.append(f"| `{entry.name}` | `{kind}` | `{_shape(entry.output)}` |")
    else:
        rows += ["| block | cell | output |", "| --- | --- | --- |"]
        for block in stack.blocks:
            rows.append(f"| `{block.name}` | `{block.cell}` | `{_shape(block.output)}` |")
    rows += ["", f"input `{_shape(stack.input)}`, output `{_shape(stack.output)}`"]
    for side in stack.side_inputs:
        rows.append(f"side input `{side.name}` `{_shape(side.shape)}`"
                    + (" (one per sequence)" if side.per_sequence else ""))
    if stack.min_input_time > 1:
        rows.append(f"needs T >= {stack.min_input_time}")
    return "\n".join(rows)


def side_input_hover(side) -> str:
    over = "one vector per sequence, repeated over time where it is read" if (
        side.per_sequence) else "one vector per step"
    return (f"**{side.name}**: side input `{_shape(side.shape)}` ({over}); `forward` and "
            f"`step` take it as `{side.name}=`")


def entry_hover(entry, stack, block_hover) -> str:
    if not entry.recurrent:
        return layer_hover(entry, stack)
    text = block_hover(entry, stack)
    extra = block_extra(entry)
    if extra:
        first, _, rest = text.partition("\n")
        text = f"{first}, {extra}\n{rest}"
    return text


# ----------------------------------------------------------------------------- completion


def kind_completions(completion) -> list:
    """Each layer kind, to be typed where a block's cell goes."""
    items = []
    for kind in LAYER_KINDS.values():
        required = [r.name for r in kind.arguments if r.required]
        insert = f"{kind.name}(" + ", ".join(f"{n} = " for n in required[:1]) + ")"
        items.append(completion(kind.name, "cell", f"layer ({kind.group})", insert))
    items.append(completion(INPUT, "function", "a side input: NAME = input(size)",
                            f"{INPUT}()"))
    return items


def layer_rules(kind: str | None) -> tuple | None:
    """The arguments a layer of `kind` takes, from its record, `from` included; None when
    `kind` is not a layer."""
    from rnnspec.cells.registry import ArgumentRule

    record = LAYER_KINDS.get(kind or "")
    if record is None:
        if kind == INPUT:
            return (ArgumentRule("over", "word", "time", choices=("time", "sequence"),
                                 meaning="one vector per step, or one per sequence"),)
        return None
    return (*record.arguments, ArgumentRule(
        FROM, "word", None, meaning="what the entry reads: NAME, concat(...) or sum(...)"))


def from_completions(completion, stack, names: list[str]) -> list:
    """After `from = `: the combinators, `input`, side inputs and the earlier entries."""
    items = [completion(c, "function", f"{c} the parts", f"{c}(") for c in COMBINE]
    items.append(completion(INPUT, "name", "the stack's input"))
    if stack is not None:
        items += [completion(s.name, "name", "side input") for s in stack.side_inputs]
    items += [completion(n, "name", "entry") for n in names]
    return items
