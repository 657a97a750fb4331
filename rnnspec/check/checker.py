"""The stack checker: binds each stack's properties and each block's arguments, looks the
block's cell up in the registry and instantiates it. Shapes come from `registry.instantiate`
only; the report and the code generator read what it produced.
"""

from __future__ import annotations

from rnnspec import model
from rnnspec.cells.registry import (
    BUILTIN_CELLS,
    STACK_PROPERTIES,
    Cell,
    instantiate,
    residual_problem,
    validate_extensions,
)
from rnnspec.cells.shapes import MAX_DIMENSION
from rnnspec.check.binder import bind
from rnnspec.check.evaluate import POISON, Evaluator
from rnnspec.language import ast
from rnnspec.language.diagnostics import Note, Sink, Span, error, sort_key, warning
from rnnspec.language.names import check_name, snake_case, suggest

# A warning fires when a stack's float32 parameters would need more than this: no single
# accelerator or workstation today has a terabyte of memory for one model's weights.
MEMORY_WARNING_BYTES = 2**40
# An error (E024) when a tensor, or a stack's tensors together, cannot be allocated at all:
# torch counts elements in int64, and a process maps at most 2^48 bytes (256 TiB: x86-64
# and ARM64 processes with 48-bit addresses, the default of Linux on both).
MAX_ELEMENTS = 2**63 - 1
ADDRESS_SPACE_BYTES = 2**48
FLOAT32_BYTES = 4


