"""`rnnspec infer`: a spec describing every recurrent module of a checkpoint.

The tensors are grouped by module prefix (`encoder.rnn.weight_ih_l0` belongs to
`encoder.rnn.`); each group of PyTorch's recurrent parameters becomes a one-block stack:

- the cell from the gate ratio: `weight_hh_l0` has gates × hidden rows (1: rnn, 3: gru,
  4: lstm); the hidden size is `weight_hh_l0`'s columns, or `weight_hr_l0`'s columns when a
  projection is present (whose rows are `proj_size`);
- `num_layers` from the highest `_l{k}`, `bidirectional` from `_reverse`, `bias` from
  `bias_ih`/`bias_hh`, `input_size` from `weight_ih_l0`'s columns;
- `initial_state = learned` from learned initial states, `h0_l0` (and `c0_l0`, ...: a
  vector per state, layer and direction).

What the weights cannot tell (`dropout`, `batch_first`, an rnn's `nonlinearity`) is written
as a comment, never as a fact. Groups of other parameter names are matched against user
cells (`match_cell`), given as `CellShape`s.
"""

from __future__ import annotations

import ast as python_ast
import os
import re

from rnnspec.cells.registry import BUILTIN_CELLS, CELLS_BY_GATES, derive
from rnnspec.cells.shapes import Size, quotient, symbols
from rnnspec.language.diagnostics import Span
from rnnspec.language.names import Namespace, check_name
from rnnspec.records import Record

HEADER_MARK = "# Written by rnnspec infer"
CELL_NAMES = {gates: cell.name for gates, cell in CELLS_BY_GATES.items()}
# Any per-layer parameter: `<module><name>_l<k>[_reverse]`
LAYER_KEY = re.compile(r"(?P<module>(?:.*\.)?)(?P<name>[A-Za-z_]\w*?)_l(?P<layer>\d+)"
                       r"(?P<reverse>_reverse)?")
BUILT_IN_ROLES = frozenset({"weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"})
_NOWHERE = Span("<checkpoint>", 1, 1, 1, 1)


class InferError(Exception):
    """Nothing to write (exit status 1) or the output cannot be written (exit status 2)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class CellShape(Record):
    """What `infer --cells` needs of a user cell (section 8 of the language)."""

    name: str
    # param name -> dims: `Size`s (a checked cell) or as written: ("4 * hidden_size",)
    parameters: dict[str, tuple[Size | str, ...]]
    first_state: Size | str  # the size of the first state: `hidden_size`
    arguments: tuple[str, ...] = ()  # declared size arguments beyond hidden_size
    source: str = ""  # the cell's text, copied into the written spec
    states: tuple[str, ...] = ()  # the states' names: `h0_l0` is a learned initial state
    numbers: tuple[tuple[str, float], ...] = ()  # number arguments and their defaults


class Module(Record):
    prefix: str
    cell: str
    arguments: dict  # as they are written in the block
    input_size: int
    dtype: str
    tensors: int


# ----------------------------------------------------------------------------- grouping


def group_modules(tensors: dict) -> dict[str, dict[str, tuple[tuple[int, ...], str]]]:
    """Per-layer tensors by module prefix, in the checkpoint's order."""
    groups: dict[str, dict] = {}
    for key, value in tensors.items():
        found = LAYER_KEY.fullmatch(key)
        if found:
            groups.setdefault(found["module"], {})[key[len(found["module"]):]] = value
    return groups


def _derived(cell, input_size, hidden_size, num_layers, bias, bidirectional, proj_size,
             initial_state="zeros"):
    spec = BUILTIN_CELLS[cell]
    projection = {"proj_size": proj_size} if "proj_size" in spec.rules else {}
    block = derive(spec, span=_NOWHERE, input_size=input_size, hidden_size=hidden_size,
                   num_layers=num_layers, bias=bias, bidirectional=bidirectional,
                   initial_state=initial_state, **projection)
    return {p.name: p.shape for p in block.parameters}


def _split_learned(params: dict, states) -> tuple[dict, bool]:
    """(the per-layer weights, whether learned initial states `<state>0_l<k>` are there)."""
    roles = {f"{state}0" for state in states}
    learned = {n for n in params if LAYER_KEY.fullmatch(n)["name"] in roles}
    return {n: shape for n, shape in params.items() if n not in learned}, bool(learned)


