"""Cells declared by their equations (docs/reference.md, section 8): scopes, symbolic
shapes, and the typed step that the emitter writes out.

Every size is a `Size` polynomial over the size names, so each shape rule is proved once
for all sizes: `weight_ih @ x` needs the columns of `weight_ih` to equal `input_size` as
polynomials. A rule that holds for some sizes only (a chunk of `input_size + hidden_size`
into 2) becomes a condition checked at each block that uses the cell.

The checker is in parts: `declare` (the header, states and parameters), `expressions`
(each expression by its op's shape rule), and here the statements and the cell as a
whole. The result is one more registry record (`registry.Cell`) whose `step` is a
`ir.Step`: the statements as a tree of `Node`s, each knowing its size and whether it
reads a state (the emitter computes everything that does not before the time loop).
"""

from __future__ import annotations

from rnnspec.cells.blocks import block_problems
from rnnspec.cells.declare import SIZE_NAMES, Declarations, Scope
from rnnspec.cells.expressions import Expressions, multiple_help
from rnnspec.cells.ir import Assign, Node, Step, describe
from rnnspec.cells.ops import FUNCTIONS, INITIALISERS, Op
from rnnspec.cells.registry import COMMON_ARGUMENTS, Cell
from rnnspec.cells.shapes import format_shape, quotient
from rnnspec.check.evaluate import POISON, Evaluator
from rnnspec.language import ast
from rnnspec.language.diagnostics import Note, Sink, Span, error, warning
from rnnspec.language.names import Namespace

# What importers of this module read: the IR, the checker's entry points, the vocabulary.
__all__ = ["FUNCTIONS", "INITIALISERS", "SIZE_NAMES", "Assign", "CellChecker", "Node", "Step",
           "block_problems", "check_cell", "describe"]


