"""Scan bodies of cells: a checked step lowered to statements (`Stmt`) and each statement
as ONNX nodes; statements that read no state are computed before the loop."""

from __future__ import annotations

from typing import NamedTuple

from rnnspec import model
from rnnspec.backends.onnx.graph import DEFAULT_OPSET, PRODUCER, _Graph
from rnnspec.language.names import Namespace

# ----------------------------------------------------------------------------- step IR


class Stmt(NamedTuple):
    """One step statement: `outputs = op(*inputs)`.

    `inputs` are names (of `x`, a state, a parameter, or an earlier statement's output) or
    Python numbers (scalars). `outputs` is one name, or a tuple of names for `chunk`. A
    name may be assigned again (a state's new value): later statements read the newest.
    Ops (the language's section 8 vocabulary, as step functions of one batch of vectors):
    add sub mul div neg, matmul (`W @ v` in PyTorch's F.linear layout: W `[m, n]`, v `[n]`),
    sigmoid tanh relu gelu silu softplus logsigmoid exp log abs sqrt, clamp (attrs `low`,
    `high`), minimum maximum, concat, chunk (attrs `n`), layer_norm (inputs a [, weight
    [, bias]]; attrs `eps`), identity.
    """

    op: str
    inputs: tuple
    outputs: str | tuple[str, ...]
    attrs: dict | None = None


_ELEMENTWISE = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "minimum": "Min",
                "maximum": "Max"}
_UNARY = {"neg": "Neg", "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "exp": "Exp",
          "log": "Log", "abs": "Abs", "sqrt": "Sqrt", "softplus": "Softplus",
          "identity": "Identity"}


def _outputs(stmt: Stmt) -> tuple[str, ...]:
    return (stmt.outputs,) if isinstance(stmt.outputs, str) else tuple(stmt.outputs)


