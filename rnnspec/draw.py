"""`rnnspec draw`: a stack as an SVG picture, written by hand (no system binary).

Blocks run top to bottom in order, one box each (name, cell, layers, directions,
parameter count); every arrow carries the shape that flows along it (input, between
blocks, output; `T` and `B` stay symbolic); each block's states stand beside its box.
Several stacks are drawn side by side. The output is deterministic, and every name and
shape reaches the SVG escaped.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from .shapes import format_shape

COLUMN = 600  # width of one stack's column
BOX_X, BOX_WIDTH, BOX_HEIGHT = 40, 300, 68
ARROW = 56  # the gap between boxes, which an arrow spans
TOP = 64  # the title's band
STATE_X = BOX_X + BOX_WIDTH + 24
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
CELL_FILL = {"rnn": "#e8f1fb", "lstm": "#e9f6ec", "gru": "#fdf1e3"}
OTHER_FILL = "#f1ecf8"


def _text(x: float, y: float, content: str, **attributes) -> str:
    attrs = "".join(f" {k.replace('_', '-')}={quoteattr(str(v))}"
                    for k, v in attributes.items())
    return f'<text x="{x:g}" y="{y:g}"{attrs}>{escape(content)}</text>'


def _arrow(x: float, y1: float, y2: float, label: str) -> list[str]:
    return [
        f'<line x1="{x:g}" y1="{y1:g}" x2="{x:g}" y2="{y2 - 2:g}" stroke="#444" '
        'stroke-width="1.5" marker-end="url(#arrow)"/>',
        _text(x + 10, (y1 + y2) / 2 + 4, label, font_family=MONO, font_size=12, fill="#333"),
    ]


def _block_lines(block) -> tuple[str, str, str]:
    title = f"{block.name} · {block.cell}"
    layers = f"{block.num_layers} layer{'s' if block.num_layers != 1 else ''}"
    directions = "bidirectional" if block.bidirectional else "one direction"
    details = [layers, directions, f"{block.input_size} → {block.hidden_size}"]
    if getattr(block, "proj_size", 0):
        details.append(f"proj {block.proj_size}")
    return title, ", ".join(details), f"{block.parameter_count:,} parameters"


def _stack(stack, left: float) -> tuple[list[str], float]:
    """The SVG elements of one stack's column and the column's height."""
    centre = left + BOX_X + BOX_WIDTH / 2
    out = [
        _text(left + BOX_X, 28, f"stack {stack.name}", font_size=17, font_weight="bold"),
        _text(left + BOX_X, 48, f"{len(stack.blocks)} block{'s' if len(stack.blocks) != 1 else ''}"
              f", {stack.parameter_count:,} parameters"
              + (", batch first" if stack.batch_first else ""), font_size=12, fill="#555"),
    ]
    y = TOP
    out += _arrow(centre, y, y + ARROW, f"input {format_shape(stack.input)}")
    y += ARROW
    for block in stack.blocks:
        title, details, count = _block_lines(block)
        fill = CELL_FILL.get(block.cell, OTHER_FILL)
        out.append(f'<rect x="{left + BOX_X:g}" y="{y:g}" width="{BOX_WIDTH}" '
                   f'height="{BOX_HEIGHT}" rx="8" fill="{fill}" stroke="#555" '
                   'stroke-width="1.2"/>')
        out.append(_text(centre, y + 22, title, text_anchor="middle", font_weight="bold",
                         font_size=14))
        out.append(_text(centre, y + 41, details, text_anchor="middle", font_size=12))
        out.append(_text(centre, y + 58, count, text_anchor="middle", font_size=11,
                         fill="#555"))
        for row, (key, shape) in enumerate(block.states.items()):
            out.append(_text(left + STATE_X, y + 26 + 18 * row,
                             f"{key} {format_shape(shape)}", font_family=MONO, font_size=12,
                             fill="#6a3d9a"))
        y += BOX_HEIGHT
        is_last = block is stack.blocks[-1]
        label = ("output " if is_last else "") + format_shape(block.output)
        out += _arrow(centre, y, y + ARROW, label)
        y += ARROW
    return out, y + 16


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
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:g}" '
        f'viewBox="0 0 {width} {height:g}" font-family={quoteattr(FONT)} font-size="13">',
        "<defs>",
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#444"/></marker>',
        "</defs>",
        f'<rect x="0" y="0" width="{width}" height="{height:g}" fill="#ffffff"/>',
    ]
    return "\n".join(head + columns + ["</svg>"]) + "\n"


def run_draw(args, style) -> int:
    """`rnnspec draw FILE [--stack NAME] -o OUT.svg`."""
    import sys

    from .check import check_path
    from .diagnostics import did_you_mean, render
    from .fmt import write_atomically

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
        write_atomically(args.output, svg)
    except OSError as exc:
        sys.stderr.write(f"{style.error('error')}: cannot write `{args.output}`: "
                         f"{exc.strerror or exc}\n")
        return 2
    return 0
