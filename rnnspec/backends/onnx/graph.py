"""The ONNX graph builder (in the manner of onnxscript's `GraphBuilder`): one name pool,
initializers and constants in the root graph, `_Graph(opset, root=g)` for a Scan body.

onnx and numpy are imported inside the functions that need them.
"""

from __future__ import annotations

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


def _index(g: _Graph, index: int) -> str:
    """A scalar int64 index (Gather with it drops the axis)."""
    import numpy as np

    root = g.root
    key = ("scalar", index)
    if key not in root._int_constants:
        root._int_constants[key] = g.initializer("index", np.array(index, dtype=np.int64))
    return root._int_constants[key]