def infer_built_in(params: dict[str, tuple[int, ...]]) -> tuple[str, dict, int] | str:
    """(cell, arguments, input_size) of an nn.RNN/LSTM/GRU's parameters, or why not."""
    everything = params
    params, learned = _split_learned(params, ("h", "c"))
    roles = {LAYER_KEY.fullmatch(n)["name"] for n in params}
    if not roles <= BUILT_IN_ROLES:
        return "not the parameters of nn.RNN, nn.LSTM or nn.GRU"
    for needed in ("weight_ih_l0", "weight_hh_l0"):
        if needed not in params or len(params[needed]) != 2:
            return f"no two-dimensional `{needed}`"
    rows, columns = params["weight_hh_l0"]
    proj = 0
    hidden = columns
    if "weight_hr_l0" in params:
        if len(params["weight_hr_l0"]) != 2:
            return "`weight_hr_l0` is not two-dimensional"
        proj, hidden = params["weight_hr_l0"]
    if hidden < 1 or rows % hidden or rows // hidden not in CELL_NAMES:
        counts = ", ".join(str(g) for g in sorted(CELL_NAMES))
        return (f"`weight_hh_l0` has {rows} rows for a hidden size of {hidden}: not {counts} "
                "gates")
    cell = CELL_NAMES[rows // hidden]
    if proj and ("proj_size" not in BUILTIN_CELLS[cell].rules or proj >= hidden):
        return "`weight_hr_l0` fits no nn.LSTM projection"
    layers = 1 + max(int(LAYER_KEY.fullmatch(n)["layer"]) for n in params)
    bidirectional = any(n.endswith("_reverse") for n in params)
    bias = any(n.startswith("bias") for n in params)
    input_size = params["weight_ih_l0"][1]
    if input_size < 1:
        return "`weight_ih_l0` has no columns"
    initial = "learned" if learned else "zeros"
    expected = _derived(cell, input_size, hidden, layers, bias, bidirectional, proj, initial)
    if expected != everything:
        odd = sorted(set(expected) ^ set(everything)) or [
            n for n in expected if expected[n] != everything[n]]
        return f"its tensors do not form one module (`{odd[0]}` does not fit)"
    arguments: dict = {"hidden_size": hidden}
    if layers != 1:
        arguments["num_layers"] = layers
    if not bias:
        arguments["bias"] = False
    if bidirectional:
        arguments["bidirectional"] = True
    if proj:
        arguments["proj_size"] = proj
    if learned:
        arguments["initial_state"] = "learned"
    return cell, arguments, input_size


# ----------------------------------------------------------------------------- user cells


def _size(dim: Size | str) -> Size | None:
    """A dimension as a `Size`: checked cells give `Size`s already; a hand-written
    `CellShape`'s text (`4 * hidden_size`, `(a + b) // 2`) is read into one."""
    if isinstance(dim, Size):
        return dim

    def walk(node) -> Size:
        if isinstance(node, python_ast.Constant) and type(node.value) is int:
            return Size.of(node.value)
        if isinstance(node, python_ast.Name):
            return Size.of(node.id)
        if isinstance(node, python_ast.UnaryOp) and isinstance(node.op, python_ast.USub):
            return -walk(node.operand)
        if isinstance(node, python_ast.BinOp):
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, python_ast.Add):
                return left + right
            if isinstance(node.op, python_ast.Sub):
                return left - right
            if isinstance(node.op, python_ast.Mult):
                return left * right
            if isinstance(node.op, python_ast.FloorDiv) and right.constant:
                return quotient(left, right.constant)
        raise ValueError(dim)

    try:
        return walk(python_ast.parse(dim, mode="eval").body)
    except (ValueError, SyntaxError):
        return None


def _evaluate(dim: Size | str, names: dict[str, int]) -> int | None:
    """A size (`4 * hidden_size`, `a + b // 2`) with `names` bound: `Size.evaluate`."""
    size = _size(dim)
    if size is None:
        return None
    try:
        return size.evaluate(names)
    except KeyError:
        return None


def _symbols(dim: Size | str) -> set[str]:
    size = _size(dim)
    return set(symbols(size)) if size is not None else set()


