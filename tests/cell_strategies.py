"""Random well-formed user cells (language.md section 8) and single mutations of them.

A cell is built from random equation trees over the forms of section 8 with consistent
symbolic sizes: every size is `a * hidden_size + b * input_size`, written in one of several
equal spellings (`2 * hidden_size`, `hidden_size * 2`, `hidden_size + hidden_size`); each
matmul multiplies a fresh matrix parameter of the right shape; each chunk has as many names
as pieces. The rendered text records the spans a mutation touches, so a test can ask that
the diagnostic lands there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

# A size is (a, b): a * hidden_size + b * input_size.
HIDDEN, INPUT = (1, 0), (0, 1)
SIZES = [HIDDEN, INPUT, (2, 0), (3, 0), (4, 0), (1, 1)]
UNARY = ["sigmoid", "tanh", "relu", "gelu", "silu", "softplus", "logsigmoid", "exp", "log",
         "abs", "sqrt"]
BINARY = ["+", "-", "*", "/"]
STATE_NAMES = ["h", "s1", "s2"]


def _term(count: int, name: str) -> list[str]:
    if count == 1:
        return [name, f"1 * {name}", f"({name})"]
    return [f"{count} * {name}", f"{name} * {count}", " + ".join([name] * count),
            f"({count - 1} + 1) * {name}"]


def spellings(size) -> list[str]:
    """Equal ways to write a size; the checker must find them equal. The first is the
    plainest."""
    a, b = size
    if b == 0:
        return _term(a, "hidden_size")
    if a == 0:
        return _term(b, "input_size")
    hidden, inputs = _term(a, "hidden_size"), _term(b, "input_size")
    return [f"{hidden[0]} + {inputs[0]}", f"{inputs[0]} + {hidden[0]}",
            f"{hidden[-1]} + {inputs[-1]}", f"({inputs[1]}) + {hidden[1]}"]


def add(s, t):
    return (s[0] + t[0], s[1] + t[1])


# ----------------------------------------------------------------------------- trees


@dataclass(eq=False)
class Node:
    kind: str  # leaf number unary neg binary matmul call
    text: str = ""  # leaf name, number, operator or function name
    children: list = field(default_factory=list)
    extra: list = field(default_factory=list)  # trailing literal arguments of a call
    param: str | None = None  # the matrix of a matmul


ATOMIC = ("leaf", "number", "unary", "call")


@dataclass
class Param:
    name: str
    dims: list  # sizes
    text: list  # their spellings
    init: str = ""


@dataclass
class Statement:
    targets: list  # one name, or several for chunk
    expr: Node
    count: int = 0  # chunk count; 0 for a plain assignment


@dataclass
class Cell:
    name: str
    states: list  # (name, size)
    params: list
    statements: list
    numbers: list = field(default_factory=list)  # (name, default): number arguments

    @property
    def matmuls(self) -> list[Node]:
        found = []

        def walk(node):
            if node.kind == "matmul":
                found.append(node)
            for child in node.children:
                walk(child)
        for statement in self.statements:
            walk(statement.expr)
        return found

    @property
    def chunks(self) -> list[Statement]:
        return [s for s in self.statements if s.count]


class Builder:
    def __init__(self, draw, max_depth: int, extended: bool = False):
        self.draw = draw
        self.max_depth = max_depth
        self.params: list[Param] = []
        self.visible: dict[str, tuple] = {}  # names an expression may read, with sizes
        self.counter = 0
        # section 11 (`extended`): number arguments, conditions and `where`, `dropout`,
        # rows of a matrix parameter, heads
        self.extended = extended
        self.numbers: list[tuple[str, str]] = []  # (name, default) of the header
        self.pieces: dict[str, tuple] = {}  # a matrix's row piece -> (rows, columns)
        self.batched: dict[str, tuple] = {}  # names that certainly read x or a state

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def new_param(self, dims, init="") -> str:
        name = self.fresh("p")
        text = [self.draw(st.sampled_from(spellings(d))) for d in dims]
        self.params.append(Param(name, list(dims), text, init))
        return name

    def expr(self, size, depth: int) -> Node:
        kinds = ["param"]
        readable = [n for n, s in self.visible.items() if s == size]
        if readable:
            kinds += ["name", "name"]
        if size == INPUT:
            kinds += ["x", "x"]
        if depth > 0:
            kinds += ["unary", "neg", "binary", "binary", "scalar", "matmul", "matmul",
                      "layer_norm", "clamp", "minmax"]
            if size[0] >= 1 and size != HIDDEN:
                kinds.append("concat")
            if self.extended:
                kinds += ["where", "where", "number_argument"]
                if any(s == size for s in self.batched.values()):
                    kinds.append("dropout")
                if any(rows == size for rows, _ in self.pieces.values()):
                    kinds += ["piece", "piece"]
                if size[0] % 2 == 0 and size[1] % 2 == 0 and size != (0, 0):
                    kinds.append("heads")
        kind = self.draw(st.sampled_from(kinds))
        if kind in ("where", "number_argument", "dropout", "piece", "heads"):
            return self.section_11(kind, size, depth - 1)
        if kind == "name":
            return Node("leaf", self.draw(st.sampled_from(readable)))
        if kind == "x":
            return Node("leaf", "x")
        if kind == "param":
            return Node("leaf", self.new_param([size], self.draw(st.sampled_from(
                ["", "", " = zeros", " = ones", " = uniform(-0.5, 0.5)", " = normal(0, 0.1)"]))))
        sub = depth - 1
        if kind == "unary":
            return Node("unary", self.draw(st.sampled_from(UNARY)), [self.expr(size, sub)])
        if kind == "neg":
            return Node("neg", "-", [self.expr(size, sub)])
        if kind == "binary":
            return Node("binary", self.draw(st.sampled_from(BINARY)),
                        [self.expr(size, sub), self.expr(size, sub)])
        if kind == "scalar":
            number = Node("number", self.draw(st.sampled_from(["1", "0.5", "2", "1e-3"])))
            form = self.draw(st.sampled_from(["plain", "plain", "negative", "compound"]))
            if form == "negative":  # `h * -0.5`
                number = Node("neg", "-", [number])
            elif form == "compound":  # `(2 + 0.5) * h`: a number computed in the step
                number = Node("binary", self.draw(st.sampled_from(["+", "*"])),
                              [number, Node("number", "0.5")])
            operand = self.expr(size, sub)
            op = self.draw(st.sampled_from(BINARY))
            first = self.draw(st.booleans())
            return Node("binary", op, [number, operand] if first else [operand, number])
        if kind == "matmul":
            inner = self.draw(st.sampled_from(SIZES))
            matrix = self.new_param([size, inner])
            return Node("matmul", "@", [self.expr(inner, sub)], param=matrix)
        if kind == "layer_norm":
            arguments = [self.expr(size, sub)]
            extra = []
            form = self.draw(st.integers(1, 4))
            if form >= 2:
                arguments.append(Node("leaf", self.new_param([size], " = ones")))
            if form >= 3:
                arguments.append(Node("leaf", self.new_param([size], " = zeros")))
            if form == 4:
                extra = [self.draw(st.sampled_from(["1e-5", "0.001"]))]
            return Node("call", "layer_norm", arguments, extra)
        if kind == "clamp":
            return Node("call", "clamp", [self.expr(size, sub)], ["-1.5", "2"])
        if kind == "minmax":
            return Node("call", self.draw(st.sampled_from(["minimum", "maximum"])),
                        [self.expr(size, sub), self.expr(size, sub)])
        # concat: split the size into two non-empty parts
        a, b = size
        first = HIDDEN if a >= 1 else INPUT
        rest = (a - first[0], b - first[1])
        parts = [first, rest] if self.draw(st.booleans()) else [rest, first]
        return Node("call", "concat", [self.expr(p, sub) for p in parts])


    # ----------------------------------------------------------------- section 11

    def number(self) -> Node:
        """A number: a literal or one of the header's number arguments."""
        if self.draw(st.booleans()):
            if not self.numbers or (len(self.numbers) < 2 and self.draw(st.booleans())):
                default = self.draw(st.sampled_from(["0.5", "-0.25", "1.5", "0.0"]))
                self.numbers.append((self.fresh("alpha"), default))
            return Node("leaf", self.draw(st.sampled_from([n for n, _ in self.numbers])))
        return Node("number", self.draw(st.sampled_from(["0.5", "1.0", "2.0"])))

    def condition(self, size, depth: int) -> Node:
        form = self.draw(st.sampled_from(["compare", "compare", "and", "or", "not"]))
        if form == "not":
            return Node("not", "not", [self.condition(size, depth - 1)]) if depth > 0 \
                else self.condition(size, 0)
        if form in ("and", "or") and depth > 0:
            return Node("logic", form, [self.condition(size, depth - 1),
                                        self.condition(size, depth - 1)])
        symbol = self.draw(st.sampled_from(["<", "<=", ">", ">=", "!="]))
        left = self.expr(size, max(depth, 0))
        right = self.number() if self.draw(st.booleans()) else self.expr(size, max(depth, 0))
        return Node("compare", symbol, [left, right])

    def section_11(self, kind: str, size, depth: int) -> Node:
        if kind == "where":
            branches = [self.number() if self.draw(st.integers(0, 3)) == 0
                        else self.expr(size, depth) for _ in range(2)]
            return Node("call", "where", [self.condition(size, depth), *branches])
        if kind == "number_argument":
            operand = self.expr(size, depth)
            return Node("binary", self.draw(st.sampled_from(["*", "+", "-"])),
                        [operand, self.number()])
        if kind == "dropout":  # of a value that reads x or a state (evaluation: itself)
            name = self.draw(st.sampled_from(
                [n for n, s in self.batched.items() if s == size]))
            inner = Node("binary", "+", [self.expr(size, depth), Node("leaf", name)])
            extra = ["0.25"] + ([] if self.draw(st.booleans()) else ["per = step"])
            return Node("call", "dropout", [inner], extra)
        if kind == "piece":
            piece = self.draw(st.sampled_from(
                [n for n, (rows, _) in self.pieces.items() if rows == size]))
            columns = self.pieces[piece][1]
            return Node("rows", "@", [self.expr(columns, depth)], param=piece)
        # heads: two heads of [size / 2, inner] blocks
        inner = self.draw(st.sampled_from([HIDDEN, INPUT, (2, 0)]))
        half = (size[0] // 2, size[1] // 2)
        matrix = self.new_param([(2, 0), half, inner])
        self.params[-1].text[0] = "2"
        return Node("rows", "@", [self.expr((2 * inner[0], 2 * inner[1]), depth)],
                    param=matrix)


@st.composite
def cells(draw, max_depth: int = 3, extended: bool = False) -> Cell:
    """Random well-formed cells; `extended` adds section 11's forms (number arguments,
    conditions and `where`, `dropout`, rows of a matrix, heads)."""
    builder = Builder(draw, max_depth, extended)
    count = draw(st.integers(1, 3))
    sizes = [HIDDEN] + [draw(st.sampled_from([HIDDEN, (2, 0)])) for _ in range(count - 1)]
    states = list(zip(STATE_NAMES, sizes))
    builder.visible = dict(states)
    builder.batched = {**dict(states), "x": INPUT}
    statements = []
    if extended and draw(st.booleans()):  # rows of a matrix parameter, as pieces for `@`
        rows, columns = draw(st.sampled_from([HIDDEN, (2, 0)])), draw(st.sampled_from(SIZES))
        count = draw(st.integers(1, 3))
        matrix = builder.new_param([(count * rows[0], count * rows[1]), columns])
        names = [builder.fresh("m") for _ in range(count)]
        statements.append(Statement(names, Node("leaf", matrix), count))
        builder.pieces.update({n: (rows, columns) for n in names})
    # Always one chunk of a matmul, so every cell has a site for each mutation kind.
    pieces = draw(st.integers(2, 4))
    piece = draw(st.sampled_from([HIDDEN, INPUT]))
    inner = draw(st.sampled_from(SIZES))
    total = (pieces * piece[0], pieces * piece[1])
    matrix = builder.new_param([total, inner])
    expr = Node("matmul", "@", [builder.expr(inner, max_depth - 1)], param=matrix)
    if draw(st.booleans()):
        expr = Node("binary", "+", [expr, builder.expr(total, max_depth - 1)])
    names = [builder.fresh("v") for _ in range(pieces)]
    statements.append(Statement(names, expr, pieces))
    builder.visible.update({n: piece for n in names})
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            size = draw(st.sampled_from(SIZES))
            name = builder.fresh("v")
            depth = draw(st.integers(0, max_depth))
            statements.append(Statement([name], builder.expr(size, depth)))
            builder.visible[name] = size
        else:
            pieces = draw(st.integers(1, 3))  # one piece too: `a = chunk(v, 1)`
            piece = draw(st.sampled_from([HIDDEN, INPUT]))
            total = (pieces * piece[0], pieces * piece[1])
            names = [builder.fresh("v") for _ in range(pieces)]
            statements.append(Statement(names, builder.expr(total, max_depth), pieces))
            builder.visible.update({n: piece for n in names})
    order = draw(st.permutations(states))
    if len(order) > 1 and order[0][1] == order[1][1] and draw(st.booleans()):
        # two states from one chunk, of any expression (possibly reading no state at all)
        (first, size), (second, _) = order[:2]
        total = (2 * size[0], 2 * size[1])
        statements.append(Statement([first, second],
                                    builder.expr(total, draw(st.integers(0, max_depth))), 2))
        order = order[2:]
    for name, size in order:
        statements.append(Statement([name], builder.expr(size, draw(st.integers(0, max_depth)))))
    return Cell("Random", states, builder.params, statements, builder.numbers)


# ----------------------------------------------------------------------------- rendering


@dataclass
class Mutation:
    kind: str  # "dim": a matrix's column count; "swap": `v @ W`; "count": a chunk count
    target: object  # the matmul Node or the chunk Statement
    replacement: object = None  # the new size (dim) or count (count)


class Rendered:
    def __init__(self):
        self.lines: list[str] = []
        self.node_spans: dict[int, tuple] = {}  # id(node) -> (line, start col, end col)
        self.statement_spans: dict[int, tuple] = {}
        self.param_dim_spans: dict[tuple, tuple] = {}  # (param, index) -> span

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _render_expr(node: Node, out: list[str], base: int, line: int, rendered: Rendered,
                 mutation: Mutation | None) -> None:
    start = base + sum(len(s) for s in out)

    def child(c):
        if c.kind in ATOMIC and not (c.kind == "number" and c.text.startswith("-")):
            _render_expr(c, out, base, line, rendered, mutation)
        else:
            out.append("(")
            _render_expr(c, out, base, line, rendered, mutation)
            out.append(")")

    if node.kind in ("leaf", "number"):
        out.append(node.text)
    elif node.kind == "unary":
        out.append(f"{node.text}(")
        _render_expr(node.children[0], out, base, line, rendered, mutation)
        out.append(")")
    elif node.kind == "neg":
        out.append("-")
        child(node.children[0])
    elif node.kind == "binary":
        child(node.children[0])
        out.append(f" {node.text} ")
        child(node.children[1])
    elif node.kind == "matmul":
        if mutation is not None and mutation.kind == "swap" and mutation.target is node:
            child(node.children[0])
            out.append(f" @ {node.param}")
        else:
            out.append(f"{node.param} @ ")
            child(node.children[0])
    elif node.kind == "rows":  # a piece of a matrix's rows, or a heads parameter
        out.append(f"{node.param} @ ")
        child(node.children[0])
    elif node.kind == "compare":
        child(node.children[0])
        out.append(f" {node.text} ")
        child(node.children[1])
    elif node.kind in ("logic", "not"):  # every operand in parentheses
        for index, operand in enumerate(node.children):
            out.append("not (" if node.kind == "not" else f" {node.text} (" if index else "(")
            _render_expr(operand, out, base, line, rendered, mutation)
            out.append(")")
    elif node.kind == "call":
        out.append(f"{node.text}(")
        for index, argument in enumerate(node.children):
            if index:
                out.append(", ")
            _render_expr(argument, out, base, line, rendered, mutation)
        for literal in node.extra:
            out.append(f", {literal}")
        out.append(")")
    end = base + sum(len(s) for s in out)
    rendered.node_spans[id(node)] = (line, start + 1, end + 1)


def render_cell(cell: Cell, mutation: Mutation | None = None) -> Rendered:
    """The cell's text; spans are 1-based columns, end exclusive, as `Span` has them."""
    r = Rendered()
    header = ", ".join(f"{name} = {default}" for name, default in cell.numbers)
    r.lines.append(f"cell {cell.name}{f'({header})' if header else ''} {{")
    states = ", ".join(f"{n}[{spellings(s)[0]}]" for n, s in cell.states)
    r.lines.append(f"    state {states}")
    for param in cell.params:
        texts = list(param.text)
        if mutation is not None and mutation.kind == "dim":
            if param.name == mutation.target.param:
                texts[1] = spellings(mutation.replacement)[0]
        head = f"    param {param.name}["
        columns = []
        position = len(head)
        for index, text in enumerate(texts):
            if index:
                position += 2
            columns.append((position + 1, position + 1 + len(text)))
            position += len(text)
        line = len(r.lines) + 1
        for index, (a, b) in enumerate(columns):
            r.param_dim_spans[(param.name, index)] = (line, a, b)
        r.lines.append(head + ", ".join(texts) + "]" + param.init)
    for statement in cell.statements:
        line = len(r.lines) + 1
        indent = "    "
        lhs = ", ".join(statement.targets)
        if statement.count:
            count = statement.count
            if mutation is not None and mutation.kind == "count" and mutation.target is statement:
                count = mutation.replacement
            prefix = f"{indent}{lhs} = chunk("
            out: list[str] = []
            _render_expr(statement.expr, out, len(prefix), line, r, mutation)
            text = prefix + "".join(out) + f", {count})"
        else:
            prefix = f"{indent}{lhs} = "
            out = []
            _render_expr(statement.expr, out, len(prefix), line, r, mutation)
            text = prefix + "".join(out)
        r.statement_spans[id(statement)] = (line, len(indent) + 1, len(text) + 1)
        r.lines.append(text)
    r.lines.append("}")
    return r


def acceptable_spans(cell: Cell, mutation: Mutation, rendered: Rendered) -> list[tuple]:
    """Where an error about the mutation may point: the mutated text, or the expression
    or statement whose rule the mutation breaks (a wrong matrix dim is found at its `@`)."""
    if mutation.kind == "swap":
        return [rendered.node_spans[id(mutation.target)]]
    if mutation.kind == "dim":
        return [rendered.node_spans[id(mutation.target)],
                rendered.param_dim_spans[(mutation.target.param, 1)]]
    return [rendered.statement_spans[id(mutation.target)]]


@st.composite
def mutations(draw, cell: Cell) -> Mutation:
    kind = draw(st.sampled_from(["dim", "swap", "count"]))
    if kind == "count":
        statement = draw(st.sampled_from(cell.chunks))
        count = draw(st.sampled_from([c for c in range(1, 6) if c != statement.count]))
        return Mutation("count", statement, count)
    node = draw(st.sampled_from(cell.matmuls))
    if kind == "swap":
        return Mutation("swap", node)
    param = next(p for p in cell.params if p.name == node.param)
    size = draw(st.sampled_from([s for s in SIZES if s != param.dims[1]]))
    return Mutation("dim", node, size)
