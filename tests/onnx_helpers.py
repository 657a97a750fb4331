"""Test helpers of the ONNX backend (moved out of the package): one recurrence alone as a
model, to test step statements against onnxruntime."""

from __future__ import annotations

from rnnspec.backends.onnx.cells import emit_recurrence
from rnnspec.backends.onnx.graph import DEFAULT_OPSET, PRODUCER, Stmt, _Graph


def placed(statements: list[Stmt], states, params) -> list[Stmt]:
    """Hand-written statements given the place the IR's flags would give them: `body` when
    an input is (or was computed from) a state, `timed` from the input, else `static`."""
    kind = {"x": "timed", **{name: "body" for name, _ in states},
            **{name: "static" for name in params}}
    out = []
    for stmt in statements:
        kinds = {"static" if isinstance(a, (int, float)) else kind[a] for a in stmt.inputs}
        where = stmt.where or next(k for k in ("body", "timed", "static") if k in kinds)
        names = (stmt.outputs,) if isinstance(stmt.outputs, str) else stmt.outputs
        kind.update((name, where) for name in names)
        out.append(stmt._replace(where=where))
    return out


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
    statements = placed(statements, states, params)
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
