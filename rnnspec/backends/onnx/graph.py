"""The ONNX graph builder (in the manner of onnxscript's `GraphBuilder`: constants in the
root graph, a body graph for each Scan) and how each step op becomes ONNX nodes."""

from __future__ import annotations

from collections.abc import Mapping

from rnnspec.language.names import Namespace
from rnnspec.records import Record

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


class Stmt(Record):
    """One step statement: `outputs = op(*inputs)`.

    `inputs` are names (of `x`, a state, a parameter, or an earlier statement's output) or
    Python numbers (scalars). `outputs` is one name, or a tuple of names for `chunk`. A
    name may be assigned again (a state's new value): later statements read the newest.
    Ops (the language's section 8 vocabulary, as step functions of one batch of vectors):
    add sub mul div neg, matmul (`W @ v` in PyTorch's F.linear layout: W `[m, n]`, v `[n]`),
    sigmoid tanh relu gelu silu softplus logsigmoid exp log abs sqrt, clamp (attrs `low`,
    `high`), minimum maximum, concat, chunk (attrs `n`), layer_norm (inputs a [, weight
    [, bias]]; attrs `eps`), identity.

    `sizes` are the feature sizes of the outputs, one per output, as the cell IR carries
    them (`Node.size`, `Assign.sizes`): `cells.shapes.Size` expressions over the block's
    sizes, or plain integers; None for a number. They are evaluated, never recomputed.
    `where` is where the statement runs, from the IR's flags (`Node.varying`,
    `Node.batched`): `body` (reads a state: inside the Scan), `timed` (reads the input:
    before the loop for every step, a scan input of the body) or `static` (parameters and
    numbers: before the loop, once).
    """

    op: str
    inputs: tuple
    outputs: str | tuple[str, ...]
    attrs: dict | None = None
    sizes: tuple = ()
    where: str = ""


PLACES = ("body", "timed", "static")


def place(node) -> str:
    """Where a statement computing the IR node `node` runs (see `Stmt.where`)."""
    return "body" if node.varying else "timed" if node.batched else "static"


_ELEMENTWISE = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "minimum": "Min",
                "maximum": "Max"}
# The comparisons and logic of conditions (section 11): boolean tensors, never states.
_CONDITIONS = {"less": "Less", "less_equal": "LessOrEqual", "greater": "Greater",
               "greater_equal": "GreaterOrEqual", "equal": "Equal", "and": "And", "or": "Or",
               "not": "Not"}
CONDITIONS = frozenset({*_CONDITIONS, "not_equal"})
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


def _silu(g: _Graph, stmt: Stmt, args: list, features: dict, unbatched, attrs: dict,
          outputs: tuple, hint: str) -> list[str]:
    """x * sigmoid(x)"""
    return [g.node("Mul", [args[0], g.node("Sigmoid", args, hint=f"{hint}.gate")],
                   hint=hint)]


def _logsigmoid(g: _Graph, stmt: Stmt, args: list, features: dict, unbatched, attrs: dict,
                outputs: tuple, hint: str) -> list[str]:
    """-softplus(-x)"""
    inner = g.node("Softplus", [g.node("Neg", args, hint=f"{hint}.neg")],
                   hint=f"{hint}.softplus")
    return [g.node("Neg", [inner], hint=hint)]


def _gelu(g: _Graph, stmt: Stmt, args: list, features: dict, unbatched, attrs: dict,
          outputs: tuple, hint: str) -> list[str]:
    """x * (1 + erf(x / sqrt(2))) / 2"""
    if g.opset >= 20:
        return [g.node("Gelu", args, hint=hint)]
    scaled = g.node("Mul", [args[0], g.scalar(0.7071067811865476)], hint=f"{hint}.scaled")
    erf = g.node("Add", [g.node("Erf", [scaled], hint=f"{hint}.erf"), g.scalar(1.0)],
                 hint=f"{hint}.erf1")
    half = g.node("Mul", [args[0], g.scalar(0.5)], hint=f"{hint}.half")
    return [g.node("Mul", [half, erf], hint=hint)]


def _clamp(g: _Graph, stmt: Stmt, args: list, features: dict, unbatched, attrs: dict,
           outputs: tuple, hint: str) -> list[str]:
    return [g.node("Clip", args, hint=hint)]


def _not_equal(g: _Graph, stmt: Stmt, args: list, features: dict, unbatched, attrs: dict,
               outputs: tuple, hint: str) -> list[str]:
    return [g.node("Not", [g.node("Equal", args, hint=f"{hint}.equal")], hint=hint)]


