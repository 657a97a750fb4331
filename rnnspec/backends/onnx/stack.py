"""The blocks of a stack as ONNX: operators for the built-in cells that have one, Scans for
the others, then `merge`, `residual` and padded lengths; `build_model` the whole graph."""

from __future__ import annotations

from rnnspec import model
from rnnspec.backends.onnx import onnx_op
from rnnspec.backends.onnx.cells import builtin_step, emit_recurrence, lower_step
from rnnspec.backends.onnx.graph import (
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    PRODUCER,
    ExportError,
    _Graph,
)
from rnnspec.cells.registry import size_values
from rnnspec.records import Record


def _reorder(array, gate_order: tuple[int, ...]):
    import numpy as np

    pieces = np.split(array, len(gate_order), axis=0)
    return np.concatenate([pieces[i] for i in gate_order], axis=0)


class _StackContext(Record):
    g: _Graph
    weights: dict  # "<block>.<param>" -> float32 numpy array
    batch: str  # int64 [1]: the batch size
    initial_states: bool
    lengths: str | None = None  # int64 [B]: each sequence's length (a padded batch)
    valid: str | None = None  # bool [T, B, 1]: whether step t of a sequence is valid


def _initial_state(ctx: _StackContext, block: model.Block, key: str, given: str | None,
                   size: int, index: int) -> str:
    """One layer-direction's initial state `[B, size]`: a slice of the input, or zeros."""
    from onnx import TensorProto, helper

    g = ctx.g
    if given is not None:
        return g.node("Gather", [given, _index(g, index)],
                      hint=f"{block.name}.{key}[{index}]", axis=0)
    shape = g.node("Concat", [ctx.batch, g.ints([size])], hint=f"{block.name}.zeros_shape",
                   axis=0)
    return g.node("ConstantOfShape", [shape], hint=f"{block.name}.{key}[{index}]",
                  value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))


def _index(g: _Graph, index: int) -> str:
    """A scalar int64 index (Gather with it drops the axis)."""
    import numpy as np

    root = g.root
    key = ("scalar", index)
    if key not in root._int_constants:
        root._int_constants[key] = g.initializer("index", np.array(index, dtype=np.int64))
    return root._int_constants[key]


def _layer_states(ctx: _StackContext, block: model.Block, key: str, given: str | None,
                  layer: int) -> str:
    """`[D, B, size]` for the ONNX operators: rows layer*D .. layer*D + D - 1 (or omitted)."""
    g = ctx.g
    if given is None:
        return ""
    d = block.num_directions
    return g.node("Slice", [given, g.ints([layer * d]), g.ints([layer * d + d]), g.ints([0])],
                  hint=f"{block.name}.{key}_l{layer}")


def _learned_states(ctx: _StackContext, block: model.Block, key: str,
                    name: str | None) -> str:
    """`initial_state = learned`: a state's learned vectors `[L * D, 1, size]`, expanded
    to `[L * D, B, size]`. With `initial_states`, they are the default of the graph input
    `name` (an initializer of the same name, which a fed value replaces: ONNX's optional
    input), so a caller may feed some states and leave the others out."""
    import numpy as np

    g = ctx.g
    rows = [ctx.weights[f"{block.name}.{p.name}"] for p in block.parameters if p.role == key]
    learned = np.stack(rows)[:, None, :]  # [L * D, 1, size]
    if name is None:
        value = g.initializer(f"{block.name}.{key}", learned)
    else:
        from onnx import numpy_helper

        g.root.initializers.append(numpy_helper.from_array(learned, name))
        g.root.initializer_bytes += learned.nbytes
        value = name
    shape = g.node("Concat", [g.ints([learned.shape[0]]), ctx.batch, g.ints([learned.shape[2]])],
                   hint=f"{block.name}.{key}.shape", axis=0)
    return g.node("Expand", [value, shape], hint=f"{block.name}.{key}")


