"""ONNX export: an ONNX graph written from the checked model, not traced.

`rnnspec export FILE --stack NAME -o OUT.onnx` reads the checked `model.Stack` and writes
one node group per block:

- a block of a cell whose registry record names an ONNX operator (`registry.OnnxOp`: the
  built-in `lstm`, `gru`, `rnn`) becomes that operator, one per layer, with the gate order
  and biases converted (B = concat(bias_ih, bias_hh)), unless the block sets an argument
  the operator cannot express (an LSTM's `proj_size`) or `zoneout`;
- every other block becomes one `Scan` per layer and direction whose body is its cell's
  step: a user cell's checked `equations.Step`, or a built-in cell's equations (`cells.builtin`),
  lowered to statements (`Stmt`). Statements that read no state are
  computed before the loop (those reading `x` for every time step at once).

`merge` and `residual` follow each block. The graph is the evaluation-mode forward pass:
dropout between layers is absent, zoneout keeps p of the previous state. Inputs: `input`
(`[T, B, I]`, or `[B, T, I]` with `batch_first`); with `lengths=True`, `lengths` (`[B]`
int64: a padded batch); with `initial_states=True`, `h0.<block>` (and `c0.<block>`, one
per state) `[D*L, B, size]`; without them every block starts from zeros. Outputs:
`output`, `h_n.<block>` (and `c_n.<block>`, ...). T and B are dynamic (`dim_param`).

onnx (and numpy) are imported inside the functions that need them; torch only to read a
checkpoint or to initialise parameters from the generated module.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from rnnspec import model
from rnnspec.language.names import Namespace

MIN_OPSET = 14  # Reshape/Unsqueeze/Squeeze/Split with tensor inputs; LSTM `layout`
MAX_OPSET = 21  # the newest opset tested with onnxruntime
DEFAULT_OPSET = 17
PRODUCER = "rnnspec"
# protobuf cannot serialise a message of 2 GiB or more
MAX_MODEL_BYTES = 2**31 - 2**20


class ExportError(Exception):
    """The export cannot be done; `status` is the CLI's exit status (1 or 2)."""

    def __init__(self, message: str, status: int = 2, help: str | None = None):
        super().__init__(message)
        self.status = status
        self.help = help


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


class _Graph:
    """Nodes of one ONNX graph (the main graph or a Scan body) with a shared name pool.

    Initializers always go to the root graph; a body refers to them as outer-scope values.
    """

    def __init__(self, opset: int, root: _Graph | None = None):
        self.opset = opset
        self.root = root or self
        self.nodes: list = []
        if root is None:
            self.used = Namespace()
            self.initializers: list = []
            self.initializer_bytes = 0
            self._scalars: dict[float, str] = {}
            self._int_constants: dict[tuple, str] = {}
            self._transposed: dict[str, str] = {}

    def fresh(self, hint: str) -> str:
        return self.root.used.create(hint)

    def node(self, op: str, inputs, outputs=1, hint: str | None = None, **attrs):
        """Append a node; returns its output name (or the list of names, for several)."""
        from onnx import helper

        if isinstance(outputs, int):
            names = [self.fresh(f"{hint or op.lower()}") for _ in range(outputs)]
        else:
            names = list(outputs)
        self.nodes.append(helper.make_node(op, list(inputs), names,
                                           name=self.fresh(f"node.{names[0]}"), **attrs))
        return names[0] if len(names) == 1 else names

    def initializer(self, hint: str, array) -> str:
        from onnx import numpy_helper

        root = self.root
        name = root.fresh(hint)
        root.initializers.append(numpy_helper.from_array(array, name))
        root.initializer_bytes += array.nbytes
        if root.initializer_bytes > MAX_MODEL_BYTES:
            raise ExportError(
                "the parameters take more than 2 GiB, the most one ONNX protobuf file can hold",
                help="export a smaller stack (ONNX external data is not supported yet)")
        return name

    def scalar(self, value: float) -> str:
        import numpy as np

        root = self.root
        if float(value) not in root._scalars:
            root._scalars[float(value)] = self.initializer(
                "const", np.array(value, dtype=np.float32))
        return root._scalars[float(value)]

    def ints(self, values) -> str:
        import numpy as np

        root = self.root
        key = tuple(int(v) for v in values)
        if key not in root._int_constants:
            root._int_constants[key] = self.initializer("ints", np.array(key, dtype=np.int64))
        return root._int_constants[key]

    def transposed(self, weight: str) -> str:
        """`weight` transposed, computed once in the root graph (folded by runtimes)."""
        root = self.root
        if weight not in root._transposed:
            root._transposed[weight] = root.node("Transpose", [weight], hint=f"{weight}.T",
                                                 perm=[1, 0])
        return root._transposed[weight]


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


# ----------------------------------------------------------------------------- blocks


def _reorder(array, gate_order: tuple[int, ...]):
    import numpy as np

    pieces = np.split(array, len(gate_order), axis=0)
    return np.concatenate([pieces[i] for i in gate_order], axis=0)