def _heads_matmul(g: _Graph, stmt: Stmt, args: list, features: dict, unbatched, attrs: dict,
                  outputs: tuple, hint: str) -> list[str]:
    """`R @ v` of R [heads, m, n]: v [..., heads * n] as [..., heads, n, 1], one MatMul
    (broadcast over the leading axes) to [..., heads, m, 1], then [..., heads * m]."""
    weight, vector = args
    shape = g.node("Shape", [vector], hint=f"{hint}.shape")
    leading = g.node("Slice", [shape, g.ints([0]), g.ints([-1])], hint=f"{hint}.leading")
    weight_shape = g.node("Shape", [weight], hint=f"{hint}.weight_shape")
    heads = g.node("Slice", [weight_shape, g.ints([0]), g.ints([1])], hint=f"{hint}.heads")
    columns = g.node("Slice", [weight_shape, g.ints([2]), g.ints([3])], hint=f"{hint}.n")
    split_shape = g.node("Concat", [leading, heads, columns, g.ints([1])],
                         hint=f"{hint}.split_shape", axis=0)
    split = g.node("Reshape", [vector, split_shape], hint=f"{hint}.split")
    product = g.node("MatMul", [weight, split], hint=f"{hint}.heads")
    joined = g.node("Concat", [leading, g.ints([-1])], hint=f"{hint}.joined_shape", axis=0)
    return [g.node("Reshape", [product, joined], hint=hint)]


def _chunk_rows(g: _Graph, stmt: Stmt, args: list, features: dict, unbatched, attrs: dict,
                outputs: tuple, hint: str) -> list[str]:
    """The rows of a matrix parameter in equal pieces (a Split on axis 0, before the loop)."""
    rows = features[stmt.inputs[0]]
    n = attrs["n"]
    if n != len(outputs) or rows % n:
        raise ValueError(f"cannot split {rows} rows into {len(outputs)} pieces")
    if n == 1:
        return [g.node("Identity", args, hint=hint)]
    names = [g.fresh(name) for name in outputs]
    g.node("Split", [args[0], g.ints([rows // n] * n)], names, axis=0)
    return names


def _linear(g: _Graph, stmt: Stmt, args: list, features: dict, unbatched, attrs: dict,
            outputs: tuple, hint: str) -> list[str]:
    """W @ v + biases (folded by the lowering pass)"""
    weight, vector, *biases = args
    if not biases:
        return [g.node("MatMul", [vector, g.transposed(weight)], hint=hint)]
    out = g.node("MatMul", [vector, g.transposed(weight)], hint=f"{hint}.matmul")
    bias = biases[0]
    for more in biases[1:]:
        bias = g.node("Add", [bias, more], hint=f"{hint}.bias")
    return [g.node("Add", [out, bias], hint=hint)]


def _concat(g: _Graph, stmt: Stmt, args: list, features: dict, unbatched, attrs: dict,
            outputs: tuple, hint: str) -> list[str]:
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


def _chunk(g: _Graph, stmt: Stmt, args: list, features: dict, unbatched, attrs: dict,
           outputs: tuple, hint: str) -> list[str]:
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


def _layer_norm(g: _Graph, stmt: Stmt, args: list, features: dict, unbatched, attrs: dict,
                outputs: tuple, hint: str) -> list[str]:
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


def _plain(onnx_op: str):
    """The builder of an op that is one ONNX operator over the same arguments."""
    def build(g: _Graph, stmt: Stmt, args: list, *_, hint: str) -> list[str]:
        return [g.node(onnx_op, args, hint=hint)]
    return build


# How each step op becomes ONNX nodes (the backend's printing table): a builder takes the
# graph, the statement, its argument values, the feature sizes, which arguments have no
# batch axes, the statement's attributes, its outputs and a name hint.
NODES_FOR_OP = {
    **{op: _plain(onnx_op) for op, onnx_op in {**_ELEMENTWISE, **_UNARY}.items()},
    "silu": _silu,
    "logsigmoid": _logsigmoid,
    "gelu": _gelu,
    "clamp": _clamp,
    "matmul": _linear,
    "linear": _linear,
    "concat": _concat,
    "chunk": _chunk,
    "layer_norm": _layer_norm,
    **{op: _plain(onnx_op) for op, onnx_op in _CONDITIONS.items()},
    "not_equal": _not_equal,
    "where": _plain("Where"),
    "heads_matmul": _heads_matmul,
    "chunk_rows": _chunk_rows,
}


def _emit_stmt(g: _Graph, stmt: Stmt, args: list[str], features: dict[str, int],
               unbatched: list[bool] | None = None) -> list[str]:
    """ONNX nodes for one statement over tensors whose last axis is the feature axis.
    `unbatched[i]`: whether argument i has no batch axes (a parameter, or a value computed
    from parameters only), which `concat` must broadcast to the others' leading axes."""
    builder = NODES_FOR_OP.get(stmt.op)
    if builder is None:
        raise ValueError(f"unknown step operation {stmt.op!r}")
    outputs = _outputs(stmt)
    return builder(g, stmt, args, features, unbatched, stmt.attrs or {}, outputs,
                   hint=outputs[0])


def _stmt_features(stmt: Stmt, values: Mapping[str, int]) -> list[int]:
    """The feature sizes of a statement's outputs (for chunk sizes and Scan signatures): the
    sizes the statement carries, evaluated for one block's size values; a number is 1."""
    outputs = _outputs(stmt)
    if len(stmt.sizes) != len(outputs):
        raise ValueError(f"statement {stmt.op} -> {outputs} carries {len(stmt.sizes)} sizes "
                         f"for {len(outputs)} outputs")
    return [1 if size is None else size if isinstance(size, int) else size.evaluate(values)
            for size in stmt.sizes]
