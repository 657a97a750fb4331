"""`rnnspec draw`: a stack as an SVG picture, written by hand (no system binary).

Blocks run top to bottom in order, one box each (name, cell, layers, directions,
parameter count, and the arguments that change what the block computes); every arrow
carries the shape that flows along it (input, between blocks, output; `T` and `B` stay
symbolic); each block's states, all of them, stand beside its box. A bidirectional block
that merges its directions shows the merge under its box; a residual block has an arrow
from its input around the box to a `+` on its output. Several stacks are drawn side by
side. The output is deterministic, and every name and shape reaches the SVG escaped.

Layers (section 10) are boxes of their own style: square corners and a dashed outline,
with their kind, sizes and parameter count, and the time formula of a layer that changes
time; the arrow out of an entry whose time is not `T` carries that formula under its shape.
An entry that reads `from = NAME`, `concat(...)` or `sum(...)` gets an edge from each named
entry or input, run down the left of the boxes; a stack's side inputs are drawn as inputs
under its title, where their edges start.

Nothing here depends on which cell a block runs: a box's colour comes from a stable hash
of the cell's name (so a cell keeps its colour from picture to picture), and everything
else from the checked model.
"""

from __future__ import annotations

import zlib
from xml.sax.saxutils import escape, quoteattr

from rnnspec.cells.shapes import format_shape
from rnnspec.model import SUMMARY

COLUMN = 600  # width of one stack's column
BOX_X, BOX_WIDTH, BOX_HEIGHT = 40, 300, 68
ARROW = 56  # the gap between boxes, which an arrow spans
TOP = 64  # the title's band
STATE_X = BOX_X + BOX_WIDTH + 24
STATE_ROW = 18
MERGE_HEIGHT = 20  # the merge's tag under a box
JUNCTION = 7  # radius of a residual's `+`
RESIDUAL_X = BOX_X - 18  # where a residual's arrow runs down, left of the boxes
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
# Soft fills; crc32 of `rnn`, `lstm`, `gru` lands on blue, green and orange.
PALETTE = ("#fdf1e3", "#e9f6ec", "#e8f1fb", "#f1ecf8", "#fbeaf0", "#eef5e1", "#e6f4f4",
           "#f7f3df")
RESIDUAL_COLOUR = "#2a7f62"
WIRE_COLOUR = "#1f5fa8"  # `from` edges
TIME_COLOUR = "#b35900"  # a time formula other than `T`
LAYER_HEIGHT = 56
SIDE_ROW = 20  # one side input's row under the title
# Arguments the details line already says, or that the picture shows otherwise.
_SHOWN_ELSEWHERE = ("bidirectional", "proj_size", "merge", "residual", "reverse")


def cell_fill(cell: str) -> str:
    """A box's fill: the cell's name hashed into the palette (stable across runs)."""
    return PALETTE[zlib.crc32(cell.encode("utf-8")) % len(PALETTE)]


def _text(x: float, y: float, content: str, **attributes) -> str:
    attrs = "".join(f" {k.rstrip('_').replace('_', '-')}={quoteattr(str(v))}"
                    for k, v in attributes.items())
    return f'<text x="{x:g}" y="{y:g}"{attrs}>{escape(content)}</text>'


def _arrow(x: float, y1: float, y2: float, label: str) -> list[str]:
    return [
        f'<line x1="{x:g}" y1="{y1:g}" x2="{x:g}" y2="{y2 - 2:g}" stroke="#444" '
        'stroke-width="1.5" marker-end="url(#arrow)"/>',
        _text(x + 10, (y1 + y2) / 2 + 4, label, font_family=MONO, font_size=12, fill="#333"),
    ]


def _extras(block) -> str:
    """The arguments at other than their defaults that change what the block computes
    (dropout, the regularisers, the cell's own), in the registry's words."""
    rules = block.spec.rules
    said = set(_SHOWN_ELSEWHERE)
    parts = []
    for argument, describe in SUMMARY:
        said.add(argument)
        if argument not in _SHOWN_ELSEWHERE and argument in rules \
                and block.arguments.get(argument) != rules[argument].default:
            parts.append(describe(block.arguments[argument]))
    for name in getattr(block.spec, "declared", ()):
        if name not in said:
            parts.append(f"{name} {block.arguments.get(name)}")
    return ", ".join(parts)