def _kept_when_empty(ctx: _StackContext, initial: str, final: str, hint: str) -> str:
    """A final state `[rows, B, size]` where a sequence of length 0 keeps its initial state
    (ONNX's operators give zeros there; rnnspec takes no step)."""
    root = ctx.g.root
    if not hasattr(root, "_empty"):  # [1, B, 1]: whether a sequence has length 0
        zero = root.node("Equal", [ctx.lengths, root.ints([0])], hint="lengths.empty")
        root._empty = root.node("Unsqueeze", [zero, root.ints([0, 2])], hint="empty")
    return ctx.g.node("Where", [root._empty, initial, final], hint=hint)


def _sequence_lengths(ctx: _StackContext) -> str:
    """The lengths as the int32 `sequence_lens` of ONNX's recurrent operators."""
    from onnx import TensorProto

    root = ctx.g.root
    if not hasattr(root, "_lengths32"):
        root._lengths32 = root.node("Cast", [ctx.lengths], hint="lengths.int32",
                                    to=TensorProto.INT32)
    return root._lengths32


def _builtin_operator_block(ctx: _StackContext, block: model.Block, x: str,
                            given: dict[str, str | None]) -> tuple[str, dict[str, list[str]]]:
    """A block as ONNX's own operator for its cell (`backends.onnx.OnnxOp`), one per layer."""
    import numpy as np

    g, D, H = ctx.g, block.num_directions, block.hidden_size
    spec = onnx_op(block.spec)
    keys = list(block.states)
    direction = "bidirectional" if block.bidirectional else \
        "reverse" if block.reverse else "forward"  # `reverse`: the forward names, run back
    finals: dict[str, list[str]] = {key: [] for key in keys}
    lengths = _sequence_lengths(ctx) if ctx.lengths is not None else ""
    for layer in range(block.num_layers):
        suffixes = [f"_l{layer}", f"_l{layer}_reverse"][:D]

        def stacked(role, suffixes=suffixes):
            return np.stack([_reorder(ctx.weights[f"{block.name}.{role}{s}"], spec.gate_order)
                             for s in suffixes])

        W = g.initializer(f"{block.name}.W_l{layer}", stacked("weight_ih"))
        R = g.initializer(f"{block.name}.R_l{layer}", stacked("weight_hh"))
        B = ""
        if block.bias:
            B = g.initializer(f"{block.name}.B_l{layer}", np.concatenate(
                [stacked("bias_ih"), stacked("bias_hh")], axis=1))
        initials = [_layer_states(ctx, block, key, given.get(key), layer) for key in keys]
        inputs = [x, W, R, B, lengths, *initials]
        attrs = {"hidden_size": H, "direction": direction, **dict(spec.attributes)}
        if spec.activation is not None:
            names = dict(spec.activations)
            attrs["activations"] = [names[block.arguments[spec.activation]]] * D
        while inputs and inputs[-1] == "":
            inputs.pop()
        outs = g.node(spec.op, inputs, 1 + len(keys), hint=f"{block.name}.l{layer}", **attrs)
        for key, value, initial in zip(keys, outs[1:], initials):
            if ctx.lengths is not None and initial:  # zeros need no correction
                value = _kept_when_empty(ctx, initial, value, f"{block.name}.{key}_l{layer}")
            finals[key].append(value)
        y = g.node("Transpose", [outs[0]], hint=f"{block.name}.l{layer}.y", perm=[0, 2, 1, 3])
        x = g.node("Reshape", [y, g.ints([0, 0, -1])], hint=f"{block.name}.l{layer}.out")
    return x, finals


def _reverse_sequences(ctx: _StackContext, value: str, hint: str) -> str:
    """Each sequence of `value` (`[T, B, F]`) reversed within its own length."""
    return ctx.g.node("ReverseSequence", [value, ctx.lengths], hint=hint, batch_axis=1,
                      time_axis=0)


