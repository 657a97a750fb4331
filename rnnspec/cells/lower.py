"""The one lowering pass over a checked step: what runs before the time loop, and how.

`lower(step, names)` decides, once for every backend:

- which statements run before the loop (`Lowered.hoist`): whole statements that read only
  `x`, parameters and numbers, computed for every time step at once;
- inside the statements that read a state (`Lowered.step`), each largest part that does not
  read one, hoisted under a name taken from the spec (`gates_x` for a value that reads `x`,
  `gates_p` for one of parameters only); the state-free terms of a sum are gathered into
  one hoisted value whatever their order;
- bias folding: the first matrix product of a sum and every vector parameter of its size
  added to it become one `linear` node (`F.linear(v, W, b + c)`, ONNX `MatMul` + `Add`).

The result is a tree of `equations.Node`s per statement, as in the IR, with two more
kinds of node: `local` reading a hoisted value by its name and `linear` (args: vector,
matrix, biases). Every node keeps the size the checker gave it (the sizes are carried,
never recomputed), as torch.fx keeps `node.meta`.
"""

from __future__ import annotations

from rnnspec.cells.equations import Assign, Node, Step
from rnnspec.language.names import Namespace
from rnnspec.records import Record

LEAVES = ("x", "state", "local", "param", "number")


class Statement(Record):
    """`targets = node` after lowering; `assign` is the statement of the IR it comes from."""

    targets: tuple[str, ...]  # names in the backend's namespace
    node: Node
    assign: Assign | None  # None for a hoisted part of a statement
    expand: str | None = None  # a parameters-only value given the batch of this state


class Lowered(Record):
    hoist: tuple[Statement, ...]  # before the loop, every time step at once
    step: tuple[Statement, ...]  # in the loop, one time step
    passed: tuple[tuple[str, bool], ...]  # (name, batched): handed from hoist to step
    states: tuple[str, ...]  # the states' names, in order
    names: dict[str, str]  # a name of the IR (state, local, x) -> its name in the backend
    unread_inputs: bool  # nothing is passed: the step reads no input
    # `A, B = chunk(W, 2)` of matrix parameters: views of the weights, which the functions
    # that read them (before the loop, in the step or both) split for themselves
    static: tuple[Statement, ...] = ()

    def static_for(self, statements) -> tuple[Statement, ...]:
        """The matrix pieces that `statements` read, in order."""
        read: set[str] = set()
        for statement in statements:
            _names_read(statement.node, read)
        read = {self.names.get(name, name) for name in read}
        return tuple(s for s in self.static if any(t in read for t in s.targets))

    @property
    def hoist_reads_x(self) -> bool:
        """Whether the statements before the loop read the input (or pass it on)."""
        if any(name == "x" for name, _ in self.passed):
            return True
        pending = [statement.node for statement in self.hoist]
        while pending:
            node = pending.pop()
            if node.op == "x":
                return True
            pending.extend(a for a in node.args if isinstance(a, Node))
        return False


def _names_read(node: Node, names: set[str]) -> set[str]:
    """The local names (in the backend's namespace) a lowered node reads."""
    pending = [node]
    while pending:
        current = pending.pop()
        if current.op == "local":
            names.add(current.value)
        pending.extend(a for a in current.args if isinstance(a, Node))
    return names


def terms(node: Node, sign: int = 1) -> list[tuple[int, Node]]:
    """A sum as its signed terms: `a - (b + c)` is +a, -b, -c."""
    if node.op == "add":
        return terms(node.args[0], sign) + terms(node.args[1], sign)
    if node.op == "sub":
        return terms(node.args[0], sign) + terms(node.args[1], -sign)
    return [(sign, node)]


def _sum(signed: list[tuple[int, Node]], like: Node) -> Node:
    """The signed terms as one left-leaning sum with the size and flags of `like`."""
    sign, total = signed[0]
    if sign < 0:
        total = like._replace(op="neg", args=(total,), value=None, batched=total.batched)
    for sign, term in signed[1:]:
        total = like._replace(op="add" if sign > 0 else "sub", args=(total, term), value=None,
                              batched=total.batched or term.batched)
    return total


def fold_biases(node: Node) -> Node:
    """`W @ v + b + c` as `linear(v, W, b, c)` wherever it occurs in `node`."""
    if not node.args or not isinstance(node.args[0], Node):
        return node
    if node.op not in ("add", "sub"):
        return node._replace(args=tuple(fold_biases(a) if isinstance(a, Node) else a
                                        for a in node.args))
    signed = [(s, fold_biases(t)) for s, t in terms(node)]
    for index, (sign, term) in enumerate(signed):
        if sign > 0 and term.op == "matmul":
            biases = [i for i, (s, t) in enumerate(signed)
                      if s > 0 and t.op == "param" and t.size is not None
                      and t.size == term.size]
            if not biases:
                break
            matrix, vector = term.args
            linear = term._replace(op="linear",
                                   args=(vector, matrix, *(signed[i][1] for i in biases)))
            signed = [(s, linear if i == index else t) for i, (s, t) in enumerate(signed)
                      if i not in biases]
            break
    return _sum(signed, node)


