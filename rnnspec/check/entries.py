"""A stack's entries in order (language reference, section 10): what each reads (the
previous entry's output, or `from = ...`), the 2-D runs, `pool` heads, side inputs and the
time formula of every entry. Blocks are derived by the stack checker's `check_block`,
layers by `check.layers.derive`.
"""

from __future__ import annotations

from rnnspec import model
from rnnspec.cells.shapes import MAX_DIMENSION, TIME, Time
from rnnspec.check.evaluate import POISON
from rnnspec.check.layers import Flow, derive
from rnnspec.language import ast
from rnnspec.language.diagnostics import Note, Span, error, warning
from rnnspec.language.names import check_name, snake_case, suggest
from rnnspec.layers import time as timing
from rnnspec.layers.kinds import COMBINE, FROM, INPUT, LAYER_KINDS
from rnnspec.records import Record


class Produced(Record):
    """An earlier entry or input, as a later entry can read it."""

    flow: Flow
    span: Span
    entry: object  # the model entry, or None for an input
    per_sequence: bool = False  # a side input `over = sequence`: one vector per sequence


def sequence(features: int, time: Time | None, batch_first: bool, grid=None) -> tuple:
    """An entry's output shape: `[T', B, F]` (`[B, T', F]`), `[T', B, C, F']` inside a 2-D
    run, `[B, F]` after `pool`."""
    if time is None:
        return ("B", features)
    tail = grid if grid is not None else (features,)
    return ("B", time, *tail) if batch_first else (time, "B", *tail)


def side_inputs(checker, stack: ast.Stack, batch_first) -> list[model.SideInput] | None:
    """`NAME = input(size)` and `NAME = input(size, over = sequence)`."""
    found = []
    for item in stack.blocks:
        if item.cell != INPUT:
            continue
        if item.name is None:
            checker.problems.append(error(
                "E108", "a side input needs a name", item.cell_span,
                help="write `NAME = input(size)`: forward takes it as `NAME = tensor`"))
            return None
        problem = check_name(item.name, item.name_span, "side input")
        if problem:
            checker.problems.append(problem)
            return None
        size = over = None
        for argument in item.arguments:
            if argument.name in (None, "size") and size is None:
                size = checker.values.in_range(
                    checker.values.typed(argument.value, "int", "`size`"),
                    argument.value.span, "`size`", 1)
            elif argument.name == "over":
                over = checker.values.typed(argument.value, "word", "`over`",
                                            ("time", "sequence"))
            else:
                checker.problems.append(error(
                    "E034", "`input` takes a size and `over = time | sequence`",
                    argument.span))
                return None
        if size is None or size is POISON or over is POISON:
            if size is None:
                checker.problems.append(error("E035", "`input` needs its size",
                                              item.cell_span, help="write `input(64)`"))
            return None
        per_sequence = over == "sequence"
        shape = ("B", size) if per_sequence else sequence(size, TIME, batch_first)
        found.append(model.SideInput(item.name, size, per_sequence, item.name_span, shape))
    return found


def split_from(entry: ast.Block) -> tuple[ast.Block, ast.Argument | None]:
    """The entry without its `from` argument, and that argument."""
    wiring = [a for a in entry.arguments if a.name == FROM]
    if not wiring:
        return entry, None
    rest = tuple(a for a in entry.arguments if a.name != FROM)
    return entry._replace(arguments=rest), wiring[-1]