def _scan_block(ctx: _StackContext, block: model.Block, x: str,
                given: dict[str, str | None]) -> tuple[str, dict[str, list[str]]]:
    """A block as one Scan per layer and direction, from its cell's step: a user cell's
    checked `Step`, or a built-in cell's equations (`cells.builtin`)."""
    g, D = ctx.g, block.num_directions
    keys = list(block.states)
    names = block.state_names
    sizes = {key: shape[-1] for key, shape in block.states.items()}
    finals: dict[str, list[str]] = {key: [] for key in keys}
    zoneout = float(block.arguments.get("zoneout", 0.0) or 0.0)
    layer_input = block.input_size
    step = block.spec.step if block.spec.step is not None else builtin_step(block)
    statements = lower_step(step, {name: block.arguments[name] for name in step.numbers})
    block_sizes = size_values(block.spec, block.arguments)
    for layer in range(block.num_layers):
        outputs = []
        for second in (False, True)[:D]:
            suffix = f"_l{layer}" + ("_reverse" if second else "")
            reverse = second or block.reverse  # `reverse = true`: the forward names, run back
            params = {}
            for p in block.weights:
                if p.layer == layer and p.reverse == second:
                    key = f"{block.name}.{p.name}"
                    array = ctx.weights[key]
                    params[p.role] = (g.initializer(key, array), array.shape)
            index = layer * D + int(second)
            states = [(name, sizes[key],
                       _initial_state(ctx, block, key, given.get(key), sizes[key], index))
                      for name, key in zip(names, keys)]
            source = x
            by_length = reverse and ctx.lengths is not None
            if by_length:  # each sequence from its own last valid step
                source = _reverse_sequences(ctx, x, f"{block.name}{suffix}.reversed")
            y, last = emit_recurrence(g, f"{block.name}{suffix}", statements, x=source,
                                      x_size=layer_input, states=states, params=params,
                                      sizes=block_sizes, reverse=reverse and not by_length,
                                      valid=ctx.valid, zoneout=zoneout)
            if ctx.valid is not None:  # outputs at padded steps are zero
                y = g.node("Where", [ctx.valid, y, g.scalar(0.0)], hint=f"{block.name}{suffix}.y")
            if by_length:
                y = _reverse_sequences(ctx, y, f"{block.name}{suffix}.y")
            outputs.append(y)
            for key, value in zip(keys, last):
                finals[key].append(g.node("Unsqueeze", [value, g.ints([0])],
                                          hint=f"{block.name}.{key}{suffix}"))
        x = outputs[0] if D == 1 else g.node("Concat", outputs, hint=f"{block.name}.l{layer}",
                                             axis=-1)
        layer_input = D * block.state_size
    return x, finals


def uses_scan(block: model.Block) -> bool:
    """Whether a block needs the Scan path: a cell without an ONNX operator (user cells),
    an argument the operator cannot express (an LSTM's `proj_size`), or zoneout."""
    spec = onnx_op(block.spec)
    if spec is None:
        return True
    if block.arguments.get("zoneout"):
        return True
    return any(block.arguments.get(argument) for argument in spec.unsupported)


def _merge(g: _Graph, block: model.Block, y: str) -> str:
    """A bidirectional block's output `[T, B, 2H]` with its directions combined: `[T, B, H]`."""
    how = block.arguments.get("merge", "concat")
    if how == "concat" or block.num_directions == 1:
        return y
    half = block.state_size
    forward, backward = (g.fresh(f"{block.name}.forward"), g.fresh(f"{block.name}.backward"))
    g.node("Split", [y, g.ints([half, half])], [forward, backward], axis=-1)
    if how == "mul":
        return g.node("Mul", [forward, backward], hint=f"{block.name}.merged")
    total = g.node("Add", [forward, backward], hint=f"{block.name}.merged")
    if how == "mean":
        total = g.node("Div", [total, g.scalar(2.0)], hint=f"{block.name}.merged")
    return total


