"""The one lowering pass over a checked cell step (`equations.Step`), shared by the backends.

It decides once what is computed before the time loop and how biases fold into one linear:

- a statement that reads no state (and assigns none) runs before the loop, for every time
  step at once (`Lowering.hoist`); so does each largest part of a state-reading statement
  that reads no state, the state-free terms of a sum gathered into one value whatever
  their order;
- `W @ v + b + c` becomes one `LINEAR` (`F.linear(v, W, b + c)`): the first matmul of a sum
  and every vector parameter of its size added to it.

The result keeps the IR's `Node`s, each with its size (as torch.fx's `node.meta`): a backend
prints them and recomputes nothing. Two ops exist only here: `HOISTED` (a value computed
before the loop, read by name in the step) and `LINEAR`. Values the pass invents are named
from the spec (`gates_x`: the state-free part of `gates` that reads `x`; `gates_w`: of
parameters only), through a `Namespace` that holds every name of the step.
"""

from __future__ import annotations

from typing import NamedTuple

from rnnspec.cells.equations import Assign, Node, Step
from rnnspec.cells.shapes import Size
from rnnspec.language.names import Namespace

HOISTED = "hoisted"  # value: the name of a value computed before the loop
LINEAR = "linear"  # args: (matrix param, vector, *bias params)
LEAVES = ("x", "state", "local", "param", "number", HOISTED)


class Statement(NamedTuple):
    """`targets = node` in the lowered step; several targets for a chunk."""

    targets: tuple[str, ...]
    node: Node
    size: Size | None  # of each target
    batched: bool  # has a batch axis (and, before the loop, a time axis)
    unpack: bool  # targets receive the pieces of a chunk
    expand: str | None = None  # a state given a batch-free value: the state it takes B from


class Lowering(NamedTuple):
    hoist: tuple[Statement, ...]  # before the loop, for every time step at once
    passed: tuple[tuple[str, bool], ...]  # (name, batched) handed from hoist to each step
    step: tuple[Statement, ...]  # in the loop
    unread_inputs: bool  # nothing is passed: the loop still needs one value per step


def terms(node: Node, sign: int = 1) -> list[tuple[int, Node]]:
    """A sum as its signed terms: `a - (b + c)` is +a, -b, -c."""
    if node.op == "add":
        return terms(node.args[0], sign) + terms(node.args[1], sign)
    if node.op == "sub":
        return terms(node.args[0], sign) + terms(node.args[1], -sign)
    return [(sign, node)]


def _chain(signed: list[tuple[int, Node]], like: Node) -> Node:
    """Signed terms as a left-nested sum (a first negative term as `neg`)."""
    sign, total = signed[0]
    if sign < 0:
        total = Node("neg", (total,), None, total.size, total.varying, total.batched,
                     total.span)
    for sign, term in signed[1:]:
        total = Node("add" if sign > 0 else "sub", (total, term), None, like.size,
                     total.varying or term.varying, total.batched or term.batched, like.span)
    return total


def fold(node: Node) -> Node:
    """`node` with every sum's first matmul and the vector parameters of its size added to
    it as one `LINEAR`."""
    if node.op in ("add", "sub"):
        signed = [(s, fold(t)) for s, t in terms(node)]
        for index, (sign, term) in enumerate(signed):
            if sign > 0 and term.op == "matmul":
                biases = [i for i, (s, t) in enumerate(signed)
                          if s > 0 and t.op == "param" and t.size is not None
                          and t.size == term.size]
                if biases:
                    linear = term._replace(op=LINEAR, args=(*term.args, *(
                        signed[i][1] for i in biases)))
                    signed = [(s, linear if i == index else t) for i, (s, t)
                              in enumerate(signed) if i not in biases]
                break
        return _chain(signed, node)
    if not node.args:
        return node
    return node._replace(args=tuple(fold(a) if isinstance(a, Node) else a
                                    for a in node.args))