def _solve_one(expression: str, symbol: str, known: dict, target: int) -> int | None:
    """The value of `symbol` making `expression` equal `target` (sizes are monotonic)."""
    def at(x):
        return _evaluate(expression, dict(known, **{symbol: x}))

    low, high = 1, max(1, target) * 4 + 4
    if at(low) is None:
        return None
    while low < high:  # the smallest x with f(x) >= target
        middle = (low + high) // 2
        if at(middle) < target:
            low = middle + 1
        else:
            high = middle
    return low if at(low) == target else None


def match_cell(params: dict[str, tuple[int, ...]], cell: CellShape):
    """(arguments, input_size) of the block of `cell` these parameters belong to, or None.

    Sizes are solved from the layer-0 forward tensors, one unknown per dimension at a time,
    then every tensor of every layer and direction is verified.
    """
    everything = params
    params, learned = _split_learned(params, cell.states)
    found = {LAYER_KEY.fullmatch(n)["name"] for n in params}
    if found != set(cell.parameters):
        return None
    equations = []
    for name, dims in cell.parameters.items():
        shape = params.get(f"{name}_l0")
        if shape is None or len(shape) != len(dims):
            return None
        equations += list(zip(dims, shape))
    # a declared size that no tensor's shape mentions cannot be read from the weights: it
    # keeps the spec's value (check --weights) or its default (infer)
    mentioned = set().union(*(_symbols(d) for dims in cell.parameters.values() for d in dims),
                            _symbols(cell.first_state))
    solvable = [a for a in cell.arguments if a in mentioned]
    unknown = {"input_size", "hidden_size", *solvable}
    known: dict[str, int] = {}
    progress = True
    while progress and unknown - set(known):
        progress = False
        for expression, value in equations:
            missing = (_symbols(expression) & unknown) - set(known)
            if len(missing) == 1:
                (symbol,) = missing
                solved = _solve_one(expression, symbol, known, value)
                if solved is None:
                    return None
                known[symbol] = solved
                progress = True
    if unknown - set(known) - {"input_size"} or "input_size" not in known:
        return None
    layers = 1 + max(int(LAYER_KEY.fullmatch(n)["layer"]) for n in params)
    directions = 2 if any(n.endswith("_reverse") for n in params) else 1
    state = _evaluate(cell.first_state, known)
    if state is None:
        return None
    for layer in range(layers):
        sizes = dict(known, input_size=known["input_size"] if layer == 0 else directions * state)
        for suffix in ("", "_reverse")[:directions]:
            for name, dims in cell.parameters.items():
                shape = tuple(_evaluate(d, sizes) for d in dims)
                if params.get(f"{name}_l{layer}{suffix}") != shape:
                    return None
    if len(params) != layers * directions * len(cell.parameters):
        return None
    if learned and (len(everything) - len(params) != layers * directions * len(cell.states)
                    or f"{cell.states[0]}0_l0" not in everything
                    or everything[f"{cell.states[0]}0_l0"] != (state,)):
        return None
    arguments = {"hidden_size": known["hidden_size"]}
    arguments.update({a: known[a] for a in solvable})
    if layers != 1:
        arguments["num_layers"] = layers
    if directions == 2:
        arguments["bidirectional"] = True
    if learned:
        arguments["initial_state"] = "learned"
    return arguments, known["input_size"]


def cell_shape(cell, source: str = "") -> CellShape:
    """A checked user cell (`registry.Cell`: parameter templates of `Size` dims, states)
    as `match_cell` takes it; `source`: its text, for the written spec."""
    return CellShape(
        name=cell.name,
        parameters={t.role: tuple(t.dims) for t in cell.parameters},
        first_state=cell.states[0].size,
        arguments=tuple(name for name in cell.declared if cell.rules[name].kind == "int"),
        source=source,
        states=tuple(state.name for state in cell.states),
        numbers=tuple((name, cell.rules[name].default) for name in cell.declared
                      if cell.rules[name].kind == "float"),
    )


