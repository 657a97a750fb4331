"""A cell's step as ONNX: statements (`Stmt`) lowered from the checked IR, run by one
`Scan` per layer and direction; statements that read no state are computed before it."""

from __future__ import annotations

from collections.abc import Mapping

from rnnspec import model
from rnnspec.backends.onnx.graph import (
    CONDITIONS,
    PLACES,
    Stmt,
    _emit_stmt,
    _Graph,
    _outputs,
    _stmt_features,
    place,
)
from rnnspec.language.names import Namespace


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
                    sizes: Mapping[str, int] | None = None, reverse: bool = False,
                    valid: str | None = None, zoneout: float = 0.0) -> tuple[str, list[str]]:
    """A recurrence over the time axis of `x` (`[T, B, x_size]`) as one ONNX `Scan`.

    `states`: (name, size, initial value `[B, size]` in `g`), in order; the first is the
    step's output. `params`: IR name -> (graph value name, shape). `sizes`: the block's size
    values (`hidden_size`, `input_size`, ...), which the statements' carried sizes are
    evaluated against. Statements that read no
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
    for name, (_, shape) in params.items():
        features[name] = shape[-1] if len(shape) == 1 else shape[0]
    values = {"input_size": x_size, **(sizes or {})}

    # Where each value is computed: as the statements say (`Stmt.where`, the IR's flags).
    kind: dict[str, str] = {"x": "timed", **{n: "body" for n in state_names},
                            **{n: "static" for n in params}}

    def kind_of(arg) -> str:
        return "static" if isinstance(arg, (int, float)) else kind[arg]

    booleans = {out for stmt in statements if stmt.op in CONDITIONS for out in _outputs(stmt)}
    for stmt in statements:
        if stmt.where not in PLACES:
            raise ValueError(f"statement {stmt.op} -> {_outputs(stmt)} has no place "
                             f"(one of {', '.join(PLACES)})")
        for out, size in zip(_outputs(stmt), _stmt_features(stmt, values)):
            features[out] = size
            kind[out] = stmt.where

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
                    env[arg], TensorProto.BOOL if arg in booleans else TensorProto.FLOAT,
                    ["B", features[arg]]))
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

    # values without a batch axis: parameters and numbers, and what the body computes from
    # those alone (a state given another state's value of parameters only)
    unbatched = {name for name, where in kind.items() if where == "static"}
    for stmt in statements:
        if all(isinstance(a, (int, float)) or a in unbatched for a in stmt.inputs):
            unbatched.update(_outputs(stmt))
    previous = {name: env[name] for name in state_names}
    new = {}
    for name in state_names:
        value = read(last.get(name, name))
        if last.get(name, name) in unbatched:  # parameters only: one value per sequence
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

    return _scan(g, body_graph, scope, states, new, state_inputs, scan_inputs, scan_outer,
                 reverse)


def _scan(g: _Graph, body_graph: _Graph, scope: str, states, new: dict, state_inputs,
          scan_inputs, scan_outer, reverse: bool) -> tuple[str, list[str]]:
    """The `Scan` node over `body_graph`, whose states end as `new`; returns (the outputs,
    the final states)."""
    from onnx import TensorProto, helper

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


def lower_step(step, numbers: Mapping[str, float] | None = None) -> list[Stmt]:
    """A checked step (`equations.Step`) through the shared lowering pass (`cells.lower`:
    hoisted parts, folded biases) as statements, one per operation; intermediate values
    are named `_t<k>` (spec names never start with `_`). `numbers`: the block's values of
    the cell's number arguments. The export runs in evaluation: `dropout` is the identity."""
    from rnnspec.cells.lower import lower

    numbers = numbers or {}
    lowered = lower(step, Namespace({"x"}))
    statements: list[Stmt] = []
    counter = iter(range(10**9))

    def value(node):
        op = node.op
        if op == "number":
            return node.value
        if op == "argument":
            return float(numbers[node.value])
        if op == "x":
            return "x"
        if op in ("state", "local"):
            return lowered.names.get(node.value, node.value)
        if op == "param":
            return node.value
        return emit(node, f"_t{next(counter)}")

    def emit(node, out: str) -> str:
        op = node.op
        sizes, where = (node.size,), place(node)
        if op in ("number", "x", "state", "local", "param"):
            statements.append(Stmt("identity", (value(node),), out, sizes=sizes, where=where))
            return out
        attrs = None
        if op in ("matmul", "linear", "heads_matmul"):
            vector, matrix, *biases = node.args if op == "linear" else node.args[::-1]
            inputs = (value(matrix), value(vector), *(b.value for b in biases))
        elif op == "dropout":  # evaluation: the value itself
            op, inputs = "identity", (value(node.args[0]),)
        elif op == "layer_norm":
            inputs = tuple(value(a) for a in node.args)
            attrs = {"eps": float(node.value)}
        elif op == "chunk":
            raise ValueError("a chunk stands alone on the right of an assignment")
        else:
            inputs = tuple(value(a) for a in node.args)
        statements.append(Stmt(op, inputs, out, attrs, sizes, where))
        return out

    for statement in lowered.static:  # rows of matrix parameters: split once
        pieces, piece, _ = statement.node.value
        statements.append(Stmt("chunk_rows", (value(statement.node.args[0]),),
                               statement.targets, {"n": pieces}, (piece,) * pieces, "static"))
    numbers_only = [s for s in lowered.hoist
                    if s.assign is not None and s.assign.sizes[0] is None]
    stepped = [s for s in lowered.step if s not in numbers_only]  # in both lists
    for statement in (*lowered.hoist, *stepped):
        node, targets = statement.node, statement.targets
        if node.op == "chunk":
            inner = value(node.args[0])
            pieces, piece = node.value
            statements.append(Stmt("chunk", (inner,), targets if len(targets) > 1
                                   else targets[0], {"n": pieces},
                                   (piece,) * len(targets), place(node)))
        else:
            emit(node, targets[0])
    return statements


def builtin_step(block: model.Block):
    """The step of a built-in cell for `block`'s arguments: its equations (`cells.builtin`),
    checked once per variant by the cell checker, an `equations.Step` as user cells have."""
    from rnnspec.cells import builtin

    return builtin.step(block.spec, block.arguments)