class _StackContext(NamedTuple):
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
    """A block as ONNX's own operator for its cell (`registry.OnnxOp`), one per layer."""
    import numpy as np

    g, D, H = ctx.g, block.num_directions, block.hidden_size
    spec = block.spec.onnx
    keys = list(block.states)
    direction = "bidirectional" if block.bidirectional else "forward"
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
        inputs = [x, W, R, B, lengths]
        inputs += [_layer_states(ctx, block, key, given.get(key), layer) for key in keys]
        attrs = {"hidden_size": H, "direction": direction, **dict(spec.attributes)}
        if spec.activation is not None:
            names = dict(spec.activations)
            attrs["activations"] = [names[block.arguments[spec.activation]]] * D
        while inputs and inputs[-1] == "":
            inputs.pop()
        outs = g.node(spec.op, inputs, 1 + len(keys), hint=f"{block.name}.l{layer}", **attrs)
        for key, value in zip(keys, outs[1:]):
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
    statements = lower_step(step)
    for layer in range(block.num_layers):
        outputs = []
        for reverse in (False, True)[:D]:
            suffix = f"_l{layer}" + ("_reverse" if reverse else "")
            params = {}
            for p in block.parameters:
                if p.layer == layer and p.reverse == reverse:
                    key = f"{block.name}.{p.name}"
                    array = ctx.weights[key]
                    params[p.role] = (g.initializer(key, array), array.shape)
            index = layer * D + int(reverse)
            states = [(name, sizes[key],
                       _initial_state(ctx, block, key, given.get(key), sizes[key], index))
                      for name, key in zip(names, keys)]
            source = x
            by_length = reverse and ctx.lengths is not None
            if by_length:  # each sequence from its own last valid step
                source = _reverse_sequences(ctx, x, f"{block.name}{suffix}.reversed")
            y, last = emit_recurrence(g, f"{block.name}{suffix}", statements, x=source,
                                      x_size=layer_input, states=states, params=params,
                                      reverse=reverse and not by_length, valid=ctx.valid,
                                      zoneout=zoneout)
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
    spec = block.spec.onnx
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

    from rnnspec.cells.registry import state_keys

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported: rnnspec writes opsets "
                          f"{MIN_OPSET} to {MAX_OPSET}")
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
        given: dict[str, str | None] = {}
        for key, shape in block.states.items():
            if initial_states:
                name = f"{key}.{block.name}"
                g.used.add(name)
                graph_inputs.append(helper.make_tensor_value_info(
                    name, TensorProto.FLOAT, list(shape)))
                given[key] = name
            else:
                given[key] = None
        if scan_everything or uses_scan(block):
            y, finals = _scan_block(ctx, block, x, given)
        else:
            y, finals = _builtin_operator_block(ctx, block, x, given)
        x = _residual(ctx, block, _merge(g, block, y), x)
        for state, (key, values) in zip(block.state_names, finals.items()):
            name = f"{state_keys(state)[1]}.{block.name}"
            g.used.add(name)
            if len(values) == 1:
                g.node("Identity", values, [name])
            else:
                g.node("Concat", values, [name], axis=0)
            graph_outputs.append(helper.make_tensor_value_info(
                name, TensorProto.FLOAT, list(block.states[key])))
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


def validate(onnx_model):
    """onnx.checker (full check) and strict shape inference; returns the inferred model."""
    import onnx

    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx.shape_inference.infer_shapes(onnx_model, check_type=True, strict_mode=True)


# ----------------------------------------------------------------------------- parameters


def load_weights(path: str) -> dict:
    """A checkpoint's state dict as {key: tensor}: `.safetensors`, or a `torch.save` file of
    a state dict (read with weights_only=True). The shared checkpoint reader replaces this."""
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return dict(load_file(path))
        import torch

        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ExportError(f"cannot read `{path}`: no such file") from None
    except ImportError as exc:
        raise ExportError(f"cannot read `{path}`: {exc}") from None
    except IsADirectoryError:
        raise ExportError(f"cannot read `{path}`: it is a folder") from None
    except PermissionError:
        raise ExportError(f"cannot read `{path}`: permission denied") from None
    except Exception as exc:  # torch and safetensors raise many kinds for a bad file
        if "was not an allowed global" in str(exc) or "Unsupported global" in str(exc):
            raise ExportError(
                f"cannot read `{path}`: it holds objects other than tensors and plain "
                "containers, which loading with weights_only=True refuses",
                help="save the state dict alone: torch.save(model.state_dict(), path)") from None
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
        first = [] if "Weights only load failed" in text else text.splitlines()
        raise ExportError(f"cannot read `{path}` as a checkpoint"
                          + (f": {first[0]}" if first else ""),
                          help="give a state dict saved with torch.save or a .safetensors "
                               "file") from None
    if isinstance(loaded, dict) and not any(hasattr(v, "shape") for v in loaded.values()):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict):
        raise ExportError(f"`{path}` holds a {type(loaded).__name__}, not a state dict")
    return loaded


