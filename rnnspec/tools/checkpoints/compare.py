"""`rnnspec check --weights`: a checkpoint compared with one stack, every difference
explained at the argument of the spec that causes it.

The comparison never looks at tensor data: names and shapes only (see `checkpoints`).
For each block, the arguments the weights reveal (cell, `hidden_size`, `proj_size`,
`num_layers`, `bidirectional`, `bias`, the input size) are solved for: among the values the
checkpoint's shapes allow, the fewest changes to the spec that explain the most tensors win.
Each changed argument is one diagnostic at the argument as written (or at the block when it
is left at its default); tensors that no argument explains are listed at the block.
"""

from __future__ import annotations

import itertools
import re

from rnnspec import model
from rnnspec.cells.registry import BUILTIN_CELLS, CELLS_BY_GATES, derive
from rnnspec.cells.shapes import format_shape
from rnnspec.language.diagnostics import Diagnostic, Note, error
from rnnspec.records import Record

# A parameter of PyTorch's recurrent modules, with the module's prefix (`encoder.rnn.`)
RECURRENT_KEY = re.compile(
    r"(?P<module>(?:.*\.)?)(?P<role>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)"
    r"_l(?P<layer>\d+)(?P<reverse>_reverse)?")
GATES = {cell.name: gates for gates, cell in CELLS_BY_GATES.items()}
SOLVED = ("cell", "hidden_size", "proj_size", "num_layers", "bidirectional", "bias",
          "input_size", "initial_state")
# `initial_state = learned`: a vector per state, layer and direction, `h0_l0`, `c0_l0`, ...
LEARNED_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*0_l\d+(?:_reverse)?")
# Far more hypotheses than any block's shapes allow; a bound on the search all the same
MAX_HYPOTHESES = 20_000

Shapes = dict[str, tuple[int, ...]]


class Comparison(Record):
    checkpoint: str
    stack: str
    prefix: str  # what precedes the block names (several blocks) or the parameter names
    detected: bool  # False when --prefix gave it
    matched: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # key, checkpoint, spec
    ignored: int  # tensors of the checkpoint outside the stack
    also: list[str]  # other prefixes that explain as many tensors
    diagnostics: list[Diagnostic]
    # each found tensor of the stack: `<entry>.<parameter>` (the generated module's
    # state_dict name) -> its key in the checkpoint; export loads through it
    keys: dict[str, str]

    def to_json(self) -> dict:
        return {
            "path": self.checkpoint, "stack": self.stack, "prefix": self.prefix,
            "prefix_detected": self.detected, "matched": self.matched,
            "missing": self.missing, "unexpected": self.unexpected,
            "mismatched": [{"key": k, "checkpoint": list(c), "spec": list(s)}
                           for k, c, s in self.mismatched],
            "ignored": self.ignored,
        }

    def text(self) -> list[str]:
        how = "detected" if self.detected else "given"
        shown = f"`{self.prefix}`" if self.prefix else "none"
        lines = [f"weights {self.checkpoint}: stack {self.stack}, key prefix {shown} ({how})"]
        if self.also:
            others = ", ".join(f"`{p}`" for p in self.also[:3])
            lines.append(f"  {others} would fit as well: --prefix chooses")
        lines.append(f"  {len(self.matched)} matched, {len(self.missing)} missing, "
                     f"{len(self.unexpected)} unexpected, {len(self.mismatched)} mismatched"
                     + (f"; {self.ignored} other tensors ignored" if self.ignored else ""))
        return lines


def _key_pattern(roles) -> re.Pattern:
    """A per-layer parameter of one of `roles` (PyTorch's, and user cells' own), with the
    module's prefix."""
    if not roles:
        return RECURRENT_KEY
    names = "|".join(re.escape(r) for r in sorted(set(roles) | set(_BUILT_IN_ROLES),
                                                  key=len, reverse=True))
    return re.compile(rf"(?P<module>(?:.*\.)?)(?P<role>{names})_l(?P<layer>\d+)"
                      rf"(?P<reverse>_reverse)?")


_BUILT_IN_ROLES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
# any per-layer parameter name, to order a block's tensors for messages
_LAYER_NAME = re.compile(r"(?P<role>.+?)_l(?P<layer>\d+)(?P<reverse>_reverse)?")