def _residual(ctx: _StackContext, block: model.Block, y: str, x: str) -> str:
    """A residual block's output plus its input, where the step is valid."""
    if not block.arguments.get("residual"):
        return y
    g = ctx.g
    if ctx.valid is not None:  # padding stays zero
        x = g.node("Where", [ctx.valid, x, g.scalar(0.0)], hint=f"{block.name}.input_valid")
    return g.node("Add", [y, x], hint=f"{block.name}.residual")


def _valid_steps(g: _Graph, x: str, lengths: str) -> str:
    """`[T, B, 1]` bool: whether step t of sequence b is within its length."""
    from onnx import TensorProto

    steps = g.node("Gather", [g.node("Shape", [x], hint="input.shape"), _index(g, 0)],
                   hint="steps", axis=0)
    time = g.node("Range", [_index(g, 0), steps, _index(g, 1)], hint="time")
    time = g.node("Unsqueeze", [time, g.ints([1])], hint="time.column")  # [T, 1]
    ends = g.node("Cast", [lengths], hint="lengths.int64", to=TensorProto.INT64)
    valid = g.node("Less", [time, g.node("Unsqueeze", [ends, g.ints([0])], hint="ends")],
                   hint="valid")  # [T, B]
    return g.node("Unsqueeze", [valid, g.ints([2])], hint="valid.steps")


def build_model(stack: model.Stack, weights: dict, *, opset: int = DEFAULT_OPSET,
                initial_states: bool = False, scan_everything: bool = False,
                lengths: bool = False, doc: str = ""):
    """The ONNX model of `stack` with `weights` ("<block>.<param>" -> float32 array).
    `lengths`: the graph takes a `lengths` input (`[B]` int64), for padded batches."""
    from onnx import TensorProto, helper


    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported: rnnspec writes opsets "
                          f"{MIN_OPSET} to {MAX_OPSET}")
    if len(stack.entries) != len(stack.blocks) or stack.side_inputs:
        return build_network(stack, weights, opset=opset, initial_states=initial_states,
                             scan_everything=scan_everything, lengths=lengths, doc=doc)
    g = _Graph(opset)
    for name in ("input", "output", "lengths"):
        g.used.add(name)
    time_axis_first = not stack.batch_first
    graph_inputs = [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT,
        ["T", "B", stack.input_size] if time_axis_first else ["B", "T", stack.input_size])]
    x = "input" if time_axis_first else g.node("Transpose", ["input"], hint="input.time_major",
                                               perm=[1, 0, 2])
    batch = g.node("Gather", [g.node("Shape", [x], hint="input.shape"), g.ints([1])],
                   hint="batch", axis=0)
    valid = None
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"]))
        valid = _valid_steps(g, x, "lengths")
    ctx = _StackContext(g, weights, batch, initial_states, "lengths" if lengths else None,
                        valid)
    graph_outputs = []
    for block in stack.blocks:
        x, _ = _block_graph(ctx, block, x, graph_inputs, graph_outputs, scan_everything)
    if time_axis_first:
        g.node("Identity", [x], ["output"])
    else:
        g.node("Transpose", [x], ["output"], perm=[1, 0, 2])
    graph_outputs.insert(0, helper.make_tensor_value_info(
        "output", TensorProto.FLOAT, list(stack.output)))
    graph = helper.make_graph(g.nodes, stack.name, graph_inputs, graph_outputs,
                              initializer=g.initializers, doc_string=doc)
    opsets = [helper.make_opsetid("", opset)]
    from rnnspec import __version__

    onnx_model = helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER,
                                   producer_version=__version__,
                                   ir_version=helper.find_min_ir_version_for(opsets))
    return onnx_model