class Checker:
    """Checks one parsed file. Construct, then read `stacks`, `cells` and `problems`."""

    def __init__(self, spec: ast.SpecFile):
        self.spec = spec
        self.problems = Sink()
        self.stacks: dict[str, model.Stack] = {}
        self.stack_asts: dict[str, ast.Stack | None] = {}  # None: a syntax error dropped it
        # stacks that did not derive: (batch_first, the entries that did, by index), for
        # the language server's hover on the rest of a stack with one broken block
        self.partial: dict[str, tuple] = {}
        lets = self._unique(spec.lets, "constant")
        # definitions a syntax error dropped (reported by the parser): known by name, so
        # that nothing else reports them unknown; their values and shapes are unknown
        dropped = {(u.keyword, u.name): u for u in spec.unparsed if u.name}
        for keyword, name in dropped:
            if keyword == "let" and name not in lets:
                span = dropped[keyword, name].name_span
                lets[name] = ast.Let(name, span, ast.Invalid(span), span)
        self.values = Evaluator(lets, self.problems)
        self.cells: dict[str, Cell] = dict(BUILTIN_CELLS)
        for keyword, name in dropped:
            if keyword == "cell":
                self.cells.setdefault(name, None)
        self.broken: dict[str, Cell] = {}  # declared cells with errors: their arguments
        self.user_cells: list[Cell] = []
        self._check_cells(spec)
        for stack in self._unique(spec.stacks, "stack").values():
            if stack.name in lets:  # one namespace: the later of the two is the repeat
                first, later = sorted((stack.name_span, lets[stack.name].name_span),
                                      key=lambda span: (span.line, span.column))
                self._duplicate("name", stack.name, later, first)
            self.stack_asts[stack.name] = stack
            derived = self.check_stack(stack)
            if derived is not None:
                self.stacks[stack.name] = derived
        for keyword, name in dropped:  # `expect` of such a stack: no E040
            if keyword == "stack":
                self.stack_asts.setdefault(name, None)

    def _check_cells(self, spec: ast.SpecFile) -> None:
        cells = spec.cells
        if not cells:
            return
        from rnnspec.cells.equations import check_cell

        others = {item.name: item.name_span for item in (*spec.lets, *spec.stacks)}
        for item in self._unique(cells, "cell").values():
            if item.name.lower() in BUILTIN_CELLS:
                self.problems.append(
                    error("E012", f"cell name `{item.name}` is the built-in cell "
                          f"`{item.name.lower()}`", item.name_span,
                          help=f"choose another name, such as `My{item.name.upper()}`"))
                self.cells[item.name] = None
                continue
            if item.name in others:  # the later of the two is the repeat, wherever it is
                first, later = sorted((item.name_span, others[item.name]),
                                      key=lambda span: (span.line, span.column))
                self._duplicate("name", item.name, later, first)
                self.cells[item.name] = None
                continue
            cell, arguments = check_cell(item, self.values, self.problems)
            if cell is not None:
                self.cells[item.name] = cell
                self.user_cells.append(cell)
            else:  # known but broken: its blocks' arguments are still checked, no shapes
                self.cells[item.name] = None
                self.broken[item.name] = Cell(item.name, arguments, positional=False,
                                              parameters=(), states=())

    def _unique(self, items, kind: str) -> dict:
        """Items by name, reporting invalid names and every repeat after the first."""
        seen: dict[str, object] = {}
        for item in items:
            problem = check_name(item.name, item.name_span, kind)
            if problem:
                self.problems.append(problem)
            if item.name in seen:
                self._duplicate(kind, item.name, item.name_span, seen[item.name].name_span)
            else:
                seen[item.name] = item
        return seen

    def _duplicate(self, kind: str, name: str, span: Span, first: Span) -> None:
        self.problems.append(
            error("E011", f"{kind} `{name}` is defined twice", span,
                  notes=[Note(f"`{name}` is first defined here", first)])
        )

    # ------------------------------------------------------------------- binding

    def bind_values(self, actuals, rules: tuple, *, positional: bool, kind: str,
                    unknown, misplaced, missing) -> tuple[dict, dict, bool] | None:
        """Every rule's value (defaults filled in), where each was written, and whether
        some actual bound to nothing (reported by `unknown` and `misplaced`); None when a
        value is missing or wrong. `missing` reports a required rule that nothing set."""
        binding = bind(actuals, rules, positional=positional)
        with self.problems.watch() as step:
            for actual in binding.unknown:
                unknown(actual)
            for actual in binding.misplaced:
                misplaced(actual, binding)
            for actual, first in binding.duplicates:
                name = actual.name or next(r.name for r in rules
                                           if binding.formals.get(r.name) is first)
                self._duplicate(kind, name,
                                actual.name_span or actual.span, first.name_span or first.span)
        values: dict = {}
        spans: dict[str, Span] = {}
        guessed = bool(binding.unknown or binding.misplaced)
        for rule in rules:
            actual = binding.formals.get(rule.name)
            if actual is None:
                if rule.required and not guessed:
                    missing(rule)
                values[rule.name] = POISON if rule.required else rule.default
                continue
            spans[rule.name] = actual.span
            what = f"`{rule.name}`"
            value = self.values.typed(actual.value, rule.kind, what, rule.choices)
            values[rule.name] = self.values.in_range(value, actual.value.span, what,
                                                     rule.minimum, rule.maximum)
        if POISON in values.values():
            return None
        return values, spans, step.failed

    # ------------------------------------------------------------------- stacks

    def check_stack(self, stack: ast.Stack) -> model.Stack | None:
        from rnnspec.check import entries as flow

        ids = bool(stack.blocks) and stack.blocks[0].cell == "embedding"
        rules = tuple(STACK_PROPERTIES.values())
        if ids:  # the stack reads integer ids: no `input_size`
            rules = tuple(r._replace(required=False, default=None) if r.name == "input_size"
                          else r for r in rules)
        bound = self.bind_values(
            stack.properties, rules, positional=False,
            kind="property", unknown=self._unknown_property, misplaced=None,
            missing=lambda rule: self.problems.append(
                error("E031", f"stack `{stack.name}` does not set `{rule.name}`",
                      stack.name_span, help=f"add `{rule.name} = N`, {rule.meaning}")))
        items = [b for b in stack.blocks if b.cell != flow.INPUT]
        if not items:
            self.problems.append(
                error("E032", f"stack `{stack.name}` has no blocks", stack.name_span,
                      help="add a block such as `lstm(hidden_size = 128)`")
            )
        settings, spans, _ = bound if bound else ({}, {}, True)
        if ids and "input_size" in spans:
            self.problems.append(error(
                "E105", f"stack `{stack.name}` starts with `embedding`: it reads integer ids "
                "and has no `input_size`", spans["input_size"],
                help="remove `input_size`: `embedding(num_embeddings, embedding_dim)` says "
                     "what it reads"))
            return None
        batch_first = settings.get("batch_first", POISON)
        sides = flow.side_inputs(self, stack, batch_first)
        walker = flow.EntryChecker(self, stack, settings, spans, sides or [])
        entries = walker.run()
        if entries is None and walker.derived:
            self.partial[stack.name] = (batch_first, dict(walker.derived))
        if bound is None or not items or entries is None or sides is None:
            return None
        count = sum(e.parameter_count for e in entries)
        input_size = settings["input_size"]
        if input_size is not None and input_size > MAX_DIMENSION:
            self._oversized("`input_size`", input_size, spans["input_size"])
        elif any(max(p.shape, default=0) > MAX_DIMENSION for e in entries for p in e.parameters):
            pass  # already reported where the size was written
        elif unallocatable := allocation_problems(stack, entries):
            self.problems.extend(unallocatable)
        elif count * 4 > MEMORY_WARNING_BYTES:
            self.problems.append(
                warning("W002", f"stack `{stack.name}` has {count:,} parameters: "
                        f"{model.format_bytes(count * 4)} in float32", stack.name_span,
                        help="check the sizes: no single device holds this much")
            )
        shortest = flow.shortest_input(entries)
        if shortest is None:
            self.problems.append(error(
                "E107", f"stack `{stack.name}` accepts no input: some entry is shorter than "
                "one step for every length", stack.name_span))
            return None
        from rnnspec.cells.shapes import TIME

        shape = (("B", TIME) if batch_first else (TIME, "B")) if ids else \
            flow.sequence(input_size, TIME, batch_first)
        return model.Stack(
            name=stack.name, path=self.spec.path, span=stack.name_span,
            input_size=input_size, batch_first=batch_first, entries=tuple(entries),
            input=shape, output=entries[-1].output, parameter_count=count,
            input_size_span=spans.get("input_size"), side_inputs=tuple(sides),
            min_input_time=shortest, ids=ids,
        )

    def _oversized(self, what: str, value: int, span: Span) -> None:
        digits = len(str(value))
        self.problems.append(
            error("E023", f"{what} has {digits} digits: no tensor dimension is that large",
                  span, help=f"PyTorch sizes are int64, at most {MAX_DIMENSION:,}")
        )

    def _unknown_property(self, prop: ast.Property) -> None:
        if any(prop.name in cell.rules for cell in BUILTIN_CELLS.values()):
            hint = f"`{prop.name}` is an argument of a block: `lstm({prop.name} = ...)`"
        else:
            hint = suggest(prop.name, STACK_PROPERTIES)
        self.problems.append(
            error("E030", f"unknown stack property `{prop.name}`", prop.name_span, help=hint)
        )

    # ------------------------------------------------------------------- blocks

    def check_block(self, block: ast.Block, index: int, incoming, incoming_span,
                    batch_first, batch_first_span, names: dict[str, Span],
                    incoming_note: tuple[str, Span] | None = None) -> model.Block | None:
        """One recurrent block reading `incoming` features; the stack's entry walk
        (`check.entries`) names it and checks its name; `incoming_note` says where the
        features came from, for a block whose `input_size` disagrees."""
        with self.problems.watch() as step:
            cell = self._cell(block)
            name = block.name if block.name is not None else snake_case(f"{block.cell}{index}")
            name_span = block.name_span or block.cell_span
        if cell is None:
            cell = self.broken.get(block.cell)
            if cell is not None:  # its arguments can still be wrong on their own
                self._bind_block(block, cell)
            return None
        bound = self._bind_block(block, cell)
        if bound is None or bound[2]:
            return None
        values, spans, _ = bound
        with self.problems.watch() as rules:
            self._block_rules(cell, values, spans, batch_first, batch_first_span)
        for key, value in values.items():
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_DIMENSION:
                # Still derived (exact counts in the report), but nothing can build it.
                self._oversized(f"`{key}`", value, spans[key])
        given = values["input_size"]
        if given is not None and incoming is not POISON and given != incoming:
            where = "the stack's `input_size`" if index == 0 else "the previous block's output"
            note = incoming_note or (f"{where} gives {incoming} features", incoming_span)
            self.problems.append(
                error("E036", f"block `{name}` takes `input_size = {given}`, but receives "
                      f"{incoming} features", spans["input_size"],
                      notes=[Note(*note)],
                      help=f"remove `input_size` (it is inferred) or make it {incoming}")
            )
            return None
        if incoming is POISON or batch_first is POISON or step.failed or rules.failed:
            return None
        if cell.step is not None:
            from rnnspec.cells.equations import block_problems

            conditions = block_problems(cell, _layer_sizes(cell, values, incoming),
                                        block.cell_span, values, spans)
            if conditions:
                self.problems.extend(conditions)
                return None
        derived = instantiate(cell, values, name=name, position=index, span=name_span,
                              input_size=incoming, batch_first=batch_first, spans=spans)
        derived = derived._replace(cell_span=block.cell_span)
        problem = residual_problem(derived, incoming_span)
        if problem is not None:
            self.problems.append(problem)
            return None
        return derived

    def _bind_block(self, block: ast.Block, cell: Cell):
        return self.bind_values(
            block.arguments, cell.arguments, positional=cell.positional, kind="argument",
            unknown=lambda actual: self._unknown_argument(actual, cell),
            misplaced=lambda actual, binding: self._misplaced(actual, binding, cell),
            missing=lambda rule: self.problems.append(
                error("E035", f"`{cell.name}` block needs `{rule.name}`", block.cell_span,
                      help=f"add `{rule.name} = N`: {rule.meaning}")))

    def _cell(self, block: ast.Block) -> Cell | None:
        if block.cell in self.cells:
            return self.cells[block.cell]  # None for a cell with errors: reported there
        builtin = _torch_spelling(block.cell)
        self.problems.append(
            error("E033", f"unknown cell `{block.cell}`", block.cell_span,
                  help=(f"write `{builtin}(...)`: rnnspec's cells are lowercase" if builtin else
                        suggest(block.cell, [c for c in self.cells if self.cells[c]])
                        or "the cells are `rnn`, `lstm`, `gru` and the file's own `cell`s"))
        )
        return None

    def _block_rules(self, cell: Cell, values: dict, spans: dict, batch_first,
                     batch_first_span) -> None:
        """The rules that hold for every block, then the cell's own."""
        given = values["batch_first"]
        if given is not None and batch_first is not POISON and given != batch_first:
            stack_value = "true" if batch_first else "false"
            self.problems.append(
                error("E039", f"block sets `batch_first = {str(given).lower()}`, but its stack "
                      f"is `batch_first = {stack_value}`", spans["batch_first"],
                      notes=[Note("the stack's `batch_first` is set here", batch_first_span)]
                      if batch_first_span else [],
                      help="`batch_first` belongs to the stack: set it once there, "
                           "and remove it from the block"))
        if values["dropout"] > 0 and values["num_layers"] == 1:
            self.problems.append(
                warning("W001", f"dropout {values['dropout']} has no effect with one layer",
                        spans["dropout"],
                        help="dropout applies between the layers of a block: set "
                             "`num_layers` above 1, or remove `dropout`")
            )
        self.problems.extend(validate_extensions(values, spans))
        if cell.validate is not None:
            self.problems.extend(cell.validate(values, spans))

    def _unknown_argument(self, argument: ast.Argument, cell: Cell) -> None:
        owners = [c.name for c in self.cells.values()
                  if c is not None and argument.name in c.rules]
        if owners:
            listed = ", ".join(f"`{c}`" for c in owners[:-1]) + " and " * (len(owners) > 1) \
                + f"`{owners[-1]}`"
            message = f"`{argument.name}` is not an argument of `{cell.name}`"
            hint = f"only {listed} {'has' if len(owners) == 1 else 'have'} `{argument.name}`"
        else:
            message = f"unknown argument `{argument.name}` for `{cell.name}`"
            valid = [r.name for r in cell.arguments]
            hint = suggest(argument.name, valid) or (
                "the arguments are " + ", ".join(f"`{v}`" for v in valid))
        self.problems.append(error("E034", message, argument.name_span, help=hint))

    def _misplaced(self, argument: ast.Argument, binding, cell: Cell) -> None:
        """A positional argument that cannot bind: say what it would be, named."""
        free = [r.name for r in cell.arguments if r.name not in binding.formals]
        guess = "hidden_size" if "hidden_size" in free else (free[0] if free else None)
        if not cell.positional:  # written as PyTorch's constructor takes them
            position = binding.misplaced.index(argument)
            order = ("input_size", "hidden_size", "num_layers")
            guess = order[position] if position < len(order) else None
        source = argument.value
        shown = str(source.value) if isinstance(source, ast.Integer) else "..."
        named = f"write `{guess} = {shown}`" if guess else "remove it"
        if not cell.positional:
            message = f"`{cell.name}` takes its arguments by name"
            hint = f"arguments of a declared cell are written with their names: {named}"
        elif binding.positions and len(binding.positions) >= _positional_count(cell):
            message = f"`{cell.name}` takes at most {_positional_count(cell)} positional arguments"
            hint = "remove it"
        else:
            message = "positional argument after a keyword argument"
            hint = f"{named}, or move it before the keyword arguments (PyTorch's order)"
        self.problems.append(error("E038", message, argument.span, help=hint))