def _emit_stmt(g: _Graph, stmt: Stmt, args: list[str], features: dict[str, int],
               unbatched: list[bool] | None = None) -> list[str]:
    """ONNX nodes for one statement over tensors whose last axis is the feature axis.
    `unbatched[i]`: whether argument i has no batch axes (a parameter, or a value computed
    from parameters only), which `concat` must broadcast to the others' leading axes."""
    op, attrs = stmt.op, stmt.attrs or {}
    outputs = _outputs(stmt)
    hint = outputs[0]
    if op in _ELEMENTWISE:
        return [g.node(_ELEMENTWISE[op], args, hint=hint)]
    if op in _UNARY:
        return [g.node(_UNARY[op], args, hint=hint)]
    if op == "silu":  # x * sigmoid(x)
        return [g.node("Mul", [args[0], g.node("Sigmoid", args, hint=f"{hint}.gate")],
                       hint=hint)]
    if op == "logsigmoid":  # -softplus(-x)
        inner = g.node("Softplus", [g.node("Neg", args, hint=f"{hint}.neg")],
                       hint=f"{hint}.softplus")
        return [g.node("Neg", [inner], hint=hint)]
    if op == "gelu":  # PyTorch's exact gelu: x * (1 + erf(x / sqrt(2))) / 2
        if g.opset >= 20:
            return [g.node("Gelu", args, hint=hint)]
        scaled = g.node("Mul", [args[0], g.scalar(0.7071067811865476)], hint=f"{hint}.scaled")
        erf = g.node("Add", [g.node("Erf", [scaled], hint=f"{hint}.erf"), g.scalar(1.0)],
                     hint=f"{hint}.erf1")
        half = g.node("Mul", [args[0], g.scalar(0.5)], hint=f"{hint}.half")
        return [g.node("Mul", [half, erf], hint=hint)]
    if op == "clamp":
        return [g.node("Clip", [args[0], g.scalar(attrs["low"]), g.scalar(attrs["high"])],
                       hint=hint)]
    if op == "matmul":
        weight, vector = args
        return [g.node("MatMul", [vector, g.transposed(weight)], hint=hint)]
    if op == "concat":
        flags = unbatched or [False] * len(args)
        if any(flags) and not all(flags):  # parameters meet batched values: broadcast them
            reference = args[flags.index(False)]
            leading = g.node("Slice", [g.node("Shape", [reference], hint=f"{hint}.shape"),
                                       g.ints([0]), g.ints([-1])], hint=f"{hint}.leading")
            parts = []
            for arg, name, flag in zip(args, stmt.inputs, flags):
                if flag:
                    shape = g.node("Concat", [leading, g.ints([features[name]])],
                                   hint=f"{hint}.shape", axis=0)
                    arg = g.node("Expand", [arg, shape], hint=f"{name}.expanded")
                parts.append(arg)
            args = parts
        return [g.node("Concat", args, hint=hint, axis=-1)]
    if op == "chunk":
        size = features[stmt.inputs[0]]
        n = attrs.get("n", len(outputs))
        if n != len(outputs) or size % n:
            raise ValueError(f"cannot chunk {size} features into {len(outputs)} pieces")
        if n == 1:
            return [g.node("Identity", args, hint=hint)]
        split = g.ints([size // n] * n)
        names = [g.fresh(name) for name in outputs]
        g.node("Split", [args[0], split], names, axis=-1)
        return names
    if op == "layer_norm":
        eps = float(attrs.get("eps", 1e-5))
        a, *affine = args
        if g.opset >= 17 and affine:
            scale = affine[0]
            inputs = [a, scale] + ([affine[1]] if len(affine) > 1 else [])
            return [g.node("LayerNormalization", inputs, hint=hint, axis=-1, epsilon=eps)]
        axes = g.ints([-1])
        mean_inputs = [a, axes] if g.opset >= 18 else [a]
        mean_attrs = {} if g.opset >= 18 else {"axes": [-1]}
        mean = g.node("ReduceMean", mean_inputs[:1] + mean_inputs[1:], hint=f"{hint}.mean",
                      **mean_attrs)
        centred = g.node("Sub", [a, mean], hint=f"{hint}.centred")
        square = g.node("Mul", [centred, centred], hint=f"{hint}.square")
        var_inputs = [square, axes] if g.opset >= 18 else [square]
        variance = g.node("ReduceMean", var_inputs, hint=f"{hint}.var", **mean_attrs)
        spread = g.node("Sqrt", [g.node("Add", [variance, g.scalar(eps)])], hint=f"{hint}.std")
        out = g.node("Div", [centred, spread], hint=hint)
        if affine:
            out = g.node("Mul", [out, affine[0]], hint=hint)
        if len(affine) > 1:
            out = g.node("Add", [out, affine[1]], hint=hint)
        return [out]
    raise ValueError(f"unknown step operation {op!r}")


def _stmt_features(stmt: Stmt, features: dict[str, int], params: dict[str, tuple]) -> list[int]:
    """The feature sizes of a statement's outputs (for chunk sizes and Scan signatures)."""
    def size(arg):
        return 1 if isinstance(arg, (int, float)) else features[arg]

    op = stmt.op
    if op == "matmul":
        return [params[stmt.inputs[0]][0]]
    if op == "concat":
        return [sum(size(a) for a in stmt.inputs)]
    if op == "chunk":
        n = len(_outputs(stmt))
        return [size(stmt.inputs[0]) // n] * n
    if op == "layer_norm":
        return [size(stmt.inputs[0])]
    return [max(size(a) for a in stmt.inputs)]


def _single_assignment(statements: list[Stmt], fixed: set[str]) -> tuple[list[Stmt], dict]:
    """The statements with every name assigned once (a name assigned again, or a state or
    parameter assigned, gets a fresh name; later reads follow it), and {name: its last
    name}."""
    current: dict[str, str] = {}
    taken = Namespace(fixed, separator=".")
    renamed = []
    for stmt in statements:
        inputs = tuple(a if isinstance(a, (int, float)) else current.get(a, a)
                       for a in stmt.inputs)
        outs = []
        for out in _outputs(stmt):
            new = taken.create(out)
            current[out] = new
            outs.append(new)
        renamed.append(stmt._replace(inputs=inputs, outputs=outs[0] if isinstance(
            stmt.outputs, str) else tuple(outs)))
    return renamed, current


def emit_recurrence(g: _Graph, scope: str, statements: list[Stmt], *, x: str, x_size: int,
                    states: list[tuple[str, int, str]], params: dict[str, tuple[str, tuple]],
                    reverse: bool = False, valid: str | None = None,
                    zoneout: float = 0.0) -> tuple[str, list[str]]:
    """A recurrence over the time axis of `x` (`[T, B, x_size]`) as one ONNX `Scan`.

    `states`: (name, size, initial value `[B, size]` in `g`), in order; the first is the
    step's output. `params`: IR name -> (graph value name, shape). Statements that read no
    state are computed before the loop: those reading `x` for all steps at once (the body
    reads one step's slice), those reading parameters and numbers only once (the body reads
    them as they are, broadcast). `valid` (`[T, B, 1]` bool): a step updates a sequence's
    states only where it is true. `zoneout` (evaluation mode): the first state becomes
    `p * previous + (1 - p) * new`.
    Returns (the outputs `[T, B, size of the first state]`, the final states `[B, size]`).
    """
    from onnx import TensorProto, helper

    state_names = [name for name, _, _ in states]
    statements, last = _single_assignment(statements, {"x", *state_names, *params})
    features: dict[str, int] = {"x": x_size}
    features.update({name: size for name, size, _ in states})
    param_shapes = {name: shape for name, (_, shape) in params.items()}
    for name, (_, shape) in params.items():
        features[name] = shape[-1] if len(shape) == 1 else shape[0]

    # Where each value is computed: "timed" (reads x: before the loop, per step),
    # "static" (parameters and numbers only: before the loop, once), "body" (in the loop).
    kind: dict[str, str] = {"x": "timed", **{n: "body" for n in state_names},
                            **{n: "static" for n in params}}

    def kind_of(arg) -> str:
        return "static" if isinstance(arg, (int, float)) else kind[arg]

    for stmt in statements:
        kinds = {kind_of(a) for a in stmt.inputs}
        where = "body" if "body" in kinds else "timed" if "timed" in kinds else "static"
        for out, size in zip(_outputs(stmt), _stmt_features(stmt, features, param_shapes)):
            features[out] = size
            kind[out] = where

    def flags(stmt: Stmt) -> list[bool]:
        return [kind_of(a) == "static" for a in stmt.inputs]

    outer_env = {"x": x}
    outer_env.update({name: value for name, (value, _) in params.items()})
    for stmt in statements:
        if kind[_outputs(stmt)[0]] == "body":
            continue
        args = [g.scalar(a) if isinstance(a, (int, float)) else outer_env[a] for a in stmt.inputs]
        for out, value in zip(_outputs(stmt), _emit_stmt(g, stmt, args, features, flags(stmt))):
            outer_env[out] = value

    body_graph = _Graph(g.opset, root=g.root)
    env: dict[str, str] = {}
    state_inputs, scan_inputs, scan_outer = [], [], []
    for name, size, _ in states:
        env[name] = body_graph.fresh(f"{scope}.{name}_prev")
        state_inputs.append(helper.make_tensor_value_info(env[name], TensorProto.FLOAT,
                                                          ["B", size]))

    def read(arg) -> str:
        """A value in the body: a number, a state, a step's slice, or an outer value."""
        if isinstance(arg, (int, float)):
            return body_graph.scalar(arg)
        if arg not in env:
            if kind[arg] == "timed":
                env[arg] = body_graph.fresh(f"{scope}.{arg}_t")
                scan_inputs.append(helper.make_tensor_value_info(
                    env[arg], TensorProto.FLOAT, ["B", features[arg]]))
                scan_outer.append(outer_env[arg])
            else:
                env[arg] = outer_env[arg]
        return env[arg]

    for stmt in statements:
        if kind[_outputs(stmt)[0]] != "body":
            continue
        args = [read(a) for a in stmt.inputs]
        for out, value in zip(_outputs(stmt),
                              _emit_stmt(body_graph, stmt, args, features, flags(stmt))):
            env[out] = value

    previous = {name: env[name] for name in state_names}
    new = {}
    for name in state_names:
        value = read(last.get(name, name))
        if kind[last.get(name, name)] == "static":  # parameters only: one value per sequence
            shape = body_graph.node("Shape", [previous[name]], hint=f"{scope}.{name}_shape")
            value = body_graph.node("Expand", [value, shape], hint=f"{scope}.{name}_expanded")
        new[name] = value
    if zoneout:
        first = state_names[0]
        kept = body_graph.node("Mul", [previous[first], body_graph.scalar(zoneout)],
                               hint=f"{scope}.{first}_kept")
        taken = body_graph.node("Mul", [new[first], body_graph.scalar(1.0 - zoneout)],
                                hint=f"{scope}.{first}_taken")
        new[first] = body_graph.node("Add", [kept, taken], hint=f"{scope}.{first}_zoned")
    if valid is not None:
        valid_t = body_graph.fresh(f"{scope}.valid_t")
        scan_inputs.append(helper.make_tensor_value_info(valid_t, TensorProto.BOOL, ["B", 1]))
        scan_outer.append(valid)
        for name in state_names:
            new[name] = body_graph.node("Where", [valid_t, new[name], previous[name]],
                                        hint=f"{scope}.{name}_masked")
    if not scan_inputs:  # a recurrence that never reads x still runs T steps
        read("x")

    # Outputs: every state's new value, then the first state again as the scan output.
    # (ONNX needs distinct output names that are not inputs.)
    inputs = {vi.name for vi in state_inputs + scan_inputs}
    state_outputs, seen = [], set()
    for name, size, _ in states:
        value = new[name]
        if value in inputs or value in seen or value not in _produced(body_graph):
            value = body_graph.node("Identity", [value], hint=f"{scope}.{name}_next")
        seen.add(value)
        state_outputs.append(helper.make_tensor_value_info(value, TensorProto.FLOAT,
                                                           ["B", size]))
    first_name, first_size, _ = states[0]
    step_output = body_graph.node("Identity", [state_outputs[0].name],
                                  hint=f"{scope}.{first_name}_t")
    outputs = state_outputs + [helper.make_tensor_value_info(step_output, TensorProto.FLOAT,
                                                             ["B", first_size])]
    body_proto = helper.make_graph(body_graph.nodes, g.fresh(f"{scope}.step"),
                                   state_inputs + scan_inputs, outputs)
    finals = [g.fresh(f"{scope}.{name}_n") for name, _, _ in states]
    sequence = g.fresh(f"{scope}.y")
    direction = [1 if reverse else 0]
    g.node("Scan", [initial for _, _, initial in states] + scan_outer, finals + [sequence],
           body=body_proto, num_scan_inputs=len(scan_outer),
           scan_input_directions=direction * len(scan_outer), scan_output_directions=direction)
    return sequence, finals


def _produced(graph: _Graph) -> set[str]:
    return {name for node in graph.nodes for name in node.output}


def recurrence_model(statements: list[Stmt], *, x_size: int, states: list[tuple[str, int]],
                     params: dict, opset: int = DEFAULT_OPSET, reverse: bool = False):
    """One recurrence alone as a model, to test step statements: inputs `x` `[T, B, x_size]`
    and `<state>0` `[B, size]`; outputs `y` `[T, B, size of the first state]` and
    `<state>_n`. `params`: name -> float32 array."""
    from onnx import TensorProto, helper

    g = _Graph(opset)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", x_size])]
    g.used.update(["x", "y"])
    for name, size in states:
        g.used.update([f"{name}0", f"{name}_n"])
        inputs.append(helper.make_tensor_value_info(f"{name}0", TensorProto.FLOAT, ["B", size]))
    weights = {name: (g.initializer(name, array), array.shape) for name, array in params.items()}
    y, finals = emit_recurrence(g, "cell", statements, x="x", x_size=x_size,
                                states=[(n, size, f"{n}0") for n, size in states],
                                params=weights, reverse=reverse)
    g.node("Identity", [y], ["y"])
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", "B", states[0][1]])]
    for (name, size), value in zip(states, finals):
        g.node("Identity", [value], [f"{name}_n"])
        outputs.append(helper.make_tensor_value_info(f"{name}_n", TensorProto.FLOAT,
                                                     ["B", size]))
    graph = helper.make_graph(g.nodes, "recurrence", inputs, outputs,
                              initializer=g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER,
                             ir_version=helper.find_min_ir_version_for(opsets))


# ----------------------------------------------------------------------------- cells as IR


def lower_step(step) -> list[Stmt]:
    """A checked step (`equations.Step`: statements as trees of `Node`s) as statements,
    one per operation; intermediate values are named `_t<k>` (spec names never start
    with `_`)."""
    statements: list[Stmt] = []
    counter = iter(range(10**9))

    def value(node):
        op = node.op
        if op == "number":
            return node.value
        if op == "x":
            return "x"
        if op in ("state", "local", "param"):
            return node.value
        return emit(node, f"_t{next(counter)}")

    def emit(node, out: str) -> str:
        op = node.op
        if op in ("number", "x", "state", "local", "param"):
            statements.append(Stmt("identity", (value(node),), out))
            return out
        attrs = None
        if op == "matmul":
            matrix, vector = node.args
            inputs = (matrix.value, value(vector))
        elif op == "clamp":
            inputs = (value(node.args[0]),)
            attrs = {"low": float(node.value[0]), "high": float(node.value[1])}
        elif op == "layer_norm":
            inputs = tuple(value(a) for a in node.args)
            attrs = {"eps": float(node.value)}
        elif op == "chunk":
            raise ValueError("a chunk stands alone on the right of an assignment")
        else:
            inputs = tuple(value(a) for a in node.args)
        statements.append(Stmt(op, inputs, out, attrs))
        return out

    for assign in step.statements:
        node = assign.node
        if node.op == "chunk":
            inner = value(node.args[0])
            targets = tuple(assign.targets)
            statements.append(Stmt("chunk", (inner,), targets if len(targets) > 1
                                   else targets[0], {"n": node.value[0]}))
        else:
            emit(node, assign.targets[0])
    return statements


def builtin_step(block: model.Block):
    """The step of a built-in cell for `block`'s arguments: its equations (`cells.builtin`),
    checked once per variant by the cell checker, an `equations.Step` as user cells have."""
    from rnnspec.cells import builtin

    return builtin.step(block.spec, block.arguments)