def cells_of(path: str) -> tuple[list[CellShape], list[str]]:
    """The user cells declared in the spec at `path`, as `CellShape`s with their text, and
    the problems that keep the file from being used (its error diagnostics)."""
    from rnnspec.check.checker import check_path

    result = check_path(path)
    if not result.readable or not result.ok:
        errors = [d for d in result.diagnostics if d.is_error]
        return [], [f"{d.span.path}:{d.span.line}:{d.span.column}: {d.message}"
                    if d.span else d.message for d in errors]
    tree = result.tree  # the cells' whole text, to copy them
    lines = result.text.split("\n")
    texts = {}
    for item in (tree.cells if tree is not None else ()):
        span = item.span
        chunk = lines[span.line - 1:span.end_line]
        chunk[-1] = chunk[-1][:span.end_column - 1]
        chunk[0] = chunk[0][span.column - 1:]
        texts[item.name] = "\n".join(chunk)
    return [cell_shape(cell, texts.get(cell.name, "")) for cell in result.cells], []


# ----------------------------------------------------------------------------- the spec


def stack_name(prefix: str, taken: set[str]) -> str:
    """`encoder.rnn.` -> `EncoderRnn`: a CamelCase stack name the language accepts."""
    parts = re.split(r"[^A-Za-z0-9]+", prefix)
    name = "".join(p[:1].upper() + p[1:] for p in parts if p) or "Model"
    if name[0].isdigit():
        name = "Stack" + name
    if check_name(name, _NOWHERE, "stack") is not None:
        name += "Stack"
    names = Namespace(taken, separator="", first=2)
    unique = names.create(name)
    taken.add(unique)
    return unique


def infer_modules(tensors: dict, cells: list[CellShape] = ()):
    """(modules found, [(prefix, why it was skipped)])."""
    modules, skipped = [], []
    for prefix, group in group_modules(tensors).items():
        params = {name: shape for name, (shape, _dtype) in group.items()}
        dtype = next(iter(group.values()))[1]
        described = infer_built_in(params)
        if isinstance(described, tuple):
            cell, arguments, input_size = described
            modules.append(Module(prefix, cell, arguments, input_size, dtype, len(group)))
            continue
        for user in cells:
            matched = match_cell(params, user)
            if matched is not None:
                modules.append(Module(prefix, user.name, matched[0], matched[1], dtype,
                                      len(group)))
                break
        else:
            skipped.append((prefix, described))
    return modules, skipped


