"""The checker: validates a parsed spec against the cell table and derives every shape.

`derive_block` is the one place where parameter, state and output shapes are computed;
the report and the code generator only read what it produced.
"""

from __future__ import annotations

from . import ast, model
from .cells import BLOCK_ARGUMENTS, CELLS, STACK_PROPERTIES, ArgumentRule
from .diagnostics import Diagnostic, Note, Span, error, sort_key, warning
from .evaluate import POISON, Evaluator
from .names import check_name, suggest

# A warning fires when a stack's float32 parameters would need more than this: no single
# accelerator or workstation today has a terabyte of memory for one model's weights.
MEMORY_WARNING_BYTES = 2**40
# PyTorch sizes are int64: a tensor dimension beyond this cannot exist.
MAX_DIMENSION = 2**63 - 1


def derive_block(
    *, name: str, cell: str, index: int, span: Span, input_size: int, hidden_size: int,
    num_layers: int = 1, bias: bool = True, bidirectional: bool = False, dropout: float = 0.0,
    proj_size: int = 0, nonlinearity: str | None = None, batch_first: bool = False,
) -> model.Block:
    """Every shape of one block, exactly as torch.nn.RNNBase builds it."""
    spec = CELLS[cell]
    gate_rows = spec.gates * hidden_size
    directions = 2 if bidirectional else 1
    state_size = proj_size if proj_size > 0 else hidden_size
    parameters: list[model.Parameter] = []
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else directions * state_size
        for reverse in (False, True)[:directions]:
            suffix = f"_l{layer}" + ("_reverse" if reverse else "")
            shapes = [("weight_ih", (gate_rows, layer_input)),
                      ("weight_hh", (gate_rows, state_size))]
            if bias:
                shapes += [("bias_ih", (gate_rows,)), ("bias_hh", (gate_rows,))]
            if proj_size > 0:
                shapes.append(("weight_hr", (proj_size, hidden_size)))
            parameters += [model.Parameter(role + suffix, role, layer, reverse, shape)
                           for role, shape in shapes]
    states: dict[str, model.Shape] = {"h0": (directions * num_layers, "B", state_size)}
    if spec.has_cell_state:
        states["c0"] = (directions * num_layers, "B", hidden_size)
    output_size = directions * state_size
    return model.Block(
        name=name, cell=cell, torch_class=spec.torch_class, position=index, span=span,
        input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
        bidirectional=bidirectional, bias=bias, dropout=dropout, proj_size=proj_size,
        nonlinearity=nonlinearity if cell == "rnn" else None, gates=spec.gates,
        num_directions=directions, state_size=state_size, output_size=output_size,
        parameters=tuple(parameters), states=states,
        output=sequence_shape(output_size, batch_first),
        parameter_count=sum(p.numel for p in parameters),
    )


def sequence_shape(features: int, batch_first: bool) -> model.Shape:
    return ("B", "T", features) if batch_first else ("T", "B", features)