class EntryChecker:
    """Derives one stack's entries in order; `entries` after `run` (None on an error)."""

    def __init__(self, checker, stack: ast.Stack, settings: dict, spans: dict,
                 sides: list[model.SideInput]):
        self.checker = checker
        self.problems = checker.problems
        self.stack = stack
        self.batch_first = settings.get("batch_first", POISON)
        self.batch_first_span = spans.get("batch_first")
        self.ids = bool(stack.blocks) and stack.blocks[0].cell == "embedding"
        features = settings.get("input_size")
        self.produced: dict[str, Produced] = {}
        if not self.ids:
            self.produced[INPUT] = Produced(
                Flow(POISON if features is None else features, TIME),
                spans.get("input_size") or stack.name_span, None)
        for side in sides:
            self.produced[side.name] = Produced(
                Flow(side.size, None if side.per_sequence else TIME), side.span, None,
                side.per_sequence)
        self.sides = {side.name for side in sides}
        self.names: dict[str, Span] = {}
        self.failed = False
        self.derived: dict[int, object] = {}  # each entry that derived, by its index

    # ------------------------------------------------------------------- the loop

    def run(self) -> list | None:
        entries: list = []
        previous: Produced | None = self.produced.get(INPUT)
        described = None  # how the previous entry's features came about, for a note
        items = [item for item in self.stack.blocks if item.cell != INPUT]
        for index, item in enumerate(items):
            item, wiring = split_from(item)
            name = self._name(item, index)
            source = None
            incoming = previous
            if wiring is not None:
                source, incoming = self._source(wiring, name)
                described = None
            derived = self._entry(item, index, name, incoming, described, source, entries)
            if derived is None:
                self.failed = True
                previous, described = None, None
                continue
            entry, flow, described = derived
            entries.append(entry)
            self.derived[index] = entry
            previous = Produced(flow, item.span, entry)
            self.produced.setdefault(name, previous)
        return None if self.failed else entries

    def _name(self, item: ast.Block, index: int) -> str:
        name = item.name if item.name is not None else snake_case(f"{item.cell}{index}")
        span = item.name_span or item.cell_span
        problem = None
        if item.name is not None:
            kind = "layer" if item.cell in LAYER_KINDS and item.cell not in self.checker.cells \
                else "block"
            problem = check_name(name, span, kind)
            if problem:
                self.problems.append(problem)
                self.failed = True  # the stack is not derived; later entries still checked
        if problem is None and (name in self.names or name in self.sides or name == INPUT):
            first = self.names.get(name) or self.produced[name].span
            self.checker._duplicate("block" if item.cell not in LAYER_KINDS else "entry",
                                    name, span, first)
            self.failed = True
        else:
            self.names[name] = span
        return name

    # ------------------------------------------------------------------- wiring

    def _source(self, wiring: ast.Argument, name: str):
        """`from = NAME`, `from = concat(...)` or `from = sum(...)`: what it reads."""
        value = wiring.value
        if isinstance(value, ast.Name):
            mode, parts = "name", (value,)
        elif isinstance(value, ast.Call) and value.name in COMBINE and value.arguments \
                and all(a.name is None and isinstance(a.value, ast.Name)
                        for a in value.arguments):
            mode, parts = value.name, tuple(a.value for a in value.arguments)
        else:
            self.problems.append(error(
                "E103", "`from` takes an earlier entry or an input: `from = NAME`, "
                "`from = concat(NAME, ...)` or `from = sum(NAME, ...)`", value.span))
            return None, None
        read = []
        for part in parts:
            found = self.produced.get(part.name)
            if found is None:
                later = part.name in self.names or any(
                    item.name == part.name for item in self.stack.blocks)
                self.problems.append(error(
                    "E103", f"`{part.name}` is " + ("a later entry: an entry reads only "
                                                    "earlier ones" if later else
                                                    "not an entry or input of this stack"),
                    part.span,
                    help=None if later else suggest(part.name, list(self.produced))))
                return None, None
            read.append((part, found))
        source = model.Source(mode, tuple(p.name for p in parts), value.span)
        if mode == "name":
            (part, found), = read
            if found.per_sequence:
                self.problems.append(error(
                    "E103", f"`{part.name}` is one vector per sequence: read it inside "
                    "`concat(...)` or `sum(...)`, which repeat it over time", part.span))
                return None, None
            return source, self._flattened(found)
        return source, self._combined(mode, read, value.span)

    def _flattened(self, found: Produced) -> Produced:
        flow = found.flow
        return found._replace(flow=Flow(flow.features, flow.time)) if flow.grid else found

    def _combined(self, mode: str, read, span: Span) -> Produced | None:
        timed = [(part, found) for part, found in read if not found.per_sequence]
        time = timed[0][1].flow.time if timed else None
        for part, found in timed[1:]:
            if found.flow.time != time:
                first = timed[0][0]
                self.problems.append(error(
                    "E104", f"the parts of `{mode}` have different times: `{first.name}` "
                    f"has {_time_text(time)}, `{part.name}` has {_time_text(found.flow.time)}",
                    span, notes=[Note(f"`{part.name}` is here", found.span)],
                    help="join parts of one time: the layers that change time must be the "
                         "same in each"))
                return None
        sizes = [found.flow.features for _, found in read]
        if POISON in sizes:
            return None
        if mode == "sum" and len(set(sizes)) > 1:
            listed = ", ".join(f"`{part.name}` {found.flow.features}" for part, found in read)
            self.problems.append(error(
                "E104", f"the parts of `sum` must have equal features: {listed}", span))
            return None
        features = sum(sizes) if mode == "concat" else sizes[0]
        return Produced(Flow(features, time), span, None)

    # ------------------------------------------------------------------- one entry

    def _entry(self, item: ast.Block, index: int, name: str, incoming: Produced | None,
               described, source, entries: list):
        kind = LAYER_KINDS.get(item.cell) if item.cell not in self.checker.cells else None
        if kind is not None and kind.name == "embedding":
            return self._embedding(item, index, name, kind, source)
        if incoming is None:  # what it reads has an error: still check its arguments
            if kind is not None:
                self._bind(item, kind)
            else:
                self.checker.check_block(item, index, POISON, None, self.batch_first,
                                         self.batch_first_span, {})
            return None
        flow = incoming.flow
        if flow.time is None and (kind is None or kind.group != "step"):
            what = "a block" if kind is None else f"`{kind.name}`"
            self.problems.append(error(
                "E106", f"{what} cannot follow `pool`: the pool ended time", item.cell_span,
                notes=[Note("time ends here", incoming.span)],
                help="after `pool` only per-step layers (linear, norms, activations, "
                     "dropout) may follow"))
            return None
        if flow.grid and not (kind is not None and (kind.group == "grid" or kind.elementwise
                                                    or kind.name == "batch_norm")):
            channels, bins = flow.grid
            setter = _grid_setter(entries) or incoming.entry
            described = (f"the features after `{setter.name}` are {channels} * "
                         f"{bins} = {flow.features}", setter.span)
            flow = Flow(flow.features, flow.time)
        if kind is None:
            return self._block(item, index, name, flow, incoming, described, source)
        return self._layer(item, index, name, kind, flow, incoming, source, entries)

    def _block(self, item, index, name, flow: Flow, incoming: Produced, described, source):
        note = described or (
            (f"`{incoming.entry.name}` gives {flow.features} features", incoming.span)
            if incoming.entry is not None and not incoming.entry.recurrent else None)
        block = self.checker.check_block(item, index, flow.features, incoming.span,
                                         self.batch_first, self.batch_first_span, {},
                                         incoming_note=note)
        if block is None:
            return None
        output = sequence(block.output_size, flow.time, self.batch_first)
        block = block._replace(output=output, source=source, position=index)
        return block, Flow(block.output_size, flow.time), None

    def _bind(self, item: ast.Block, kind):
        return self.checker.bind_values(
            item.arguments, kind.arguments, positional=True, kind="argument",
            unknown=lambda actual: self._unknown(actual, kind),
            misplaced=lambda actual, binding: self.problems.append(error(
                "E038", f"`{kind.name}` takes at most "
                f"{len([r for r in kind.arguments if not r.keyword_only])} positional "
                "arguments, in PyTorch's order" if actual.name is None else "", actual.span,
                help="name it, or move it before the keyword arguments")),
            missing=lambda rule: self.problems.append(error(
                "E035", f"`{kind.name}` needs `{rule.name}`", item.cell_span,
                help=f"write `{kind.name}({rule.name} = ...)`")))

    def _unknown(self, actual: ast.Argument, kind) -> None:
        valid = [r.name for r in kind.arguments] + [FROM]
        self.problems.append(error(
            "E034", f"unknown argument `{actual.name}` for `{kind.name}`", actual.name_span,
            help=suggest(actual.name, valid) or (
                "the arguments are " + ", ".join(f"`{v}`" for v in valid)
                if kind.arguments else f"`{kind.name}` takes only `from`")))

    def _layer(self, item, index, name, kind, flow: Flow, incoming: Produced, source,
               entries: list):
        self._torch_order(item, kind, flow)
        bound = self._bind(item, kind)
        if bound is None or bound[2] or flow.features is POISON:
            return None
        values, spans, _ = bound
        problems: list = []
        if kind.name == "pool" and not self._pool_source(values, incoming, item, spans):
            return None
        result = derive(kind, values, flow, spans, item.cell_span, problems)
        if result is None:
            self.problems.extend(problems)
            return None
        out = result.flow
        if out.features > MAX_DIMENSION or any(max(p.shape, default=0) > MAX_DIMENSION
                                               for p in result.parameters):
            self.checker._oversized(f"`{name}`'s output or weight", max(
                [out.features, *(d for p in result.parameters for d in p.shape)]),
                item.cell_span)
            return None
        output = sequence(out.features, out.time, self.batch_first, out.grid)
        layer = model.Layer(
            name=name, kind=kind.name, position=index, span=item.name_span or item.cell_span,
            input_size=flow.features, output_size=out.features, arguments=result.arguments,
            argument_spans=spans, parameters=result.parameters, buffers=result.buffers,
            output=output, parameter_count=sum(p.numel for p in result.parameters),
            kind_span=item.cell_span, source=source, grid_in=flow.grid, grid=out.grid,
            input_time=flow.time)
        return layer, out, None

    def _torch_order(self, item, kind, flow: Flow) -> None:
        """W011: arguments copied in the order of PyTorch's constructors, whose first is
        the input size that rnnspec derives: the first positional integer equals what the
        entry reads, and reading on in rnnspec's order gives `linear` an integer `bias`
        (`linear(32, 29)`), or a convolution a stride wider than its kernel, so that steps
        are never read (`conv2d(1, 32, [41, 11])`: PyTorch's out_channels read as the
        kernel, its kernel as the stride). A convolution that keeps its channels
        (`conv2d(256, 3, 1, 1)`) reads on normally and is not warned about."""
        derived = {"linear": ("in_features", flow.features, 2),
                   "conv1d": ("in_channels", flow.features, 3),
                   "conv2d": ("in_channels", flow.channels, 3)}.get(kind.name)
        positional = [self._literal(a.value) for a in item.arguments if a.name is None]
        if derived is None or flow.features is POISON or len(positional) < derived[2]:
            return
        what, size, _ = derived
        first, second = positional[:2]
        if first != size or type(second) is not int:
            return
        if kind.name != "linear":
            kernel, stride = ((v,) * 2 if type(v) is int else v for v in positional[1:3])
            if not isinstance(stride, tuple) or not any(
                    type(s) is int and s > k for s, k in zip(stride, kernel)):
                return
        output = kind.arguments[0].name
        self.problems.append(warning(
            "W011", f"this `{first}` is read as `{output}`, not as PyTorch's `{what}`",
            next(a for a in item.arguments if a.name is None).span,
            help=f"`{what}` ({size}) comes from the entry before: drop the first argument "
            f"to read `{output} = {second}`, or name the arguments to keep this reading"))

    def _literal(self, expr):
        """An integer written or named by a `let`, a pair of them as a tuple; else None
        (without a diagnostic: the binding reports what is wrong)."""
        if isinstance(expr, ast.ListValue):
            items = tuple(self._literal(e) for e in expr.items)
            return items if all(type(i) is int for i in items) else None
        if isinstance(expr, ast.Integer):
            return expr.value
        if isinstance(expr, ast.Name):
            value = self.checker.values.values.get(expr.name)
            return value if type(value) is int else None
        return None

    def _pool_source(self, values: dict, incoming: Produced, item, spans) -> bool:
        block = incoming.entry
        if values["mode"] == "final":
            if block is None or not block.recurrent:
                self.problems.append(error(
                    "E106", "`pool(final)` reads the final states of the block just before "
                    "it, but it follows " + (f"layer `{block.name}`" if block is not None
                                             else "an input"), spans["mode"],
                    help="put `pool(final)` right after a recurrent block, or pool the "
                         "outputs with `pool(last)` or `pool(mean)`"))
                return False
        elif values["mode"] == "last" and block is not None and block.recurrent \
                and block.bidirectional:
            self.problems.append(warning(
                "W010", f"`pool(last)` after bidirectional `{block.name}`: its reverse "
                "direction has seen one step at the last position", spans["mode"],
                help="`pool(final)` takes both directions' final states"))
        return True

    def _embedding(self, item, index, name, kind, source):
        if index != 0 or source is not None:
            self.problems.append(error(
                "E105", "`embedding` must be the first entry: it reads the stack's integer "
                "ids", item.cell_span,
                help="an embedding inside a network is a `linear` of one-hot inputs"))
            return None
        bound = self._bind(item, kind)
        if bound is None or bound[2]:
            return None
        values, spans, _ = bound
        problems: list = []
        result = derive(kind, values, Flow(values["num_embeddings"], TIME), spans,
                        item.cell_span, problems)
        if result is None:
            self.problems.extend(problems)
            return None
        out = result.flow
        layer = model.Layer(
            name=name, kind="embedding", position=index, span=item.name_span or item.cell_span,
            input_size=values["num_embeddings"], output_size=out.features,
            arguments=result.arguments, argument_spans=spans, parameters=result.parameters,
            buffers=(), output=sequence(out.features, TIME, self.batch_first),
            parameter_count=sum(p.numel for p in result.parameters), kind_span=item.cell_span,
            input_time=TIME)
        return layer, out, None


def _grid_setter(entries: list):
    """The entry of the 2-D run ending the list that last changed channels or bins."""
    for entry in reversed(entries):
        if entry.grid is None:
            return None
        if entry.grid_in != entry.grid:
            return entry
    return None


def _time_text(time) -> str:
    return "no time (pooled)" if time is None else f"time `{time}`"


def shortest_input(entries) -> int | None:
    """The least input length every entry accepts (at least one step each)."""
    return timing.shortest([e.time for e in entries if e.time is not None])