def _block_graph(ctx: _StackContext, block: model.Block, x: str, graph_inputs: list,
                 graph_outputs: list, scan_everything: bool) -> tuple[str, list[str]]:
    """One block of a network: its output and its first state's final value `[L * D, B,
    H]` (for `pool(final)`); its final states become graph outputs."""
    from onnx import TensorProto, helper

    from rnnspec.cells.registry import state_keys

    g = ctx.g
    given: dict[str, str | None] = {}
    for key, shape in block.states.items():
        given[key] = None
        if ctx.initial_states:
            name = f"{key}.{block.name}"
            g.used.add(name)
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                              list(shape)))
            given[key] = name
        if block.learned_states:
            given[key] = _learned_states(ctx, block, key, given[key])
    if scan_everything or uses_scan(block):
        y, finals = _scan_block(ctx, block, x, given)
    else:
        y, finals = _builtin_operator_block(ctx, block, x, given)
    y = _residual(ctx, block, _merge(g, block, y), x)
    first = None
    for state, (key, values) in zip(block.state_names, finals.items()):
        name = f"{state_keys(state)[1]}.{block.name}"
        first = first or name
        g.used.add(name)
        g.node("Concat" if len(values) > 1 else "Identity", values, [name],
               **({"axis": 0} if len(values) > 1 else {}))
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                           list(block.states[key])))
    return y, first


def _network_inputs(g: _Graph, stack: model.Stack, graph_inputs: list) -> tuple[str, dict]:
    """The input and side inputs as graph inputs, time-first: (input, side values)."""
    from onnx import TensorProto, helper

    if stack.ids:
        shape = ["B", "T"] if stack.batch_first else ["T", "B"]
        graph_inputs.append(helper.make_tensor_value_info("input", TensorProto.INT64, shape))
        x = g.node("Transpose", ["input"], hint="input.t", perm=[1, 0]) \
            if stack.batch_first else "input"
    else:
        shape = ["B", "T", stack.input_size] if stack.batch_first else ["T", "B",
                                                                         stack.input_size]
        graph_inputs.append(helper.make_tensor_value_info("input", TensorProto.FLOAT, shape))
        x = g.node("Transpose", ["input"], hint="input.t", perm=[1, 0, 2]) \
            if stack.batch_first else "input"
    sides = {}
    for side in stack.side_inputs:
        g.used.add(side.name)
        dims = ["B", side.size] if side.per_sequence else (
            ["B", "T", side.size] if stack.batch_first else ["T", "B", side.size])
        graph_inputs.append(helper.make_tensor_value_info(side.name, TensorProto.FLOAT, dims))
        value = side.name
        if stack.batch_first and not side.per_sequence:
            value = g.node("Transpose", [value], hint=f"{side.name}.t", perm=[1, 0, 2])
        sides[side.name] = value
    return x, sides