def _positional_count(cell: Cell) -> int:
    return sum(not rule.keyword_only for rule in cell.arguments)


def _layer_sizes(cell: Cell, values: dict, incoming: int) -> list[dict]:
    """The sizes a block's layers see: layer 0 reads `incoming` features, later layers
    both directions of the first state."""
    sizes = {key: value for key, value in values.items()
             if isinstance(value, int) and not isinstance(value, bool)}
    layers = [{**sizes, "input_size": incoming}]
    if values["num_layers"] > 1:
        directions = 2 if values["bidirectional"] else 1
        first = cell.states[0].size.evaluate(layers[0])
        layers.append({**sizes, "input_size": directions * first})
    return layers


def allocation_problems(stack: ast.Stack, entries) -> list:
    """E024 at each entry with a tensor that torch cannot allocate (more elements than
    int64 counts, or more float32 bytes than a process can map), else at the stack when
    its tensors together cannot be."""
    problems = []
    total = 0
    for entry in entries:
        for tensor in (*entry.parameters, *entry.buffers):
            count = tensor.numel
            total += count
            if count <= MAX_ELEMENTS and count * FLOAT32_BYTES <= ADDRESS_SPACE_BYTES:
                continue
            problems.append(error(
                "E024", f"`{tensor.name}` of `{entry.name}` cannot be allocated: "
                f"{list(tensor.shape)} is {_count(count)} elements "
                f"({model.format_bytes(count * FLOAT32_BYTES)} in float32)", entry.span,
                help=_ALLOCATION_HELP))
            break  # one entry, one error: its other tensors have the same sizes
    if not problems and total * FLOAT32_BYTES > ADDRESS_SPACE_BYTES:
        problems.append(error(
            "E024", f"the parameters of stack `{stack.name}` cannot be allocated: "
            f"{_count(total)} elements ({model.format_bytes(total * FLOAT32_BYTES)} in "
            "float32)", stack.name_span, help=_ALLOCATION_HELP))
    return problems