def match_weights(stack: model.Stack, state: dict, source: str) -> dict:
    """{"<block>.<param>": float32 numpy array} for every parameter, checked by shape."""
    import numpy as np

    expected = {f"{b.name}.{p.name}": p.shape for b in stack.blocks for p in b.parameters}
    problems = []
    for key, shape in expected.items():
        if key not in state:
            problems.append(f"missing `{key}` {list(shape)}")
        elif tuple(state[key].shape) != shape:
            problems.append(f"`{key}` is {list(state[key].shape)}, the stack needs "
                            f"{list(shape)}")
    if len(problems) > 10:
        problems[10:] = [f"... and {len(problems) - 10} more missing or mis-shaped tensors"]
    extra = sorted(set(state) - set(expected))
    problems += [f"unexpected `{key}`" for key in extra[:5]]
    if len(extra) > 5:
        problems.append(f"... and {len(extra) - 5} more unexpected keys")
    if problems:
        raise ExportError(
            f"{source} does not match stack `{stack.name}`:\n  " + "\n  ".join(problems),
            status=1, help=f"keys are `<block>.<parameter>` as the generated `{stack.name}`'s "
                           "state_dict() names them")
    out = {}
    for key in expected:
        value = state[key]
        if hasattr(value, "detach"):
            value = value.detach().to(device="cpu").float().numpy()
        out[key] = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
    return out


def initial_weights(spec_path: str, stack: model.Stack, seed: int) -> dict:
    """The generated module's own initialisation with `torch.manual_seed(seed)`."""
    import torch

    from rnnspec import load

    module = getattr(load(spec_path), stack.name)
    torch.manual_seed(seed)
    with torch.device("cpu"):
        net = module()
    return net.state_dict()


# ----------------------------------------------------------------------------- files


def _is_ours(path: str) -> bool:
    """Whether `path` is an ONNX file rnnspec wrote: its producer_name is field 2, right
    after ir_version, in the serialised bytes."""
    with open(path, "rb") as handle:
        head = handle.read(32)
    mark = b"\x12" + bytes([len(PRODUCER)]) + PRODUCER.encode()
    return head[:1] == b"\x08" and mark in head[:16]


def write_bytes(path: str, data: bytes, *, force: bool = False) -> None:
    """Write `data` to `path` atomically; refuse to replace a file rnnspec did not write."""
    from rnnspec.tools.files import OutputError, write_output

    try:
        write_output(path, data, is_ours=_is_ours, force=force)
    except OutputError as exc:
        raise ExportError(str(exc)) from None


def find_stack(result: model.CheckedFile, name: str | None) -> model.Stack:
    names = [s.name for s in result.stacks]
    if name is None:
        if len(names) == 1:
            return result.stacks[0]
        raise ExportError(f"`{result.path}` has {len(names)} stacks; say which with --stack",
                          help="stacks: " + ", ".join(f"`{n}`" for n in names))
    for stack in result.stacks:
        if stack.name == name:
            return stack
    from rnnspec.language.diagnostics import did_you_mean

    hint = did_you_mean(name, names)
    raise ExportError(f"no stack `{name}` in `{result.path}`",
                      help=hint or ("stacks: " + ", ".join(f"`{n}`" for n in names)))


def export(result: model.CheckedFile, output: str, *, stack_name: str | None = None,
           weights: str | None = None, opset: int = DEFAULT_OPSET, seed: int = 0,
           initial_states: bool = False, lengths: bool = False,
           force: bool = False) -> model.Stack:
    """Export a checked file's stack to `output`; raises ExportError."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported: rnnspec writes opsets "
                          f"{MIN_OPSET} to {MAX_OPSET}")
    stack = find_stack(result, stack_name)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ExportError("export needs onnx: pip install 'rnnspec[onnx]'") from None
    if weights is not None:
        state, source = load_weights(weights), f"`{weights}`"
    else:
        try:
            state = initial_weights(result.path, stack, seed)
        except ImportError:
            raise ExportError("export without --weights needs torch to initialise the "
                              "parameters: pip install 'rnnspec[torch]'") from None
        source = "the initialisation"
    arrays = match_weights(stack, state, source)
    doc = (f"stack {stack.name} of {os.path.basename(result.path)}, exported by rnnspec "
           f"(evaluation mode: no dropout); parameters from "
           f"{os.path.basename(weights) if weights else f'the initialisation, seed {seed}'}")
    try:
        onnx_model = build_model(stack, arrays, opset=opset, initial_states=initial_states,
                                 lengths=lengths, doc=doc)
    except ValueError as exc:  # a step the builder cannot write: a bug of ours
        raise ExportError(f"cannot write the graph of stack `{stack.name}` (a bug in "
                          f"rnnspec; nothing was written): {exc}",
                          help="please report it with the spec") from None
    try:
        validate(onnx_model)
    except Exception as exc:  # onnx.checker / shape inference: a bug of ours, not the user's
        raise ExportError(f"the graph written for stack `{stack.name}` fails ONNX's checks "
                          f"(a bug in rnnspec; nothing was written): {exc}",
                          help="please report it with the spec") from None
    write_bytes(output, onnx_model.SerializeToString(), force=force)
    return stack