def recurrent_modules(tensors: dict, roles=()) -> dict[str, Shapes]:
    """The checkpoint's recurrent parameters by module prefix: `{"encoder.": {name: shape}}`;
    `roles`: the parameter names of user cells to look for beside PyTorch's."""
    modules: dict[str, Shapes] = {}
    pattern = _key_pattern(roles)
    for key, (shape, _dtype) in tensors.items():
        found = pattern.fullmatch(key)
        if found:
            modules.setdefault(found["module"], {})[key[len(found["module"]):]] = shape
    return modules


# ----------------------------------------------------------------------------- prefixes


def _block_prefixes(stack: model.Stack, prefix: str, modules) -> dict[str, str]:
    # a stack with layers names its block as its layers, beside them under the prefix
    if len(stack.blocks) == 1 and all(e.recurrent for e in stack.entries):
        (block,) = stack.blocks
        named = prefix + block.name + "."
        # a one-block stack also matches a bare module: `weight_ih_l0` right after the prefix
        bare_fit = _fit({block.name: prefix}, stack, modules)
        named_fit = _fit({block.name: named}, stack, modules)
        return {block.name: named if named_fit > bare_fit else prefix}
    return {block.name: prefix + block.name + "." for block in stack.blocks}


def _fit(prefixes: dict[str, str], stack: model.Stack, modules) -> tuple[int, int, int]:
    """(names found, shapes equal, minus the tensors the stack does not expect)."""
    names = shapes = extra = 0
    for block in stack.blocks:
        actual = modules.get(prefixes[block.name], {})
        for p in block.parameters:
            if p.name in actual:
                names += 1
                shapes += actual[p.name] == p.shape
        extra += len(actual) - sum(1 for p in block.parameters if p.name in actual)
    return names, shapes, -extra


def _candidates(stack: model.Stack, modules) -> set[str]:
    # a one-block stack may match a bare module (its prefix is the module's); with layers
    # its block is named beside them
    layered = not all(e.recurrent for e in stack.entries)
    if len(stack.blocks) == 1 and not layered:
        return set(modules)
    found = set()
    for module in modules:
        for block in stack.blocks:
            tail = block.name + "."
            if module == tail or module.endswith("." + tail):
                found.add(module[:-len(tail)])
    return found


def choose_prefix(stack: model.Stack, modules) -> tuple[str | None, list[str]]:
    """The prefix that explains the most tensors (then the most shapes, then the fewest
    tensors left over, then the shortest), and the others that explain exactly as much."""
    scored = []
    for prefix in _candidates(stack, modules):
        fit = _fit(_block_prefixes(stack, prefix, modules), stack, modules)
        if fit[0]:
            scored.append((fit, -len(prefix), prefix))
    if not scored:
        return None, []
    scored.sort(reverse=True)
    best = scored[0]
    return best[2], sorted(p for fit, _, p in scored[1:] if fit == best[0])


# ----------------------------------------------------------------------------- solving


def _spec_values(block: model.Block) -> dict:
    values = {"cell": block.cell, "hidden_size": block.hidden_size,
              "proj_size": block.proj_size, "num_layers": block.num_layers,
              "bidirectional": block.bidirectional, "bias": block.bias,
              "input_size": block.input_size,
              "initial_state": block.arguments.get("initial_state", "zeros")}
    values.update((name, block.arguments[name]) for name in block.spec.declared)
    return values


def _is_user(block: model.Block) -> bool:
    return block.spec.step is not None


def _solve_user(block: model.Block, actual: Shapes) -> tuple[dict, Shapes]:
    """A user cell's sizes as the checkpoint's tensors give them (`infer.match_cell`):
    ({argument: checkpoint's value}, the shapes then), or no change when nothing fits."""
    from rnnspec.tools.checkpoints.infer import cell_shape, match_cell

    expected = {p.name: p.shape for p in block.parameters}
    if expected == actual:
        return {}, expected
    matched = match_cell(actual, cell_shape(block.spec))
    if matched is None:
        return {}, expected
    arguments, input_size = matched
    found = {"num_layers": 1, "bidirectional": False, **arguments, "input_size": input_size}
    spec = _spec_values(block)
    changes = {name: value for name, value in found.items() if spec.get(name) != value}
    values = {k: v for k, v in block.arguments.items() if k != "input_size"}
    values.update((k, v) for k, v in changes.items() if k != "input_size")
    derived = derive(block.spec, input_size=found["input_size"], name=block.name,
                     position=block.position, span=block.span, **values)
    return changes, {p.name: p.shape for p in derived.parameters}