_ALLOCATION_HELP = ("torch counts a tensor's elements in int64 (at most 2^63 - 1) and a process "
                    "maps at most 256 TiB: check the sizes")


def _count(value: int) -> str:
    digits = len(str(value))
    return f"{value:,}" if digits <= 24 else f"a number of {digits} digits"


def _torch_spelling(name: str) -> str | None:
    """`LSTM`, `nn.GRU`: the built-in cell a PyTorch spelling means, or None."""
    lowered = name.lower()
    return lowered if lowered in BUILTIN_CELLS and lowered != name else None


def check_text(text: str, path: str) -> model.CheckedFile:
    """Parse and check one spec's text: the checked model and every diagnostic."""
    from rnnspec.check.expect import check_expectations
    from rnnspec.language.parse import collector_paused, parse_recovering

    result = model.CheckedFile(path, text)
    with collector_paused():
        spec, found = parse_recovering(text, path)
        problems = Sink(found)
        result.tree = spec
        if spec is not None:
            checker = Checker(spec)
            result.values = dict(checker.values.values)
            problems += checker.problems
            result.stacks = list(checker.stacks.values())
            result.cells = checker.user_cells
            result.partial = checker.partial
            result.expectations = check_expectations(
                spec.expects, checker.values, checker.stacks, checker.stack_asts, problems,
                checker.cells)
    result.diagnostics = sorted(problems, key=sort_key)
    return result


def check_path(path: str) -> model.CheckedFile:
    """Read and check the spec at `path`; an unreadable file gives `readable=False`."""
    from rnnspec.language.source import SourceError, read_source

    try:
        text = read_source(path)
    except SourceError as exc:
        return model.CheckedFile(path, exc.text, diagnostics=[exc.diagnostic], readable=False)
    return check_text(text, path)