class Checker:
    """Checks one parsed file. Construct, then read `stacks` and `problems`."""

    def __init__(self, spec: ast.SpecFile):
        self.spec = spec
        self.problems: list[Diagnostic] = []
        self.stacks: dict[str, model.Stack] = {}
        self.stack_asts: dict[str, ast.Stack] = {}
        lets = self._unique(spec.lets, "constant")
        self.values = Evaluator(lets, self.problems)
        for stack in self._unique(spec.stacks, "stack").values():
            self.stack_asts[stack.name] = stack
            derived = self.derive_stack(stack)
            if derived is not None:
                self.stacks[stack.name] = derived

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

    # ------------------------------------------------------------------- stacks

    def derive_stack(self, stack: ast.Stack) -> model.Stack | None:
        settings = self._stack_properties(stack)
        if not stack.blocks:
            self.problems.append(
                error("E032", f"stack `{stack.name}` has no blocks", stack.name_span,
                      help="add a block such as `lstm(hidden_size = 128)`")
            )
        features = settings.get("input_size", POISON)
        features_span = settings.get("input_size_span")
        batch_first = settings.get("batch_first", False)
        blocks: list[model.Block | None] = []
        names: dict[str, Span] = {}
        for index, block in enumerate(stack.blocks):
            derived = self.check_block(block, index, features, features_span,
                                       batch_first is True, names)
            blocks.append(derived)
            features = derived.output_size if derived else POISON
            features_span = block.span
        if not stack.blocks or POISON in (settings.get("input_size", POISON), batch_first):
            return None
        if any(b is None for b in blocks):
            return None
        count = sum(b.parameter_count for b in blocks)
        if settings["input_size"] > MAX_DIMENSION:
            self._oversized("`input_size`", settings["input_size"], settings["input_size_span"])
        elif any(max(p.shape) > MAX_DIMENSION for b in blocks for p in b.parameters):
            pass  # already reported where the size was written
        elif count * 4 > MEMORY_WARNING_BYTES:
            self.problems.append(
                warning("W002", f"stack `{stack.name}` has {count:,} parameters: "
                        f"{format_bytes(count * 4)} in float32", stack.name_span,
                        help="check the sizes: no single device holds this much")
            )
        return model.Stack(
            name=stack.name, path=self.spec.path, span=stack.name_span,
            input_size=settings["input_size"], batch_first=batch_first, blocks=tuple(blocks),
            input=sequence_shape(settings["input_size"], batch_first),
            output=blocks[-1].output, parameter_count=count,
            input_size_span=settings.get("input_size_span"),
        )

    def _stack_properties(self, stack: ast.Stack) -> dict:
        settings: dict = {}
        first: dict[str, Span] = {}
        unknown = False
        for prop in stack.properties:
            rule = STACK_PROPERTIES.get(prop.name)
            if rule is None:
                self._unknown_property(prop)
                unknown = True
                continue
            if prop.name in first:
                self._duplicate("property", prop.name, prop.name_span, first[prop.name])
                continue
            first[prop.name] = prop.name_span
            value = self.values.typed(prop.value, rule.kind, f"`{prop.name}`")
            value = self.values.in_range(value, prop.value.span, f"`{prop.name}`", rule.minimum)
            settings[prop.name] = value
            settings[prop.name + "_span"] = prop.span
        for rule in STACK_PROPERTIES.values():
            if rule.required and rule.name not in first and not unknown:
                self.problems.append(
                    error("E031", f"stack `{stack.name}` does not set `{rule.name}`",
                          stack.name_span,
                          help=f"add `{rule.name} = N`, the features of each input step")
                )
            settings.setdefault(rule.name, rule.default if not rule.required else POISON)
        return settings

    def _oversized(self, what: str, value: int, span: Span) -> None:
        digits = len(str(value))
        self.problems.append(
            error("E023", f"{what} has {digits} digits: no tensor dimension is that large",
                  span, help=f"PyTorch sizes are int64, at most {MAX_DIMENSION:,}")
        )

    def _unknown_property(self, prop: ast.Property) -> None:
        if prop.name in BLOCK_ARGUMENTS:
            hint = f"`{prop.name}` is an argument of a block: `lstm({prop.name} = ...)`"
        else:
            hint = suggest(prop.name, STACK_PROPERTIES)
        self.problems.append(
            error("E030", f"unknown stack property `{prop.name}`", prop.name_span, help=hint)
        )

    # ------------------------------------------------------------------- blocks

    def check_block(self, block: ast.Block, index: int, incoming, incoming_span,
                    batch_first: bool, names: dict[str, Span]) -> model.Block | None:
        ok = True
        cell = CELLS.get(block.cell)
        if cell is None:
            self.problems.append(
                error("E033", f"unknown cell `{block.cell}`", block.cell_span,
                      help=suggest(block.cell, CELLS) or "the cells are `rnn`, `lstm` and `gru`")
            )
            ok = False
        name = block.name if block.name is not None else f"{block.cell}{index}"
        name_span = block.name_span or block.cell_span
        if block.name is not None:
            problem = check_name(name, name_span, "block")
            if problem:
                self.problems.append(problem)
                ok = False
        if name in names:
            self._duplicate("block", name, name_span, names[name])
            ok = False
        else:
            names[name] = name_span
        if cell is None:
            return None
        values = self._block_arguments(block, cell.name)
        if values is None:
            return None
        given = values.pop("input_size")
        if given is not None and incoming is not POISON and given != incoming:
            where = "the stack's `input_size`" if index == 0 else "the previous block's output"
            self.problems.append(
                error("E036", f"block `{name}` takes `input_size = {given}`, but receives "
                      f"{incoming} features", values.pop("input_size_span"),
                      notes=[Note(f"{where} gives {incoming} features", incoming_span)],
                      help=f"remove `input_size` (it is inferred) or make it {incoming}")
            )
            ok = False
        values.pop("input_size_span", None)
        if incoming is POISON or not ok:
            return None
        return derive_block(name=name, cell=cell.name, index=index, span=name_span,
                            input_size=incoming, batch_first=batch_first, **values)

    def _block_arguments(self, block: ast.Block, cell: str) -> dict | None:
        """The block's arguments with defaults filled in, or None after a diagnostic."""
        values: dict = {}
        spans: dict[str, Span] = {}
        positional = [a for a in block.arguments if a.name is None]
        ok = not positional
        unknown = False
        for argument in positional:
            # PyTorch's own positional order after input_size (which a block infers)
            guess = "hidden_size" if argument is positional[0] else None
            source = argument.value
            shown = str(source.value) if isinstance(source, ast.Integer) else "..."
            self.problems.append(
                error("E038", "block arguments are written with their names", argument.span,
                      help=f"write `{guess} = {shown}`" if guess else
                      "name it: the arguments are listed in docs/language.md")
            )
        for argument in block.arguments:
            if argument.name is None:
                continue
            rule = BLOCK_ARGUMENTS.get(argument.name)
            if rule is None or cell not in rule.cells:
                self._unknown_argument(argument, cell, rule)
                ok = False
                unknown = True
                continue
            if argument.name in spans:
                self._duplicate("argument", argument.name, argument.name_span,
                                spans[argument.name])
                ok = False
                continue
            spans[argument.name] = argument.span
            value = self._argument_value(argument, rule)
            ok = ok and value is not POISON
            values[argument.name] = value
        for rule in BLOCK_ARGUMENTS.values():
            if cell not in rule.cells or rule.name in spans:
                continue
            if rule.required and (positional or unknown):
                ok = False  # a positional or misspelt argument was probably meant to be this
            elif rule.required:
                self.problems.append(
                    error("E035", f"`{cell}` block needs `{rule.name}`", block.cell_span,
                          help=f"add `{rule.name} = N`: {rule.meaning}")
                )
                ok = False
            values[rule.name] = rule.default
        if not ok:
            return None
        projection = values.get("proj_size", 0)
        if projection > 0 and projection >= values["hidden_size"]:
            self.problems.append(
                error("E037", f"`proj_size` ({values['proj_size']}) must be smaller than "
                      f"`hidden_size` ({values['hidden_size']})", spans["proj_size"],
                      notes=[Note("`hidden_size` is set here", spans.get("hidden_size"))],
                      help="use `proj_size = 0` for no projection")
            )
            return None
        if values["dropout"] > 0 and values["num_layers"] == 1:
            self.problems.append(
                warning("W001", f"dropout {values['dropout']} has no effect with one layer",
                        spans["dropout"],
                        help="dropout applies between the layers of a block: set "
                             "`num_layers` above 1, or remove `dropout`")
            )
        for key in ("hidden_size", "proj_size", "input_size"):
            if isinstance(values.get(key), int) and values[key] > MAX_DIMENSION:
                # Still derived (exact counts in the report), but nothing can build it.
                self._oversized(f"`{key}`", values[key], spans[key])
        values["input_size_span"] = spans.get("input_size")
        return values

    def _argument_value(self, argument: ast.Argument, rule: ArgumentRule):
        what = f"`{argument.name}`"
        value = self.values.typed(argument.value, rule.kind, what, rule.choices)
        return self.values.in_range(value, argument.value.span, what, rule.minimum, rule.maximum)

    def _unknown_argument(self, argument: ast.Argument, cell: str, rule) -> None:
        if rule is not None:
            owners = " and ".join(f"`{c}`" for c in rule.cells)
            message = f"`{argument.name}` is not an argument of `{cell}`"
            hint = f"only {owners} {'has' if len(rule.cells) == 1 else 'have'} `{argument.name}`"
        else:
            message = f"unknown argument `{argument.name}` for `{cell}`"
            valid = [r.name for r in BLOCK_ARGUMENTS.values() if cell in r.cells]
            hint = suggest(argument.name, valid) or (
                "the arguments are " + ", ".join(f"`{v}`" for v in valid))
        self.problems.append(error("E034", message, argument.name_span, help=hint))


