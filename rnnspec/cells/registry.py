"""The cell registry: every recurrent cell as one record, read by every stage.

A `Cell` holds its block arguments with their rules, its parameters and states as shape
templates over symbolic sizes, its own validation, and what the generator needs (the
torch module that runs it fused, the equations of its explicit step). `rnn`, `lstm`
and `gru` are declared here as data, mirroring `torch.nn.RNNBase`; a cell declared in a
spec is one more record, built by `equations` from its checked body.

`instantiate` is the one derivation of a block's shapes for any cell.
"""

from __future__ import annotations

from collections.abc import Callable

from rnnspec import model
from rnnspec.cells.shapes import Size, sequence_shape
from rnnspec.language.diagnostics import Diagnostic, Note, Span, error
from rnnspec.records import Record

# Every layer's parameters are listed one by one, so the layer count is bounded (far above
# any real network): a spec cannot make the checker enumerate 10**100 layers.
MAX_LAYERS = 10_000


class ArgumentRule(Record):
    """A stack property or block argument: its type, default and range."""

    name: str
    kind: str  # "int", "float", "bool" or "word"
    default: object
    required: bool = False
    minimum: int | float | None = None
    maximum: int | float | None = None
    choices: tuple[str, ...] = ()
    meaning: str = ""
    keyword_only: bool = False  # never bound by position (the arguments PyTorch lacks)


class ParameterTemplate(Record):
    role: str  # weight_ih; the parameter of layer k, direction s is `weight_ih_l{k}{s}`
    dims: tuple[Size, ...]
    when: str | None = None  # an argument whose value must be truthy for the parameter to exist
    init: tuple = ("uniform",)  # ("uniform",), ("zeros",), ("ones",), ("uniform", a, b), ...


class StateTemplate(Record):
    name: str  # `h`: expect keys and docs say `h0` and `h_n`
    size: Size


class Cell(Record):
    name: str
    arguments: tuple[ArgumentRule, ...]  # in the order positional arguments take them
    positional: bool  # whether a block may pass arguments by position (PyTorch's order)
    parameters: tuple[ParameterTemplate, ...]
    states: tuple[StateTemplate, ...]  # the first is the step's output
    derived: tuple[tuple[str, Callable[[dict], int]], ...] = ()  # sizes computed from arguments
    validate: Callable[[dict, dict], list[Diagnostic]] | None = None
    # built-ins: the weights `weight_dropout` masks (DropConnect on weight_hh only, as
    # AWD-LSTM does, weight_hr too being a matrix that multiplies a state); None: the step's
    dropconnect: tuple[str, ...] | None = None
    equations: str = ""  # user cells: the checked statements, written back
    span: Span | None = None  # where a user cell is declared
    declared: tuple[str, ...] = ()  # user cells: the size arguments of the header
    step: object = None  # user cells: the checked step (`equations.Step`)

    @property
    def rules(self) -> dict[str, ArgumentRule]:
        return {rule.name: rule for rule in self.arguments}


# ----------------------------------------------------------------------------- arguments

HIDDEN_SIZE = ArgumentRule("hidden_size", "int", None, required=True, minimum=1,
                           meaning="features in the hidden state")
NUM_LAYERS = ArgumentRule("num_layers", "int", 1, minimum=1, maximum=MAX_LAYERS,
                          meaning="recurrent layers stacked in the block")
BIAS = ArgumentRule("bias", "bool", True, meaning="whether the layers have bias_ih and bias_hh")
BIDIRECTIONAL = ArgumentRule("bidirectional", "bool", False,
                             meaning="run a second direction backwards")
DROPOUT = ArgumentRule("dropout", "float", 0.0, minimum=0.0, maximum=1.0,
                       meaning="dropout on the outputs of every layer but the last")
INPUT_SIZE = ArgumentRule("input_size", "int", None, minimum=1,
                          meaning="features in; inferred from the previous block when omitted")
BATCH_FIRST = ArgumentRule("batch_first", "bool", None,
                           meaning="must agree with the stack's `batch_first`")
NONLINEARITY = ArgumentRule("nonlinearity", "word", "tanh", choices=("tanh", "relu"),
                            meaning="the activation of a plain RNN")