def _block_lines(block) -> tuple[str, str, str, str]:
    title = f"{block.name} · {block.cell}"
    layers = f"{block.num_layers} layer{'s' if block.num_layers != 1 else ''}"
    directions = "bidirectional" if block.bidirectional else \
        "reverse direction" if getattr(block, "reverse", False) else "one direction"
    details = [layers, directions, f"{block.input_size} → {block.hidden_size}"]
    if getattr(block, "proj_size", 0):
        details.append(f"proj {block.proj_size}")
    return title, ", ".join(details), _extras(block), f"{block.parameter_count:,} parameters"


def _source_text(entry) -> str:
    source = getattr(entry, "source", None)
    if source is None:
        return ""
    if source.mode == "name":
        return f"from {source.parts[0]}"
    return f"from {source.mode}({', '.join(source.parts)})"


def _entry_lines(entry) -> tuple[str, str, str, str]:
    """A block's four lines, or a layer's: its name and kind, its sizes (and where it reads
    from), its time formula if it changes time, its parameters."""
    if entry.recurrent:
        title, details, extras, count = _block_lines(entry)
        wiring = _source_text(entry)
        return title, details, ", ".join(p for p in (extras, wiring) if p), count
    details = f"{entry.input_size} → {entry.output_size}"
    if entry.grid is not None:
        details += f" ({entry.grid[0]} channels × {entry.grid[1]} bins)"
    if entry.source is not None:
        details += f", {_source_text(entry)}"
    time = f"time {entry.time}" if entry.time is not None and entry.changes_time else ""
    return (f"{entry.name} · {entry.kind}", details, time,
            f"{entry.parameter_count:,} parameters")


def _fill(entry) -> str:
    return cell_fill(entry.cell if entry.recurrent else entry.kind)


def _box_height(block, extras: str) -> float:
    if not block.recurrent:
        return LAYER_HEIGHT + (16 if extras else 0)
    return max(BOX_HEIGHT + (16 if extras else 0), 14 + STATE_ROW * len(block.states))


def _merge_tag(centre: float, y: float, merge: str) -> list[str]:
    width = 104
    return [
        f'<rect x="{centre - width / 2:g}" y="{y:g}" width="{width}" height="{MERGE_HEIGHT}" '
        'rx="10" fill="#ffffff" stroke="#555" stroke-width="1.2"/>',
        _text(centre, y + 14, f"merge: {merge}", text_anchor="middle", font_size=12,
              font_family=MONO),
    ]


def _residual(left: float, centre: float, top: float, junction: float) -> list[str]:
    """An arrow from the block's input (just above its box) around its left side to a
    `+` on its output at `junction`."""
    x = left + RESIDUAL_X
    start = top - 14
    return [
        f'<path d="M{centre:g},{start:g} H{x:g} V{junction:g} H{centre - JUNCTION - 1:g}" '
        f'fill="none" stroke="{RESIDUAL_COLOUR}" stroke-width="1.5" '
        'stroke-dasharray="5 3" marker-end="url(#residual)"/>',
        _text(x - 5, (start + junction) / 2, "residual", font_size=11, fill=RESIDUAL_COLOUR,
              text_anchor="middle", transform=f"rotate(-90 {x - 5:g} "
                                              f"{(start + junction) / 2:g})"),
        f'<circle cx="{centre:g}" cy="{junction:g}" r="{JUNCTION}" fill="#ffffff" '
        f'stroke="{RESIDUAL_COLOUR}" stroke-width="1.5"/>',
        _text(centre, junction + 4.5, "+", text_anchor="middle", font_size=13,
              font_weight="bold", fill=RESIDUAL_COLOUR),
    ]


def _counts(stack) -> str:
    blocks = sum(1 for e in stack.entries if e.recurrent)
    layers = len(stack.entries) - blocks
    text = f"{blocks} block{'s' if blocks != 1 else ''}"
    if layers:
        text += f", {layers} layer{'s' if layers != 1 else ''}"
    return text