def _derive(block: model.Block, values: dict) -> Shapes | None:
    """The parameter shapes of `block` with `values` instead of its arguments, or None."""
    cell = BUILTIN_CELLS[values["cell"]]
    if values["proj_size"] and ("proj_size" not in cell.rules
                                or values["proj_size"] >= values["hidden_size"]):
        return None
    projection = {"proj_size": values["proj_size"]} if "proj_size" in cell.rules else {}
    derived = derive(
        cell, name=block.name, position=block.position, span=block.span,
        input_size=values["input_size"], hidden_size=values["hidden_size"],
        num_layers=values["num_layers"], bias=values["bias"],
        bidirectional=values["bidirectional"], initial_state=values["initial_state"],
        **projection)
    return {p.name: p.shape for p in derived.parameters}


def _differences(expected: Shapes, actual: Shapes) -> int:
    return (sum(1 for k in expected if actual.get(k) != expected[k])
            + sum(1 for k in actual if k not in expected))


def _options(block: model.Block, actual: Shapes) -> dict[str, list]:
    """For each solved argument: the spec's value first, then what the shapes allow."""
    spec = _spec_values(block)
    learned = any(_is_learned(block, name) for name in actual)
    actual = {name: shape for name, shape in actual.items() if not _is_learned(block, name)}
    rows = {shape[0] for name, shape in actual.items()
            if not name.startswith("weight_hr") and shape}
    layer0 = {name: shape for name, shape in actual.items()
              if _LAYER_NAME.fullmatch(name)["layer"] == "0"} or actual
    hidden = {r // g for r in rows for g in GATES.values() if r % g == 0 and r}
    projections = {0}
    for name, shape in actual.items():
        if name.startswith("weight_hr") and len(shape) == 2:
            hidden.add(shape[1])
            projections.add(shape[0])
        if name.startswith("weight_hh") and len(shape) == 2:
            hidden.add(shape[1])
            projections.add(shape[1])
    layers = {int(_LAYER_NAME.fullmatch(n)["layer"]) + 1 for n in actual}
    inputs = {shape[1] for name, shape in layer0.items()
              if name.startswith("weight_ih") and len(shape) == 2 and shape[1] > 0}
    found = {
        "cell": {c for c, g in GATES.items() if any(r % g == 0 for r in rows)},
        "hidden_size": {h for h in hidden if h > 0},
        "proj_size": projections,
        "num_layers": {max(layers)} if layers else set(),
        "bidirectional": {any(n.endswith("_reverse") for n in actual)},
        "bias": {any(n.startswith("bias") for n in actual)},
        "input_size": inputs,
        "initial_state": {"learned" if learned else "zeros"},
    }
    return {key: [spec[key]] + sorted(found[key] - {spec[key]}, key=str) for key in SOLVED}


def _is_learned(block: model.Block, name: str) -> bool:
    """Whether a block's tensor `name` is a learned initial state (`h0_l0`, `c0_l1_reverse`)."""
    found = _LAYER_NAME.fullmatch(name)
    return found is not None and found["role"] in {f"{s}0" for s in (*block.state_names, "h", "c")}


def solve(block: model.Block, actual: Shapes) -> tuple[dict, Shapes]:
    """The fewest argument changes that leave the fewest tensors unexplained:
    ({argument: checkpoint's value}, the shapes the block would then have)."""
    if _is_user(block):
        return _solve_user(block, actual)
    spec = _spec_values(block)
    expected = _derive(block, spec)
    if _differences(expected, actual) == 0:
        return {}, expected
    options = _options(block, actual)
    best = (_differences(expected, actual), 0, {}, expected)
    tried = 0
    # by number of changed arguments, so the first perfect fit found is the simplest
    for count in range(1, len(SOLVED) + 1):
        for changed in itertools.combinations(SOLVED, count):
            pools = [options[key][1:] for key in changed]
            for picked in itertools.product(*pools):
                tried += 1
                if tried > MAX_HYPOTHESES:
                    return best[2], best[3]
                values = dict(spec, **dict(zip(changed, picked)))
                shapes = _derive(block, values)
                if shapes is None:
                    continue
                score = _differences(shapes, actual)
                if score < best[0]:
                    best = (score, count, dict(zip(changed, picked)), shapes)
        if best[0] == 0:
            break
    return best[2], best[3]


# ----------------------------------------------------------------------------- diagnostics


def _word(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _article(cell: str) -> str:
    """`a gru`, `an lstm`, `an rnn`: as the name is spoken, letter by letter when it has
    no vowel to say it by."""
    spoken = cell[0] in "aeiou" or (cell[0] in "fhlmnrsx" and not set(cell) & set("aeiou"))
    return "an" if spoken else "a"


def _evidence(block: model.Block, argument: str, value, actual: Shapes,
              changes: dict) -> Note | None:
    """The tensor(s) of the checkpoint that show the argument's value."""
    if _is_user(block) and argument not in ("num_layers", "bidirectional"):
        # the first tensor whose declared shape holds the argument, mismatched if one is
        expected = {p.name: p.shape for p in block.parameters}
        roles = {t.role for t in block.spec.parameters
                 if any(argument in d.names for d in t.dims)}
        shown = [n for n in sorted(actual, key=_tensor_order)
                 if _LAYER_NAME.fullmatch(n)["role"] in roles]
        shown.sort(key=lambda n: expected.get(n) == actual[n])
        if not shown:
            return None
        name = shown[0]
        if name in expected and expected[name] != actual[name]:
            return Note(f"`{name}` is {format_shape(actual[name])} in the checkpoint, the "
                        f"spec derives {format_shape(expected[name])}")
        return Note(f"`{name}` is {format_shape(actual[name])} in the checkpoint")
    values = dict(_spec_values(block), **changes)
    cell, hidden = values["cell"], values["hidden_size"]
    present = sorted(actual, key=_tensor_order)
    if argument == "input_size" and "weight_ih_l0" in actual:
        return Note(f"`weight_ih_l0` has {value} columns")
    if argument in ("hidden_size", "cell"):
        if argument == "hidden_size" and values["proj_size"] and "weight_hr_l0" in actual:
            return Note(f"`weight_hr_l0` has {value} columns")
        for name in present:
            if name.startswith(("weight_ih", "weight_hh", "bias")) and actual[name]:
                gates = GATES[cell]
                return Note(f"`{name}` has {actual[name][0]} rows = {gates} × {hidden} "
                            f"({gates} gate{'s' if gates > 1 else ''}, as in "
                            f"{_article(cell)} `{cell}`)")
    if argument == "proj_size":
        return Note(f"`weight_hr_l0` has {value} rows" if value
                    else "the checkpoint has no `weight_hr_l0`")
    if argument == "num_layers":
        last = [n for n in present if _LAYER_NAME.fullmatch(n)["layer"] == str(value - 1)]
        if last:
            return Note(f"the checkpoint's last layer is {value - 1}: `{last[0]}`")
    if argument == "bidirectional":
        reverse = [n for n in present if n.endswith("_reverse")]
        return Note(f"the checkpoint has `{reverse[0]}`" if reverse
                    else "the checkpoint has no `_reverse` tensors")
    if argument == "initial_state":
        learned = sorted((n for n in present if _is_learned(block, n)),
                         key=lambda n: not n.startswith("h0"))
        return Note(f"the checkpoint has `{learned[0]}`" if learned
                    else "the checkpoint has no learned initial states (`h0_l0`, ...)")
    if argument == "bias":
        biases = [n for n in present if n.startswith("bias")]
        return Note(f"the checkpoint has `{biases[0]}`" if biases
                    else "the checkpoint has no `bias_ih` or `bias_hh` tensors")
    return None


def _tensor_order(name: str):
    found = _LAYER_NAME.fullmatch(name)
    if found is None:
        return (0, False, 1, name)
    role = found["role"]
    known = _BUILT_IN_ROLES.index(role) if role in _BUILT_IN_ROLES else len(_BUILT_IN_ROLES)
    return (int(found["layer"]), bool(found["reverse"]), known, role)


class _Explainer:
    def __init__(self, result: model.CheckedFile, stack: model.Stack):
        self.result = result
        self.stack = stack
        self.problems: list[Diagnostic] = []

    def changed(self, block: model.Block, argument: str, value, actual: Shapes,
                changes: dict, previous: model.Block | None) -> None:
        spec = _spec_values(block)[argument]
        written = block.argument_spans.get(argument)
        evidence = _evidence(block, argument, value, actual, changes)
        notes = [evidence] if evidence else []
        if argument == "cell":
            self.problems.append(error(
                "E061", f"the checkpoint's block `{block.name}` is {_article(value)} "
                f"`{value}`, the spec says `{spec}`", block.cell_span or block.span,
                notes=notes,
                help=f"the checkpoint implies `{value}(...)`"))
            return
        if argument == "input_size":
            self._input_size(block, value, spec, written, notes, previous)
            return
        if written is not None:
            message = (f"the checkpoint was trained with `{argument} = {_word(value)}`, "
                       f"the spec says {_word(spec)}")
            span, hint = written, f"the checkpoint implies `{argument} = {_word(value)}`"
        else:
            message = (f"the checkpoint was trained with `{argument} = {_word(value)}`, "
                       f"the spec leaves the default {_word(spec)}")
            span, hint = block.span, f"add `{argument} = {_word(value)}` to block `{block.name}`"
        self.problems.append(error("E060", message, span, notes=notes, help=hint))

    def _input_size(self, block, value, spec, written, notes, previous) -> None:
        if previous is None:
            span = self.stack.input_size_span or self.stack.span
            self.problems.append(error(
                "E060", f"the checkpoint's block `{block.name}` takes {value} features, the "
                f"stack's `input_size` is {spec}", span, notes=notes,
                help=f"the checkpoint implies `input_size = {value}`"))
            return
        span = written if written is not None else block.span
        notes.append(Note(f"block `{previous.name}` gives {spec} features", previous.span))
        self.problems.append(error(
            "E060", f"the checkpoint's block `{block.name}` takes {value} features, the spec "
            f"gives it {spec}", span, notes=notes,
            help=f"make block `{previous.name}` give {value} features, as in the checkpoint"))

    def unexplained(self, block: model.Block, expected: Shapes, actual: Shapes,
                    key_prefix: str) -> None:
        notes = []
        for name in sorted(set(expected) | set(actual), key=_tensor_order):
            key = f"`{key_prefix}{name}`"
            if name not in actual:
                notes.append(Note(f"{key} {format_shape(expected[name])} is missing from "
                                  "the checkpoint"))
            elif name not in expected:
                notes.append(Note(f"{key} {format_shape(actual[name])} is in the checkpoint, "
                                  "the spec derives no such tensor"))
            elif actual[name] != expected[name]:
                notes.append(Note(f"{key} is {format_shape(actual[name])} in the checkpoint, "
                                  f"the spec derives {format_shape(expected[name])}"))
        if not notes:
            return
        count = len(notes)
        if count > 8:
            notes = notes[:8] + [Note(f"and {count - 8} more")]
        self.problems.append(error(
            "E062", f"{count} tensor{'s' if count > 1 else ''} of block `{block.name}` "
            f"{'do' if count > 1 else 'does'} not match the checkpoint", block.span,
            notes=notes,
            help="no argument of the block explains this: the checkpoint was saved from a "
                 "different module or edited"))

    def missing_block(self, block: model.Block, key_prefix: str, strays: list[str]) -> None:
        notes = [Note(f"looked for `{key_prefix}{block.parameters[0].name}` and the "
                      f"other {len(block.parameters) - 1} tensors of the block")]
        if strays:
            notes.append(Note("recurrent weights no block claims: "
                              + ", ".join(f"`{s}`" for s in strays[:4])))
        self.problems.append(error(
            "E063", f"block `{block.name}` has no tensors in the checkpoint", block.span,
            notes=notes, help="name the block as its module is named in the checkpoint"))


def compare(result: model.CheckedFile, stack: model.Stack, tensors: dict, checkpoint: str,
            prefix: str | None = None) -> Comparison:
    """Compare a checkpoint's tensors with a checked stack; diagnostics in the result."""
    roles = {p.role for block in stack.blocks if _is_user(block) for p in block.parameters}
    # learned initial states, which a spec without them must still see (as unexpected)
    roles |= {"h0", "c0"} | {f"{s}0" for block in stack.blocks for s in block.state_names}
    modules = recurrent_modules(tensors, roles)
    explain = _Explainer(result, stack)
    detected = prefix is None
    also: list[str] = []
    if detected:
        prefix, also = choose_prefix(stack, modules)
    if prefix is None or not _fit(_block_prefixes(stack, prefix, modules), stack, modules)[0]:
        found = sorted(modules)
        notes = ([Note("its recurrent modules: " + ", ".join(f"`{m or '(no prefix)'}`"
                                                               for m in found[:6]))]
                 if found else [Note("it holds no recurrent weights (`weight_ih_l0`, ...)")])
        given = "" if detected else f" under the prefix `{prefix}`"
        explain.problems.append(error(
            "E064", f"no tensor of the checkpoint{given} matches stack `{stack.name}`",
            stack.span, notes=notes,
            help="give the prefix with --prefix, or name the blocks as the checkpoint does"))
        return Comparison(checkpoint, stack.name, prefix or "", detected, [], [
            prefix_key for b in stack.blocks for prefix_key in
            (f"{b.name}.{p.name}" for p in b.parameters)], [], [], len(tensors), [],
            explain.problems, {})
    prefixes = _block_prefixes(stack, prefix, modules)
    claimed = set(prefixes.values())
    strays = sorted(m for m in modules if m not in claimed and m.startswith(prefix))
    matched, missing, unexpected, mismatched = [], [], [], []
    keys: dict[str, str] = {}
    compared = 0
    previous: model.Block | None = None
    previous_change: dict = {}
    for block in stack.blocks:
        key_prefix = prefixes[block.name]
        actual = modules.get(key_prefix, {})
        compared += len(actual)
        expected = {p.name: p.shape for p in block.parameters}
        for name, shape in expected.items():
            key = key_prefix + name
            if name in actual:
                keys[f"{block.name}.{name}"] = key
            if name not in actual:
                missing.append(key)
            elif actual[name] == shape:
                matched.append(key)
            else:
                mismatched.append((key, actual[name], shape))
        unexpected += [key_prefix + name for name in actual if name not in expected]
        if not actual:
            explain.missing_block(block, key_prefix, strays)
            previous, previous_change = block, {}
            continue
        changes, shapes = solve(block, actual)
        for argument, value in changes.items():
            if argument == "input_size" and previous is not None and previous_change:
                # the previous block's own change already explains these features
                if _output_size(previous, previous_change) == value:
                    continue
            explain.changed(block, argument, value, actual, changes, previous)
        explain.unexplained(block, shapes, actual, key_prefix)
        previous, previous_change = block, changes
    if len(stack.entries) != len(stack.blocks):
        from rnnspec.tools.checkpoints.layers import compare_layers

        compared += compare_layers(stack, tensors, prefix, (matched, missing, mismatched),
                                   explain.problems, keys)
    return Comparison(checkpoint, stack.name, prefix, detected, matched, missing, unexpected,
                      mismatched, len(tensors) - compared, also, explain.problems, keys)


def _output_size(block: model.Block, changes: dict) -> int:
    values = dict(_spec_values(block), **changes)
    if _is_user(block):
        sizes = {k: v for k, v in block.arguments.items()
                 if isinstance(v, int) and not isinstance(v, bool)}
        sizes.update((k, v) for k, v in values.items()
                     if isinstance(v, int) and not isinstance(v, bool))
        state = block.spec.states[0].size.evaluate(sizes)
        return (2 if values["bidirectional"] else 1) * state
    state = values["proj_size"] or values["hidden_size"]
    return (2 if values["bidirectional"] else 1) * state


def attach(result: model.CheckedFile, stack: model.Stack, tensors: dict, checkpoint: str,
           prefix: str | None = None) -> Comparison:
    """`compare`, with its diagnostics added to the result's (in source order)."""
    from rnnspec.language.diagnostics import sort_key

    comparison = compare(result, stack, tensors, checkpoint, prefix)
    result.diagnostics = sorted(result.diagnostics + comparison.diagnostics, key=sort_key)
    return comparison


def stack_for(result: model.CheckedFile, name: str | None) -> tuple[model.Stack | None, str]:
    """The stack to compare: the named one, or the only one; else (None, why)."""
    names = [s.name for s in result.stacks]
    if name is not None:
        for stack in result.stacks:
            if stack.name == name:
                return stack, ""
        return None, (f"no stack `{name}` in `{result.path}`" +
                      (f": its stacks are {', '.join(f'`{n}`' for n in names)}" if names else ""))
    if len(result.stacks) == 1:
        return result.stacks[0], ""
    return None, (f"`{result.path}` has {len(names)} stacks "
                  f"({', '.join(f'`{n}`' for n in names)}): choose one with --stack")


__all__ = ["attach", "compare", "Comparison", "recurrent_modules", "choose_prefix", "solve",
           "stack_for"]