PROJ_SIZE = ArgumentRule("proj_size", "int", 0, minimum=0,
                         meaning="project h to this size (0: no projection)")

# Section 9: arguments PyTorch's modules lack, taken by name only, by every cell's blocks.
MERGE = ArgumentRule("merge", "word", "concat", choices=("concat", "sum", "mean", "mul"),
                     keyword_only=True,
                     meaning="how a bidirectional block's output combines its directions")
RESIDUAL = ArgumentRule("residual", "bool", False, keyword_only=True,
                        meaning="add the block's input to its output")
# Probabilities below 1: `below_one` reports p = 1, which in_range's bounds let through.
RECURRENT_DROPOUT = ArgumentRule("recurrent_dropout", "float", 0.0, minimum=0.0, maximum=1.0,
                                 keyword_only=True,
                                 meaning="variational dropout of the state the step reads")
ZONEOUT = ArgumentRule("zoneout", "float", 0.0, minimum=0.0, maximum=1.0, keyword_only=True,
                       meaning="probability that a unit of the first state keeps its value")
WEIGHT_DROPOUT = ArgumentRule("weight_dropout", "float", 0.0, minimum=0.0, maximum=1.0,
                              keyword_only=True,
                              meaning="DropConnect on the recurrent weights")
REGULARISERS = ("recurrent_dropout", "zoneout", "weight_dropout")
# Section 11: the direction and the initial states of a block, for every cell.
REVERSE = ArgumentRule("reverse", "bool", False, keyword_only=True,
                       meaning="run the one direction backwards, from each sequence's last "
                               "valid step")
INITIAL_STATE = ArgumentRule("initial_state", "word", "zeros", choices=("zeros", "learned"),
                             keyword_only=True,
                             meaning="the states a sequence starts from when `hx` leaves them "
                                     "out: zeros, or parameters `h0_l0`, ...")
EXTENSIONS = (MERGE, RESIDUAL, RECURRENT_DROPOUT, ZONEOUT, WEIGHT_DROPOUT, REVERSE,
              INITIAL_STATE)

# Arguments every cell's blocks take, built-in or declared.
COMMON_ARGUMENTS = (INPUT_SIZE, HIDDEN_SIZE, NUM_LAYERS, BATCH_FIRST, DROPOUT, BIDIRECTIONAL,
                    *EXTENSIONS)

STACK_PROPERTIES: dict[str, ArgumentRule] = {
    "input_size": ArgumentRule("input_size", "int", None, required=True, minimum=1,
                               meaning="the features of each input step"),
    "batch_first": ArgumentRule("batch_first", "bool", False,
                                meaning="input and output are [B, T, F]"),
}

# ----------------------------------------------------------------------------- built-in cells

_H, _I = Size.of("hidden_size"), Size.of("input_size")


def _torch_parameters(gates: int, state: Size, *, projected: bool = False):
    """nn.RNNBase's parameters for `gates` gates: weight_ih, weight_hh, biases, weight_hr."""
    rows = gates * _H
    parameters = [
        ParameterTemplate("weight_ih", (rows, _I)),
        ParameterTemplate("weight_hh", (rows, state)),
        ParameterTemplate("bias_ih", (rows,), when="bias"),
        ParameterTemplate("bias_hh", (rows,), when="bias"),
    ]
    if projected:
        parameters.append(ParameterTemplate("weight_hr", (Size.of("proj_size"), _H),
                                            when="proj_size"))
    return tuple(parameters)


def _projection_smaller(values: dict, spans: dict) -> list[Diagnostic]:
    projection, hidden = values["proj_size"], values["hidden_size"]
    if 0 < projection and projection >= hidden:
        return [error("E037", f"`proj_size` ({projection}) must be smaller than "
                      f"`hidden_size` ({hidden})", spans["proj_size"],
                      notes=[Note("`hidden_size` is set here", spans.get("hidden_size"))],
                      help="use `proj_size = 0` for no projection")]
    return []