def _wire(start: tuple[float, float], lane: float, target_y: float, box_x: float) -> str:
    """A `from` edge: from an outlet left along to `lane`, down, and right into a box."""
    x, y = start
    return (f'<path d="M{x:g},{y:g} H{lane:g} V{target_y:g} H{box_x - 2:g}" fill="none" '
            f'stroke="{WIRE_COLOUR}" stroke-width="1.3" marker-end="url(#wire)" '
            'class="wire"/>')


def _reads_previous(entry, previous) -> bool:
    source = getattr(entry, "source", None)
    return source is None or (previous is not None and previous.name in source.parts)


def _stack(stack, left: float) -> tuple[list[str], float]:
    """The SVG elements of one stack's column and the column's height."""
    centre = left + BOX_X + BOX_WIDTH / 2
    box_x = left + BOX_X
    out = [
        _text(left + BOX_X, 28, f"stack {stack.name}", font_size=17, font_weight="bold"),
        _text(left + BOX_X, 48, f"{_counts(stack)}"
              f", {stack.parameter_count:,} parameters"
              + (", batch first" if stack.batch_first else ""), font_size=12, fill="#555"),
    ]
    y = TOP
    outlets = {"input": (centre, y + 8)}  # where a `from` edge starts, by name
    for side in stack.side_inputs:
        y += SIDE_ROW
        out.append(_text(box_x + 8, y - 6, f"input {side.name} {format_shape(side.shape)}"
                         + (" (one per sequence)" if side.per_sequence else ""),
                         font_family=MONO, font_size=12, fill=WIRE_COLOUR, class_="side-input"))
        outlets[side.name] = (box_x + 4, y - 10)
    if stack.side_inputs:
        y += 8
        outlets["input"] = (centre, y + 8)
    arrow_at = len(out)  # the line of the arrow into the next box
    out += _arrow(centre, y, y + ARROW, f"input {format_shape(stack.input)}")
    y += ARROW
    lanes = 0
    previous = None
    for block in stack.entries:
        title, details, extras, count = _entry_lines(block)
        height = _box_height(block, extras)
        top = y
        if not _reads_previous(block, previous):  # the arrow above carries nothing into it
            out[arrow_at] = out[arrow_at].replace(
                'stroke="#444"', 'stroke="#bbb" stroke-dasharray="3 3"').replace(
                ' marker-end="url(#arrow)"', "")
        source = getattr(block, "source", None)
        for part in source.parts if source is not None else ():
            if previous is not None and part == previous.name or part not in outlets:
                continue
            lane = box_x - 8 - 7 * (lanes % 4)
            lanes += 1
            out.append(_wire(outlets[part], lane, top + 12 + 6 * (lanes % 3), box_x))
        if block.recurrent:
            out.append(f'<rect x="{left + BOX_X:g}" y="{y:g}" width="{BOX_WIDTH}" '
                       f'height="{height:g}" rx="8" fill="{_fill(block)}" stroke="#555" '
                       'stroke-width="1.2"/>')
        else:
            out.append(f'<rect x="{left + BOX_X:g}" y="{y:g}" width="{BOX_WIDTH}" '
                       f'height="{height:g}" rx="1" fill="{_fill(block)}" stroke="#555" '
                       'stroke-width="1.2" stroke-dasharray="6 2" class="layer"/>')
        out.append(_text(centre, y + 22, title, text_anchor="middle", font_weight="bold",
                         font_size=14))
        out.append(_text(centre, y + 41, details, text_anchor="middle", font_size=12))
        row = y + 58
        if extras:
            out.append(_text(centre, row, extras, text_anchor="middle", font_size=12))
            row += 16
        out.append(_text(centre, row, count, text_anchor="middle", font_size=11,
                         fill="#555"))
        for index, (key, shape) in enumerate(block.states.items()):
            out.append(_text(left + STATE_X, y + 26 + STATE_ROW * index,
                             f"{key} {format_shape(shape)}", font_family=MONO, font_size=12,
                             fill="#6a3d9a"))
        y += height
        outlets[block.name] = (box_x, y - 8)
        if block.merge is not None:
            out.append(f'<line x1="{centre:g}" y1="{y:g}" x2="{centre:g}" y2="{y + 6:g}" '
                       'stroke="#444" stroke-width="1.5"/>')
            out += _merge_tag(centre, y + 6, block.merge)
            y += 6 + MERGE_HEIGHT
        if block.residual:
            junction = y + 8 + JUNCTION
            out.append(f'<line x1="{centre:g}" y1="{y:g}" x2="{centre:g}" '
                       f'y2="{junction - JUNCTION:g}" stroke="#444" stroke-width="1.5"/>')
            out += _residual(left, centre, top, junction)
            y = junction + JUNCTION
        is_last = block is stack.entries[-1]
        label = ("output " if is_last else "") + format_shape(block.output)
        arrow_at = len(out)
        out += _arrow(centre, y, y + ARROW, label)
        if block.time is not None and str(block.time) != "T":
            out.append(_text(centre + 10, y + ARROW / 2 + 18, f"T' = {block.time}",
                             font_family=MONO, font_size=11, fill=TIME_COLOUR,
                             class_="time"))
        y += ARROW
        previous = block
    return out, y + 16