def build_network(stack: model.Stack, weights: dict, *, opset: int, initial_states: bool,
                  scan_everything: bool, lengths: bool, doc: str):
    """The ONNX model of a stack with layers (`backends.onnx.layers`)."""
    from onnx import TensorProto, helper

    from rnnspec.backends.onnx import layers

    layers.check_exportable(stack, opset, lengths)
    g = _Graph(opset)
    for name in ("input", "output", "lengths", "output_lengths"):
        g.used.add(name)
    graph_inputs: list = []
    graph_outputs: list = []
    x, sides = _network_inputs(g, stack, graph_inputs)
    batch = g.node("Gather", [g.node("Shape", [x], hint="input.shape"), g.ints([1])],
                   hint="batch", axis=0)
    flow = layers._Flow(x, None, None)
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"]))
        flow = layers._Flow(x, "lengths", _valid_steps(g, x, "lengths"))
    produced = {"input": flow, **{n: layers._Flow(v, flow.lengths, flow.valid)
                                  for n, v in sides.items()}}
    per_sequence = {s.name: s.size for s in stack.side_inputs if s.per_sequence}
    finals: dict = {}
    for entry in stack.entries:
        if entry.source is not None:
            flow = _network_source(g, entry.source, produced, per_sequence)
        if flow.layout is not None and entry.grid is None:
            flow = layers.leave_map(g, flow, f"{entry.name}.input")
        if flow.layout is None and entry.grid is not None:
            flow = layers.enter_map(g, flow, entry.arguments.get("layout", "features_first"),
                                    f"{entry.name}.map")
        if entry.recurrent:
            ctx = _StackContext(g, weights, batch, initial_states, flow.lengths, flow.valid)
            y, h = _block_graph(ctx, entry, flow.value, graph_inputs, graph_outputs,
                                scan_everything)
            finals["last"] = (entry, h)
            flow = layers._Flow(y, flow.lengths, flow.valid)
        else:
            flow = layers.emit_layer(g, entry, flow, weights,
                                     lambda value, n: _valid_steps(g, value, n), finals)
        produced[entry.name] = layers.leave_map(g, flow, f"{entry.name}.flat") \
            if flow.layout is not None and any(entry.name in (e.source.parts if e.source else ())
                                               for e in stack.entries) else flow
    if flow.layout is not None:  # the output inside a run: [T', B, C, F']
        perm = [2, 0, 1, 3] if flow.layout == "time_first" else [3, 0, 1, 2]
        flow = layers._Flow(g.node("Transpose", [flow.value], hint="output.map", perm=perm),
                            flow.lengths, flow.valid)
        if flow.valid is not None:  # [T, B, 1] -> [T, B, 1, 1]
            flow.valid = g.node("Unsqueeze", [flow.valid, g.ints([3])], hint="output.valid")
    y = flow.value
    if flow.valid is not None:
        y = g.node("Where", [flow.valid, y, g.scalar(0.0)], hint="output.masked")
    if stack.batch_first and flow.timed:
        g.node("Transpose", [y], ["output"], perm=[1, 0, *range(2, len(stack.output))])
    else:
        g.node("Identity", [y], ["output"])
    graph_outputs.insert(0, helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                                          list(stack.output)))
    if flow.lengths is not None and flow.timed:
        g.node("Identity", [flow.lengths], ["output_lengths"])
        graph_outputs.insert(1, helper.make_tensor_value_info("output_lengths",
                                                              TensorProto.INT64, ["B"]))
    graph = helper.make_graph(g.nodes, stack.name, graph_inputs, graph_outputs,
                              initializer=g.initializers, doc_string=doc)
    opsets = [helper.make_opsetid("", opset)]
    from rnnspec import __version__

    return helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER,
                             producer_version=__version__,
                             ir_version=helper.find_min_ir_version_for(opsets))


def _network_source(g: _Graph, source: model.Source, produced: dict, per_sequence: dict):
    """What an entry reads through `from`: a part, or the parts joined (a per-sequence
    side input repeated over the time of the others)."""
    from rnnspec.backends.onnx import layers

    parts = [produced[name] for name in source.parts]
    if source.mode == "name":
        return parts[0]
    timed = next((p for name, p in zip(source.parts, parts) if name not in per_sequence),
                 None)
    values = []
    for name, part in zip(source.parts, parts):
        value = part.value
        if name in per_sequence and timed is not None and timed.timed:
            leading = g.node("Slice", [g.node("Shape", [timed.value], hint=f"{name}.shape"),
                                       g.ints([0]), g.ints([2])], hint=f"{name}.leading")
            width = g.ints([per_sequence[name]])
            shape = g.node("Concat", [leading, width], hint=f"{name}.over_time", axis=0)
            value = g.node("Expand", [g.node("Unsqueeze", [value, g.ints([0])], hint=name),
                                      shape], hint=f"{name}.over_time")
        values.append(value)
    if source.mode == "sum":
        total = values[0]
        for value in values[1:]:
            total = g.node("Add", [total, value], hint="sum")
        y = total
    else:
        y = g.node("Concat", values, hint="concat", axis=-1)
    base = timed or parts[0]
    return layers._Flow(y, base.lengths, base.valid, base.timed)