def validate_extensions(values: dict, spans: dict) -> list[Diagnostic]:
    """Section 9's rules on one block's own arguments, for every cell."""
    problems = []
    # any `merge` written on a one-direction block, `concat` too: there is nothing to merge
    if "merge" in spans and not values["bidirectional"]:
        problems.append(error(
            "E090", f"`merge = {values['merge']}` on a block with one direction",
            spans["merge"],
            notes=[Note("`bidirectional` is false here", spans["bidirectional"])]
            if "bidirectional" in spans else [],
            help="`merge` combines the two directions of a bidirectional block: add "
                 "`bidirectional = true`, or remove `merge`"))
    if values.get("reverse") and values["bidirectional"]:
        problems.append(error(
            "E092", "`reverse = true` on a bidirectional block", spans["reverse"],
            notes=[Note("`bidirectional` is set here", spans.get("bidirectional"))],
            help="a bidirectional block already runs a reverse direction: remove `reverse`, "
                 "or remove `bidirectional` for the reverse direction alone"))
    for name in REGULARISERS:
        if values.get(name) == 1.0:
            problems.append(error(
                "E021", f"`{name}` must be below 1, found 1.0", spans[name],
                help=f"a probability p with 0 <= p < 1: at 1 nothing would be left "
                     f"(`{name} = 0` turns it off)"))
    return problems


def residual_problem(block: model.Block, input_span: Span | None) -> Diagnostic | None:
    """A residual block must give out as many features as it takes in."""
    if not block.arguments.get("residual") or block.input_size == block.output_size:
        return None
    merge = block.arguments.get("merge", "concat")
    if block.bidirectional and merge == "concat":
        hint = (f"a bidirectional block gives out 2 * {block.state_size} features: "
                f"`merge = sum` keeps {block.state_size}, or change `hidden_size`")
    else:
        hint = f"make `hidden_size` {block.input_size}, or remove `residual`"
    return error(
        "E091", f"residual block `{block.name}` takes {block.input_size} features but "
        f"gives out {block.output_size}", block.argument_spans.get("residual", block.span),
        notes=[Note(f"its input has {block.input_size} features", input_span),
               Note(f"its output has {block.output_size} features", block.span)],
        help=hint)


def _builtin(name: str, gates: int, extra: tuple[ArgumentRule, ...],
             **fields) -> Cell:
    # PyTorch's positional order: input_size, hidden_size, num_layers, nonlinearity (rnn),
    # bias, batch_first, dropout, bidirectional, proj_size (lstm)
    leading = tuple(a for a in extra if a.name == "nonlinearity")
    trailing = tuple(a for a in extra if a.name != "nonlinearity")
    arguments = (INPUT_SIZE, HIDDEN_SIZE, NUM_LAYERS, *leading, BIAS, BATCH_FIRST, DROPOUT,
                 BIDIRECTIONAL, *trailing, *EXTENSIONS)
    fields.setdefault("states", (StateTemplate("h", _H),))
    fields.setdefault("parameters", _torch_parameters(gates, fields["states"][0].size))
    return Cell(name=name, arguments=arguments, positional=True,
                dropconnect=("weight_hh",), **fields)


BUILTIN_CELLS: dict[str, Cell] = {
    cell.name: cell
    for cell in (
        _builtin("rnn", 1, (NONLINEARITY,)),
        _builtin("lstm", 4, (PROJ_SIZE,),
                 states=(StateTemplate("h", Size.of("state_size")), StateTemplate("c", _H)),
                 parameters=_torch_parameters(4, Size.of("state_size"), projected=True),
                 derived=(("state_size", lambda v: v["proj_size"] or v["hidden_size"]),),
                 validate=_projection_smaller),
        _builtin("gru", 3, ()),
    )
}

# ----------------------------------------------------------------------------- instantiation


def state_keys(state: str) -> tuple[str, str]:
    """The `expect` and docstring names of a state's initial and final values: `h0`, `h_n`."""
    return f"{state}0", f"{state}_n"