class _Lowering:
    def __init__(self, step: Step, names: Namespace):
        self.step = step
        self.namespace = names
        self.names: dict[str, str] = {}
        self.states = tuple(self._name(s) for s in step.states)
        names.update(step.params)  # a backend may name values after parameters (ONNX)
        for assign in step.statements:  # the spec's names first: hoisted ones avoid them
            for target in assign.targets:
                self._name(target)
        self.hoisted: dict[int, Node] = {}  # id of an IR node -> the node reading it
        self.passed: list[tuple[str, bool]] = []
        self.hoist: list[Statement] = []

    def _name(self, name: str) -> str:
        if name not in self.names:
            self.names[name] = self.namespace.identifier(name)
        return self.names[name]

    def _hoist_value(self, node: Node, hint: str) -> Node:
        """`node` (reads no state) computed before the loop; returns what the step reads."""
        if id(node) in self.hoisted:
            return self.hoisted[id(node)]
        if node.op in ("number", "param") or node.size is None:
            return node  # numbers are written where they are used; parameters read as such
        if node.op == "chunk":  # pieces are split in the step, from the hoisted vector
            return node._replace(args=(self._hoist_value(node.args[0], hint),))
        if node.op in ("x", "local"):
            name = "x" if node.op == "x" else self.names[node.value]
            read = node
        else:
            name = self.namespace.identifier(f"{hint}_{'x' if node.batched else 'p'}")
            self.names[name] = name
            self.hoist.append(Statement((name,), fold_biases(node), None))
            read = Node("local", (), name, node.size, False, node.batched, node.span)
        if not any(passed == name for passed, _ in self.passed):
            self.passed.append((name, node.batched))
        self.hoisted[id(node)] = read
        return read

    def plan(self, node: Node, hint: str) -> Node:
        """`node` with every largest part that reads no state hoisted."""
        if not node.varying:
            return self._hoist_value(node, hint)
        if node.op in ("add", "sub"):
            signed = terms(node)
            free = [(s, t) for s, t in signed if not t.varying]
            worth = [t for _, t in free if t.op not in LEAVES and t.size is not None]
            if len(free) > 1 and worth:
                return self._hoist_group(node, signed, hint)
            return _sum([(s, self.plan(t, hint)) for s, t in signed], node)
        return node._replace(args=tuple(self.plan(a, hint) if isinstance(a, Node) else a
                                        for a in node.args))

    def _hoist_group(self, node: Node, signed, hint: str) -> Node:
        """A sum whose state-free terms are gathered into one hoisted value, read first."""
        varying = [(s, self.plan(t, hint)) for s, t in signed if t.varying]
        free = [(s, t) for s, t in signed if not t.varying]
        group = _sum(free, node._replace(varying=False))
        return _sum([(1, self._hoist_value(group, hint)), *varying], node)

    def _stepped(self, targets: tuple[str, ...], assign: Assign) -> Statement:
        if assign.sizes[0] is None:
            return Statement(targets, assign.node, assign)
        hint = targets[0] if len(targets) == 1 else "gates"  # the pieces of a chunk
        node = fold_biases(self.plan(assign.node, hint))
        expand = None
        if not assign.node.batched and any(assign.states):
            expand = self._name(assign.targets[assign.states.index(True)])
        return Statement(targets, node, assign, expand)

    def _read(self, node: Node, names: set[str]) -> set[str]:
        """The names `node` reads (x, states, locals, hoisted values), added to `names`."""
        pending = [node]
        while pending:
            current = pending.pop()
            if current.op in ("state", "local"):
                names.add(self.names.get(current.value, current.value))
            elif current.op == "x":
                names.add("x")
            pending.extend(a for a in current.args if isinstance(a, Node))
        return names

    def _reads(self, statements) -> set[str]:
        names: set[str] = set()
        for statement in statements:
            self._read(statement.node, names)
        return names

    def _live(self, statements: list[Statement], needed: set[str]) -> list[Statement]:
        """The statements whose values something needs (a state's new value, a value the
        step or a later live statement reads); dead ones are dropped, and a piece of a live
        `chunk` that nothing reads is named `_piece`, as Python names an unused unpacked
        value."""
        kept: list[Statement] = []
        for statement in reversed(statements):
            if not any(target in needed for target in statement.targets):
                continue
            if len(statement.targets) > 1:
                statement = statement._replace(targets=tuple(
                    t if t in needed else self.namespace.identifier(f"_{t}")
                    for t in statement.targets))
            needed -= set(statement.targets)
            self._read(statement.node, needed)
            kept.append(statement)
        return kept[::-1]

    def lower(self) -> Lowered:
        stepped: list[tuple[tuple[str, ...], Assign]] = []
        static: list[Statement] = []
        for assign in self.step.statements:  # whole statements first, then hoisted parts
            targets = tuple(self._name(t) for t in assign.targets)
            if assign.node.op == "chunk_rows":
                static.append(Statement(targets, assign.node, assign))
            elif assign.sizes[0] is None:  # a number: known in both functions
                self.hoist.append(Statement(targets, assign.node, assign))
                stepped.append((targets, assign))
            elif not assign.node.varying and not any(assign.states):
                self.hoist.append(Statement(targets, fold_biases(assign.node), assign))
            else:
                stepped.append((targets, assign))
        step = [self._stepped(targets, assign) for targets, assign in stepped]
        step = self._live(step, set(self.states))
        read = self._reads(step)  # values the live step reads: only those are passed
        self.passed = [(name, batched) for name, batched in self.passed if name in read]
        hoist = self._live(self.hoist, {name for name, _ in self.passed})
        unread = not self.passed
        if unread:  # the loop needs one value per step, even if unread
            self.passed.append(("x", True))
        return Lowered(tuple(hoist), tuple(step), tuple(self.passed), self.states,
                       self.names, unread, tuple(static))



def lower(step: Step, names: Namespace) -> Lowered:
    """The lowered step; `names` is the backend's namespace (its reserved names taken)."""
    return _Lowering(step, names).lower()