class CellChecker:
    """Checks one `cell` item; `cell()` is its registry record, or None after errors."""

    def __init__(self, item: ast.Cell, values: Evaluator, problems: Sink):
        self.item = item
        self.values = values
        self.problems = problems
        self.scope = Scope()
        self.declarations = Declarations(item, values, problems, self.scope)
        self.expressions = Expressions(item, values, problems, self.scope)
        self.conditions: list = []
        self.statements: list[Assign] = []
        self._base = ""  # the local `_unique_local` names now
        # a local assigned again gets a new name; not one the spec itself declares
        self._locals = Namespace(reject=lambda n: n != self._base and n in self.scope.kinds)
        self.shown: dict[str, str] = {}  # a local's unique name -> its name in the spec

    def _error(self, code: str, message: str, span: Span, **more) -> None:
        self.problems.append(error(code, message, span, **more))

    # ------------------------------------------------------------------- statements

    def statement(self, statement: ast.Statement) -> None:
        targets = statement.targets
        value = statement.value
        if len(targets) > 1 or (isinstance(value, ast.Call) and value.name == "chunk"):
            node = self._chunk(statement)
            if node is None:
                self.expressions.mark_read(value)
                self._assign_poison(targets)
                return
            if node.op == Op.CHUNK_ROWS:
                self._matrix_pieces(statement, node)
                return
            pieces = node.value[1]
            sizes = (pieces,) * len(targets)
        else:
            node = self.expressions.expr(value)
            if node is None:
                self.expressions.mark_read(value)
                self._assign_poison(targets)
                return
            sizes = (node.size,)
        names, states = [], []
        # a statement that gives a state its value runs in the time loop, and so do the
        # locals it assigns: reading them later reads the loop's values
        in_loop = node.varying or any(self.scope.kinds.get(n) == "state" for n, _ in targets)
        for (name, span), size in zip(targets, sizes):
            kind = self.scope.kinds.get(name)
            if kind == "state":
                declared = self.scope.sizes[name]
                if name in self.scope.assigned_states:
                    self._error("E075", f"state `{name}` is assigned twice in one step", span,
                                notes=[Note("first assigned here",
                                            self.scope.assigned_states[name])],
                                help="assign a local and give the state its final value once")
                    continue
                self.scope.assigned_states[name] = span
                if size is not None and size != declared:
                    self._error("E071", f"state `{name}` is {format_shape([declared])}, the "
                                f"value is {format_shape([size])}", span,
                                help=multiple_help(size, declared))
                    continue
                if size is None:
                    self._error("E071", f"state `{name}` is {format_shape([declared])}, the "
                                "value is a number", span)
                    continue
                names.append(name)
                states.append(True)
                self.scope.current[name] = Node(Op.LOCAL, (), name, size, True, True, span)
                continue
            if kind in ("x", "param", "size"):
                what = {"x": "the step's input", "param": "a parameter", "size": "a size"}[kind]
                self._error("E075", f"`{name}` is {what} and cannot be assigned", span)
                continue
            if name in self.values.lets:
                self._error("E075", f"`{name}` is a constant and cannot be assigned", span)
                continue
            if kind is None and not self.declarations.name(name, span, "local"):
                continue
            unique = self._unique_local(name)
            self.shown[unique] = name
            names.append(unique)
            states.append(False)
            self.scope.current[name] = Node(Op.LOCAL, (), unique, size, in_loop,
                                            node.batched or in_loop, span)
            self.scope.local_versions.append((unique, span))
        if len(names) == len(targets):
            text = ", ".join(n for n, _ in targets) + " = " + describe(node, self.shown)
            self.statements.append(Assign(tuple(names), tuple(states), node, sizes, text,
                                          statement.span))

    def _matrix_pieces(self, statement: ast.Statement, node: Node) -> None:
        """The names of a matrix's rows: matrices of the scope, split before the loop."""
        _, rows, columns = node.value
        names = []
        for name, span in statement.targets:
            if not self.declarations.name(name, span, "local"):
                return
            unique = self._unique_local(name)
            self.shown[unique] = name
            names.append(unique)
            self.scope.matrices[name] = (rows, columns)
            self.scope.pieces[name] = (unique, node.args[0].value)
            self.scope.local_versions.append((unique, span))
        text = ", ".join(n for n, _ in statement.targets) + " = " + describe(node, self.shown)
        self.statements.append(Assign(tuple(names), (False,) * len(names), node,
                                      (None,) * len(names), text, statement.span))

    def _unique_local(self, name: str) -> str:
        self._base = name
        return self._locals.create(name)

    def _assign_poison(self, targets) -> None:
        """After an error, the names stay defined (no second error), their value unknown."""
        for name, span in targets:
            kind = self.scope.kinds.get(name)
            if kind == "state":
                self.scope.assigned_states.setdefault(name, span)
                self.scope.current[name] = None
            elif kind in (None, "local"):
                self.scope.kinds[name] = "local"
                self.scope.spans.setdefault(name, span)
                self.scope.current[name] = None

    def _chunk(self, statement: ast.Statement) -> Node | None:
        value = statement.value
        count = len(statement.targets)
        if not (isinstance(value, ast.Call) and value.name == "chunk"):
            self._error("E073", f"{count} names on the left need `chunk(..., {count})` on the "
                        "right", statement.span,
                        help="a destructuring assignment splits a vector into equal pieces")
            return None
        arguments = value.arguments
        if len(arguments) != 2 or any(a.name for a in arguments):
            self._error("E074", "`chunk` takes a vector and a number of pieces: "
                        "`chunk(v, n)`", value.span)
            return None
        given = arguments[0].value
        if isinstance(given, ast.Name) and given.name in self.scope.heads:
            self._error("E073", f"`{given.name}` is a parameter with heads: it is not chunked",
                        given.span, help="declare one heads parameter per piece")
            return None
        if isinstance(given, ast.Name) and given.name in self.scope.matrices:
            return self._chunk_rows(statement, given)
        inner = self.expressions.expr(given)
        pieces = self.values.typed(arguments[1].value, "int", "the number of pieces")
        pieces = self.values.in_range(pieces, arguments[1].value.span, "the number of pieces",
                                      1)
        if inner is None or pieces is POISON:
            return None
        if inner.size is None:
            self._error("E074", "`chunk` needs a vector, found a number", arguments[0].span)
            return None
        if pieces != count:
            names = ", ".join(f"`{n}`" for n, _ in statement.targets)
            self._error("E073", f"`chunk` makes {pieces} pieces, but {count} names receive "
                        f"them ({names})", arguments[1].span,
                        help=f"write `chunk(..., {count})`, or {pieces} names on the left")
            return None
        piece = inner.size.exact_div(pieces)
        if piece is None:
            constant = inner.size.constant
            if constant is not None:
                self._error("E073", f"`chunk` cannot split {constant} features into {pieces} "
                            "equal pieces", value.span)
                return None
            # holds for some sizes only: checked for each block that uses the cell
            self.conditions.append((inner.size, pieces, value.span,
                                    f"`chunk` splits {format_shape([inner.size])} into "
                                    f"{pieces}"))
            piece = quotient(inner.size, pieces)
        return Node(Op.CHUNK, (inner,), (pieces, piece), inner.size, inner.varying,
                    inner.batched, value.span)

    def _chunk_rows(self, statement: ast.Statement, given: ast.Name) -> Node | None:
        """`A, B = chunk(W, 2)` of a matrix parameter: its rows in equal pieces, each a
        matrix for `@` (PyTorch's and ONNX's stacked gate layouts)."""
        value = statement.value
        count = len(statement.targets)
        pieces = self.values.typed(value.arguments[1].value, "int", "the number of pieces")
        pieces = self.values.in_range(pieces, value.arguments[1].value.span,
                                      "the number of pieces", 1)
        if pieces is POISON:
            return None
        if pieces != count:
            self._error("E073", f"`chunk` makes {pieces} pieces, but {count} names receive "
                        "them", value.arguments[1].span,
                        help=f"write `chunk(..., {count})`, or {pieces} names on the left")
            return None
        if given.name in self.scope.pieces:
            self._error("E073", f"`{given.name}` is already a piece of a matrix", given.span,
                        help="chunk the parameter itself into more pieces")
            return None
        rows, columns = self.scope.matrices[given.name]
        piece = rows.exact_div(pieces)
        if piece is None:
            if rows.constant is not None:
                self._error("E073", f"`chunk` cannot split the {rows.constant} rows of "
                            f"`{given.name}` into {pieces} equal pieces", value.span)
                return None
            self.conditions.append((rows, pieces, value.span,
                                    f"`chunk` splits the {rows} rows of `{given.name}` "
                                    f"into {pieces}"))
            piece = quotient(rows, pieces)
        self.scope.read.add(given.name)
        matrix = Node(Op.PARAM, (), given.name, None, False, False, given.span)
        for name, span in statement.targets:
            if self.scope.kinds.get(name) is not None or name in self.values.lets:
                self._error("E075", f"`{name}` is already defined: the rows of a matrix "
                            "go to new names", span)
                return None
        return Node(Op.CHUNK_ROWS, (matrix,), (pieces, piece), None, False, False,
                    value.span)._replace(args=(matrix,), value=(pieces, piece, columns))

    # ------------------------------------------------------------------- the cell

    def cell(self) -> Cell | None:
        with self.problems.watch() as step:
            declared = self.declarations.declare()
            if declared:
                for statement in self.item.statements:
                    self.statement(statement)
                self._unused()
        if step.failed:
            return None
        step_ir = Step(
            states=tuple(s.name for s in self.declarations.states),
            params=tuple(p.role for p in self.declarations.parameters),
            statements=tuple(self.statements),
            recurrent_weights=tuple(self.expressions.recurrent),
            conditions=tuple(self.declarations.conditions + self.conditions),
            numbers=tuple(self.declarations.numbers),
            requires=tuple(self.declarations.requires),
            probabilities=tuple(self.expressions.probabilities),
        )
        equations = "; ".join(a.text for a in self.statements)
        return Cell(
            name=self.item.name,
            arguments=(*COMMON_ARGUMENTS, *self.declarations.arguments),
            positional=False,
            parameters=tuple(self.declarations.parameters),
            states=tuple(self.declarations.states),
            equations=equations,
            span=self.item.name_span,
            declared=tuple(rule.name for rule in self.declarations.arguments),
            step=step_ir,
        )

    def _unused(self) -> None:
        scope = self.scope
        for param in self.declarations.parameters:
            if param.role not in scope.read:
                self.problems.append(warning(
                    "W003", f"parameter `{param.role}` of cell `{self.item.name}` is never read",
                    scope.spans[param.role], help="use it in an equation, or remove it"))
        for name, span in scope.local_versions:
            if name not in scope.read:
                self.problems.append(warning(
                    "W004", f"`{self.shown[name]}` is assigned but never read", span,
                    help="use it, or remove the assignment"))
        for state in self.declarations.states:
            if state.name not in scope.assigned_states:
                self.problems.append(warning(
                    "W005", f"state `{state.name}` of cell `{self.item.name}` is never "
                    "assigned: it keeps its initial value", scope.spans[state.name],
                    help=f"assign it: `{state.name} = ...`"))


def check_cell(item: ast.Cell, values: Evaluator, problems: Sink) -> tuple[Cell | None, tuple]:
    """The registry record of a declared cell, or None after a diagnostic; and the
    arguments its blocks take (known from the header even when the body is wrong)."""
    checker = CellChecker(item, values, problems)
    cell = checker.cell()
    return cell, (*COMMON_ARGUMENTS, *checker.declarations.arguments)