def learned_states(cell: Cell, sizes: dict, num_layers: int,
                   directions: int) -> list[model.Parameter]:
    """`initial_state = learned`: one vector per state, layer and direction, in that
    nesting (layer, direction, state): `h0_l0`, `c0_l0`, `h0_l0_reverse`, ..."""
    learned = []
    for layer in range(num_layers):
        for reverse in (False, True)[:directions]:
            suffix = f"_l{layer}" + ("_reverse" if reverse else "")
            for state in cell.states:
                role = state_keys(state.name)[0]
                learned.append(model.Parameter(role + suffix, role, layer, reverse,
                                               (state.size.evaluate(sizes),)))
    return learned


def size_values(cell: Cell, values: dict) -> dict[str, int]:
    """The sizes a block of `cell` binds (its integer arguments and the cell's derived
    sizes), which its shapes and its step's carried sizes are evaluated against; a layer's
    `input_size` is added per layer."""
    sizes = {key: value for key, value in values.items()
             if isinstance(value, int) and not isinstance(value, bool)}
    for derived, compute in cell.derived:
        sizes[derived] = compute(values)
    return sizes


def instantiate(cell: Cell, values: dict, *, name: str, position: int, span: Span,
                input_size: int, batch_first: bool, spans: dict) -> model.Block:
    """Every shape of one block of `cell`, for the block's bound argument values."""
    sizes = size_values(cell, values)
    directions = 2 if values["bidirectional"] else 1
    num_layers = values["num_layers"]
    first_state = cell.states[0].size
    state_size = first_state.evaluate({**sizes, "input_size": input_size})
    present = [t for t in cell.parameters if t.when is None or values.get(t.when)]
    parameters: list[model.Parameter] = []
    for layer in range(num_layers):
        layer_sizes = {**sizes, "input_size": input_size if layer == 0 else directions * state_size}
        shapes = [(t.role, tuple(d.evaluate(layer_sizes) for d in t.dims)) for t in present]
        for reverse in (False, True)[:directions]:
            suffix = f"_l{layer}" + ("_reverse" if reverse else "")
            parameters += [model.Parameter(role + suffix, role, layer, reverse, shape)
                           for role, shape in shapes]
    state_sizes = {**sizes, "input_size": input_size}
    if values.get("initial_state") == "learned":  # after every weight: `h0_l0`, `c0_l0`, ...
        parameters += learned_states(cell, state_sizes, num_layers, directions)
    states = {state_keys(s.name)[0]: (directions * num_layers, "B", s.size.evaluate(state_sizes))
              for s in cell.states}
    merged = values.get("merge", "concat") != "concat"
    output_size = state_size if merged else directions * state_size
    return model.Block(
        name=name, cell=cell.name, spec=cell, position=position, span=span,
        input_size=input_size, hidden_size=values["hidden_size"], num_layers=num_layers,
        bidirectional=values["bidirectional"], dropout=values["dropout"],
        num_directions=directions, state_size=state_size, output_size=output_size,
        arguments=values, argument_spans=spans,
        parameters=tuple(parameters), states=states,
        output=sequence_shape(output_size, batch_first),
        parameter_count=sum(p.numel for p in parameters),
    )


def derive(cell: Cell, *, input_size: int, name: str = "block", position: int = 0,
           span: Span | None = None, batch_first: bool = False, **arguments) -> model.Block:
    """A block of `cell` for the given argument values (defaults for the rest), checked
    by nothing: for callers that solve sizes (checkpoints), not for specs."""
    values = {rule.name: rule.default for rule in cell.arguments}
    values.update(arguments, input_size=input_size)
    return instantiate(cell, values, name=name, position=position, span=span,
                       input_size=input_size, batch_first=batch_first, spans={})


def gate_count(cell: Cell) -> int | None:
    """Rows of `weight_hh` per hidden unit (rnn 1, gru 3, lstm 4) for the cells whose
    recurrent weight is `k * hidden_size` rows; None for others."""
    for template in cell.parameters:
        if template.role == "weight_hh" and template.dims:
            rows = template.dims[0]
            terms = dict(rows.terms)
            if set(terms) == {("hidden_size",)}:
                return terms[("hidden_size",)]
    return None


# Built-in cells by gate count: what a checkpoint's weight_hh rows over columns tell.
CELLS_BY_GATES: dict[int, Cell] = {
    gate_count(cell): cell for cell in BUILTIN_CELLS.values() if gate_count(cell)}