def check_text(text: str, path: str) -> model.CheckedFile:
    """Parse and check one spec's text: the checked model and every diagnostic."""
    from .expect import check_expectations
    from .parse import collector_paused, parse

    result = model.CheckedFile(path, text)
    with collector_paused():
        spec, problems = parse(text, path)
        if spec is not None:
            checker = Checker(spec)
            problems += checker.problems
            result.stacks = list(checker.stacks.values())
            result.expectations = check_expectations(
                spec.expects, checker.values, checker.stacks, checker.stack_asts, problems)
    result.diagnostics = sorted(problems, key=sort_key)
    return result


def check_path(path: str) -> model.CheckedFile:
    """Read and check the spec at `path`; an unreadable file gives `readable=False`."""
    from .parse import SourceError, read_source

    try:
        text = read_source(path)
    except SourceError as exc:
        return model.CheckedFile(path, exc.text, diagnostics=[exc.diagnostic], readable=False)
    return check_text(text, path)


def format_bytes(count: int) -> str:
    """A byte count in binary units: `135.9 KiB`."""
    value = float(count) if count < 2**1000 else float("inf")
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            break
        value /= 1024
    if value == float("inf"):
        return "more than any machine has"
    return f"{int(value)} B" if unit == "B" else f"{value:,.1f} {unit}"