def _value(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _unknowns(module: Module, cells: list[CellShape]) -> list[str]:
    """What a block's weights do not record, as the written comment lists it."""
    unknown = ["dropout"] if module.arguments.get("num_layers", 1) > 1 else []
    rules = BUILTIN_CELLS[module.cell].rules if module.cell in BUILTIN_CELLS else {}
    unknown[:0] = [f"{r.name} ({' or '.join(r.choices)})" for r in rules.values()
                   if r.choices and not r.keyword_only]  # torch's words weights do not tell
    shape = next((c for c in cells if c.name == module.cell), None)
    declared = shape.arguments if shape else ()
    numbers = [f"`{name}` (a number of `{module.cell}`: its default {default!r} is assumed)"
               for name, default in (shape.numbers if shape else ())]
    unknown[:0] = [f"`{a}` (a size of `{module.cell}` no tensor shows: set it)"
                   for a in declared if a not in module.arguments] + numbers
    return unknown


def _module_stack(module: Module, cells, taken: set[str]) -> list[str]:
    shown = f"`{module.prefix}*`" if module.prefix else "keys without a prefix"
    lines = [f"# {shown}: {module.tensors} tensors, {module.dtype}",
             f"stack {stack_name(module.prefix, taken)} {{",
             f"    input_size = {module.input_size}",
             "    # batch_first: not recorded in the weights"]
    arguments = ", ".join(f"{k} = {_value(v)}" for k, v in module.arguments.items())
    lines.append(f"    {module.cell}({arguments})")
    unknown = _unknowns(module, cells)
    if unknown:
        lines.append(f"    # not recorded in the weights: {', '.join(unknown)}")
    return lines + ["}", ""]


def render_spec(modules: list[Module], source: str, cells: list[CellShape] = (),
                stacks: list | None = None) -> str:
    """The spec: one stack per module of `modules`, or, given `stacks` (`infer_stacks`),
    one per entry of it: a `Module` alone or the entries of one parent module."""
    if stacks is None:
        stacks = list(modules)
    layered = any(not isinstance(s, Module) for s in stacks)
    lines = [f"{HEADER_MARK} from `{os.path.basename(source)}`: one stack per recurrent "
             "module" + (", with the layers beside it." if layered else "."),
             "# Weights do not record `dropout`, `batch_first` or an rnn's `nonlinearity`:",
             "# the defaults (0, false, tanh) are assumed; set them as the model was trained.",
             ""]
    used = {m.cell for m in modules}
    for cell in cells:
        if cell.name in used and cell.source:
            lines += [cell.source.rstrip("\n"), ""]
    taken: set[str] = set()
    for stack in stacks:
        if isinstance(stack, Module):
            lines += _module_stack(stack, cells, taken)
        else:
            lines += render_entries(*stack, cells, taken)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- layers


def _parent(prefix: str) -> tuple[str, str] | None:
    """`encoder.rnn.` -> (`encoder.`, `rnn`); None for a bare module."""
    if not prefix:
        return None
    parent, _, name = prefix[:-1].rpartition(".")
    if check_name(name, _NOWHERE, "block") is not None:
        return None
    return (parent + "." if parent else ""), name


def infer_stacks(tensors: dict, cells: list[CellShape] = ()):
    """(stacks, skipped, notes): each stack a `Module` alone or (parent, [Entry]): the
    recurrent modules of one parent with the layers beside them, in the order of sizes."""
    from rnnspec.tools.checkpoints.infer_layers import layer_modules, order_entries

    modules, skipped = infer_modules(tensors, cells)
    positions: dict[str, int] = {}
    for position, key in enumerate(tensors):
        found = LAYER_KEY.fullmatch(key)
        if found:
            positions.setdefault(found["module"], position)
    layers = layer_modules(tensors, {m.prefix for m in modules})
    by_parent: dict[str, list] = {}
    for module in modules:
        parent = _parent(module.prefix)
        if parent is not None:
            by_parent.setdefault(parent[0], []).append(module)
    placed: dict[str, tuple] = {}  # prefix of a module's first recurrent module -> stack
    inside: set[str] = set()
    notes = []
    for parent, recurrent in by_parent.items():
        beside = [m for m in layers if m.parent == parent]
        if not beside:
            continue
        entries = order_entries([(positions[m.prefix], m) for m in recurrent], beside)
        if entries is None:
            notes.append(f"the layers beside `{parent or '(no prefix)'}`'s recurrent "
                         "modules fit no order of their sizes: written without them")
            continue
        placed[recurrent[0].prefix] = (parent, entries)
        inside.update(m.prefix for m in recurrent)
    stacks = []
    for module in modules:
        if module.prefix in placed:
            stacks.append(placed[module.prefix])
        elif module.prefix not in inside:
            stacks.append(module)
    return stacks, skipped, notes


_FILL_CONV = "not recorded in the weights (1, 0, 1 assumed): fill them in"


def _layer_line(entry) -> tuple[str, str]:
    """(`kind(arguments)`, a comment or "") of a layer entry."""
    shapes = entry.module.shapes
    weight = shapes.get("weight")
    no_bias = ", bias = false" if "bias" not in shapes else ""
    if entry.kind == "linear":
        return f"linear({weight[0]}{no_bias})", ""
    if entry.kind == "embedding":
        return (f"embedding({weight[0]}, {weight[1]})",
                "padding_idx: not recorded in the weights")
    if entry.kind == "batch_norm":
        return ("batch_norm()" if weight is not None else "batch_norm(affine = false)"), ""
    if entry.kind == "layer_norm":
        return f"layer_norm({'bias = false' if no_bias else ''})", ""
    groups = f", groups = {entry.groups}" if entry.groups != 1 else ""
    if entry.kind == "conv1d":
        return (f"conv1d({weight[0]}, {weight[2]}{groups}{no_bias})",
                f"stride, padding, dilation: {_FILL_CONV}")
    kernel = str(weight[2]) if weight[2] == weight[3] else f"[{weight[2]}, {weight[3]}]"
    return (f"conv2d({weight[0]}, {kernel}{groups}{no_bias})",
            "stride, padding, dilation (pairs [features, time], or `layout = time_first`): "
            + _FILL_CONV)


def _first_input(entry) -> str | None:
    """The stack's `input_size` line from its first entry (None: it has none to give)."""
    if entry.kind == "recurrent":
        return f"input_size = {entry.module.input_size}"
    shapes = entry.module.shapes
    if entry.kind == "embedding":
        return None
    if entry.kind == "conv2d":
        return ("# input_size = ?  fill in: the bins of each step (the weights give only "
                "the kernels)")
    if entry.kind in ("linear", "conv1d"):
        return f"input_size = {shapes['weight'][1]}"
    return f"input_size = {(shapes.get('running_mean') or shapes['weight'])[0]}"


def render_entries(parent: str, entries: list, cells, taken: set[str]) -> list[str]:
    tensors = sum(e.module.tensors if e.kind == "recurrent" else len(e.module.shapes)
                  for e in entries)
    dtype = entries[0].module.dtype
    shown = f"`{parent}*`" if parent else "keys without a prefix"
    lines = [f"# {shown}: {tensors} tensors, {dtype}; activations, dropout and pooling hold "
             "no tensors: add them where the model has them",
             f"stack {stack_name(parent, taken)} {{"]
    first = _first_input(entries[0])
    if first is not None:
        lines.append(f"    {first}")
    lines.append("    # batch_first: not recorded in the weights")
    for entry in entries:
        if entry.kind != "recurrent":
            text, comment = _layer_line(entry)
            lines.append(f"    {entry.module.name} = {text}" + (f"  # {comment}" if comment
                                                                 else ""))
            continue
        module = entry.module
        arguments = dict(module.arguments, **({"merge": "sum"} if entry.merge_sum else {}))
        written = ", ".join(f"{k} = {_value(v)}" for k, v in arguments.items())
        unknown = _unknowns(module, cells)
        comment = f"  # not recorded in the weights: {', '.join(unknown)}" if unknown else ""
        lines.append(f"    {_parent(module.prefix)[1]} = {module.cell}({written}){comment}")
    return lines + ["}", ""]


def write_spec(path: str, text: str, force: bool, inputs: tuple[str, ...] = ()) -> None:
    """Atomically; an existing file only if `rnnspec infer` wrote it, or with `force`;
    never over anything but a regular file, nor over one of `inputs`."""
    from rnnspec.backends.torch.codegen import OutputError, write_output

    try:
        write_output(path, text, force=force, mark=HEADER_MARK, tool="rnnspec infer",
                     inputs=inputs)
    except OutputError as exc:
        raise InferError(str(exc), 2) from None


def modules_of(stacks) -> list[Module]:
    """The recurrent modules of `infer_stacks`' stacks: the bare ones, then those inside."""
    return [s for s in stacks if isinstance(s, Module)] + [
        e.module for s in stacks if not isinstance(s, Module) for e in s[1]
        if e.kind == "recurrent"]


def run_infer(args) -> int:
    import sys

    from rnnspec.tools.checkpoints.read import CheckpointError, read_checkpoint

    cells: list[CellShape] = []
    if args.cells is not None:
        cells, problems = cells_of(args.cells)
        if problems:
            sys.stderr.write(f"rnnspec: error: --cells `{args.cells}` has errors:\n"
                             + "".join(f"  {p}\n" for p in problems))
            return 1 if os.path.exists(args.cells) else 2
        if not cells:
            sys.stderr.write(f"rnnspec: note: `{args.cells}` declares no cell\n")
    try:
        tensors = read_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        sys.stderr.write(f"rnnspec: error: {exc}\n")
        return 2
    stacks, skipped, notes = infer_stacks(tensors, cells)
    modules = modules_of(stacks)
    for prefix, why in skipped:
        sys.stderr.write(f"rnnspec: note: skipped `{prefix or '(no prefix)'}`: {why}\n")
    for note in notes:
        sys.stderr.write(f"rnnspec: note: {note}\n")
    if not modules:
        sys.stderr.write(f"rnnspec: error: `{args.checkpoint}` holds no recurrent module "
                         "(no `weight_ih_l0` and `weight_hh_l0` of nn.RNN, nn.LSTM or "
                         "nn.GRU)\n")
        return 1
    text = render_spec(modules, args.checkpoint, cells, stacks)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    try:
        inputs = (args.checkpoint,) + ((args.cells,) if args.cells else ())
        write_spec(args.output, text, args.force, inputs)
    except InferError as exc:
        sys.stderr.write(f"rnnspec: error: {exc}\n")
        return exc.status
    return 0