# The line after the XML declaration of every picture rnnspec draws: how `draw -o` knows
# that a file it is about to replace is one of its own.
DRAW_MARK = "<!-- Generated by rnnspec draw -->"


def _is_ours(head: bytes) -> bool:
    """Whether a file starting with `head` is a picture `rnnspec draw` wrote."""
    return DRAW_MARK.encode() in head[:200].split(b"\n", 2)[:2]


def draw_svg(stacks) -> str:
    """One SVG document showing `stacks` side by side."""
    columns, height = [], 0.0
    for index, stack in enumerate(stacks):
        elements, column_height = _stack(stack, index * COLUMN)
        columns += elements
        height = max(height, column_height)
    width = COLUMN * max(1, len(stacks))
    head = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        DRAW_MARK,
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:g}" '
        f'viewBox="0 0 {width} {height:g}" font-family={quoteattr(FONT)} font-size="13">',
        "<defs>",
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#444"/></marker>',
        *([f'<marker id="residual" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
           'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
           f'fill="{RESIDUAL_COLOUR}"/></marker>']
          if any(e.residual for s in stacks for e in s.entries) else []),
        *([f'<marker id="wire" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
           f'fill="{WIRE_COLOUR}"/></marker>']
          if any(getattr(e, "source", None) is not None for s in stacks for e in s.entries)
          else []),
        "</defs>",
        f'<rect x="0" y="0" width="{width}" height="{height:g}" fill="#ffffff"/>',
    ]
    return "\n".join(head + columns + ["</svg>"]) + "\n"


def run_draw(args, style) -> int:
    """`rnnspec draw FILE [--stack NAME] -o OUT.svg`."""
    import sys

    from rnnspec.check.checker import check_path
    from rnnspec.language.diagnostics import did_you_mean, render
    from rnnspec.tools.files import OutputError, write_output

    result = check_path(args.file)
    sources = {result.path: result.text.split("\n")}
    for diagnostic in result.diagnostics:
        sys.stderr.write(render(diagnostic, sources, style) + "\n\n")
    if not result.readable:
        return 2
    if not result.ok:
        return 1
    stacks = result.stacks
    if args.stack is not None:
        stacks = [s for s in stacks if s.name == args.stack]
        if not stacks:
            names = [s.name for s in result.stacks]
            hint = did_you_mean(args.stack, names) or "its stacks are " + ", ".join(
                f"`{n}`" for n in names)
            sys.stderr.write(f"{style.error('error')}: `{args.file}` has no stack "
                             f"`{args.stack}`\n{style.note('help')}: {hint}\n")
            return 2
    if not stacks:
        sys.stderr.write(f"{style.error('error')}: `{args.file}` has no stack to draw\n")
        return 1
    svg = draw_svg(stacks)
    if args.output == "-":
        sys.stdout.write(svg)
        return 0
    try:
        write_output(args.output, svg, is_ours=_is_ours, force=args.force,
                     who="rnnspec draw", verb="draw", inputs=(args.file,))
    except OutputError as exc:
        sys.stderr.write(f"{style.error('error')}: {exc}\n")
        return 2
    return 0