class _Lowerer:
    def __init__(self, step: Step):
        self.step = step
        names = {"x", *step.states, *step.params}
        for assign in step.statements:
            names.update(assign.targets)
        self.names = Namespace(names)
        self.hoisted: dict[int, str] = {}  # id of a node computed before the loop -> name
        self.passed: list[tuple[str, bool]] = []
        self.hoist: list[Statement] = []
        self.rewritten: dict[int, Node] = {}
        self.keep: list[Node] = []  # nodes made here: their ids must stay unique
        self.target = "x"

    def hoist_value(self, node: Node) -> None:
        """Make `node` (reads no state) available to the step, computed before the loop."""
        if id(node) in self.hoisted or node.op in ("number", "param") or node.size is None:
            return  # numbers are written where they are used; parameters read as they are
        if node.op == "chunk":  # pieces are split in the step, from the hoisted vector
            self.hoist_value(node.args[0])
            return
        if node.op in ("x", "local"):
            name = node.value
        else:
            name = self.names.create(f"{self.target}_{'x' if node.batched else 'w'}")
            self.hoist.append(Statement((name,), fold(node), node.size, node.batched, False))
        if not any(passed == name for passed, _ in self.passed):
            self.passed.append((name, node.batched))
        self.hoisted[id(node)] = name

    def plan(self, node: Node) -> None:
        """Hoist every largest part of a state-reading `node` that reads no state."""
        if not node.varying:
            self.hoist_value(node)
            return
        if node.op in ("add", "sub"):
            signed = terms(node)
            still = [t for _, t in signed if not t.varying]
            worth = [t for t in still if t.op not in LEAVES and t.size is not None]
            if len(still) > 1 and worth:
                self.hoist_group(node, signed)
                return
            for _, term in signed:
                self.plan(term)
            return
        for child in node.args:
            if isinstance(child, Node):
                self.plan(child)

    def hoist_group(self, node: Node, signed) -> None:
        """A sum whose state-free terms are gathered into one value computed before."""
        free = [(s, t) for s, t in signed if not t.varying]
        for _, term in signed:
            if term.varying:
                self.plan(term)
        group = _chain(free, node)
        self.keep.append(group)
        self.hoist_value(group)
        rebuilt = Node(HOISTED, (), self.hoisted[id(group)], node.size, False, group.batched,
                       node.span)
        for sign, term in signed:
            if term.varying:
                rebuilt = Node("add" if sign > 0 else "sub", (rebuilt, term), None, node.size,
                               True, True, node.span)
        self.keep.append(rebuilt)
        self.rewritten[id(node)] = rebuilt

    def rewrite(self, node: Node) -> Node:
        """The step's `node`: hoisted parts read by name, gathered sums as planned."""
        if id(node) in self.rewritten:
            return self.rewrite_args(self.rewritten[id(node)])
        if id(node) in self.hoisted and node.op not in ("x", "local"):
            return Node(HOISTED, (), self.hoisted[id(node)], node.size, False, node.batched,
                        node.span)
        return self.rewrite_args(node)

    def rewrite_args(self, node: Node) -> Node:
        if not node.args or not isinstance(node.args[0], Node):
            return node
        return node._replace(args=tuple(self.rewrite(a) if isinstance(a, Node) else a
                                        for a in node.args))

    def statement(self, assign: Assign, node: Node) -> Statement:
        unpack = len(assign.targets) > 1 or assign.node.op == "chunk"
        return Statement(assign.targets, node, assign.sizes[0], assign.node.batched, unpack)

    def run(self) -> Lowering:
        before, stepped = [], []
        for assign in self.step.statements:
            if assign.sizes[0] is None:  # a number: known in both functions
                before.append(assign)
                stepped.append(assign)
            elif not assign.node.varying and not any(assign.states):
                before.append(assign)
            else:
                stepped.append(assign)
        self.hoist = [self.statement(a, fold(a.node)) for a in before]
        step = []
        for assign in stepped:
            if assign.sizes[0] is None:
                step.append(self.statement(assign, fold(assign.node)))
                continue
            self.target = assign.targets[0]
            self.plan(assign.node)
            lowered = self.statement(assign, fold(self.rewrite(assign.node)))
            if not assign.node.batched and any(assign.states):
                # a value of parameters only: each piece given the batch of the state
                lowered = lowered._replace(
                    expand=assign.targets[assign.states.index(True)], batched=True)
            step.append(lowered)
        unread = not self.passed
        if unread:
            self.passed.append(("x", True))
        return Lowering(tuple(self.hoist), tuple(self.passed), tuple(step), unread)


def lower(step: Step) -> Lowering:
    """The statements both backends print for `step`, with hoisting and biases decided."""
    return _Lowerer(step).run()
