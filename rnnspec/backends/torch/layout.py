"""Lines laid out as `ruff format` lays them out (line length 100), for generated code.

A statement that fits stays on one line (its trailing comment counts, as ruff counts it).
Otherwise it is split the way the formatter splits the forms the emitter writes: a call at
its last bracket (arguments on one line when they fit, else one per line with a trailing
comma; a sole argument laid out in place), a sum with one loosest operator whose last
operand is a call at that call's bracket, any other expression in parentheses broken
before each loosest operator (Black's "right-hand split" and "delimiter split").
`tests/test_emit.py` checks the result with ruff itself, over the goldens and a corpus.
"""

from __future__ import annotations

import ast

LINE_LENGTH = 100
_PRECEDENCE = {ast.Add: 1, ast.Sub: 1, ast.Mult: 2, ast.Div: 2}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
            ast.NotEq: "!="}


def _precedence(node: ast.expr) -> int:
    if isinstance(node, ast.Compare):
        return 0
    if isinstance(node, ast.BinOp):
        return _PRECEDENCE[type(node.op)]
    if isinstance(node, ast.UnaryOp):
        return 3
    if isinstance(node, (ast.Tuple, ast.GeneratorExp)):
        return 5  # printed with their own parentheses
    return 4


def _fits(line: str) -> bool:
    return len(line) <= LINE_LENGTH


class _Layout:
    def __init__(self, code: str):
        self.code = code

    # ----------------------------------------------------------------- one line

    def flat(self, node: ast.expr) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Constant):
            return ast.get_source_segment(self.code, node)
        if isinstance(node, ast.Attribute):
            return f"{self.atom(node.value)}.{node.attr}"
        if isinstance(node, ast.Call):
            return f"{self.atom(node.func)}({', '.join(self._arguments(node))})"
        if isinstance(node, ast.BinOp):
            level = _PRECEDENCE[type(node.op)]
            return (f"{self.operand(node.left, level, False)} {_SYMBOLS[type(node.op)]} "
                    f"{self.operand(node.right, level, True)}")
        if isinstance(node, ast.UnaryOp):
            return "-" + self.operand(node.operand, 3, False)
        if isinstance(node, ast.Compare):
            return " ".join([self.flat(node.left)] + [
                f"{_COMPARE[type(op)]} {self.flat(right)}"
                for op, right in zip(node.ops, node.comparators)])
        if isinstance(node, ast.Subscript):
            return f"{self.atom(node.value)}[{self.flat(node.slice)}]"
        if isinstance(node, ast.Starred):
            return "*" + self.atom(node.value)
        if isinstance(node, ast.Tuple):
            items = [self.flat(e) for e in node.elts]
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        if isinstance(node, ast.GeneratorExp):
            loop = node.generators[0]
            return f"({self.flat(node.elt)} for {self.flat(loop.target)} in {self.flat(loop.iter)})"
        raise ValueError(f"no layout for {ast.dump(node)}")

    def atom(self, node: ast.expr) -> str:
        text = self.flat(node)
        return f"({text})" if _precedence(node) < 4 else text

    def operand(self, node: ast.expr, level: int, right: bool) -> str:
        text = self.flat(node)
        inner = _precedence(node)
        return f"({text})" if inner < level or (right and inner == level) else text

    def _arguments(self, call: ast.Call) -> list[str]:
        return [self.flat(a) for a in call.args] + \
            [f"{k.arg}={self.flat(k.value)}" for k in call.keywords]

    # ----------------------------------------------------------------- split

    def rhs(self, node: ast.expr, indent: int, prefix: str, suffix: str) -> list[str]:
        """`node` after `prefix` on the first line and before `suffix` on the last."""
        pad = " " * indent
        one = pad + prefix + self.flat(node) + suffix
        if _fits(one):
            return [one]
        if isinstance(node, ast.Call):
            lines = self._split_call(node, indent, prefix, suffix)
            if lines:
                return lines
        if isinstance(node, (ast.BinOp, ast.UnaryOp)):
            lines = self._split_last_call(node, indent, prefix, suffix)
            if lines:
                return lines
        if isinstance(node, (ast.Tuple, ast.GeneratorExp)):
            return [pad + prefix + "(", *self.contents(node, indent + 4), pad + ")" + suffix]
        return [pad + prefix + "(", *self.body(node, indent + 4), pad + ")" + suffix]

    def _split_call(self, call: ast.Call, indent: int, prefix: str, suffix: str):
        pad = " " * indent
        first = pad + prefix + self.atom(call.func) + "("
        if _fits(first):
            return [first, *self._call_arguments(call, indent + 4), pad + ")" + suffix]
        func = call.func
        if isinstance(func, ast.Attribute):  # a method of a bracketed value: split that
            tail = f".{func.attr}({', '.join(self._arguments(call))}){suffix}"
            if isinstance(func.value, ast.Call):
                return self._split_call(func.value, indent, prefix, tail)
            if _precedence(func.value) < 4:
                return [pad + prefix + "(", *self.body(func.value, indent + 4), pad + ")" + tail]
        return None

    def _split_last_call(self, node: ast.expr, indent: int, prefix: str, suffix: str):
        """One loosest operator (or a sign) and a bracket at the end: split at that bracket
        (`a + f(...)`, `a * (b + c)`), or at a call that starts the expression when the
        first line would not fit (ruff's "optional parentheses" omitted); None: wrap the
        whole in parentheses."""
        pad = " " * indent
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.operand, ast.Call):
                return self._split_call(node.operand, indent, prefix + "-", suffix)
            if _precedence(node.operand) < 3:
                return [pad + prefix + "-(", *self.body(node.operand, indent + 4),
                        pad + ")" + suffix]
            return None
        level = _PRECEDENCE[type(node.op)]
        chain = self._chain(node, level)
        if len(chain) != 2:
            return None
        text = self.flat(node)
        last, wrapped = node.right, _precedence(node.right) <= level
        while not wrapped and not isinstance(last, ast.Call):  # the bracket it ends with
            if isinstance(last, ast.UnaryOp):
                last, wrapped = last.operand, _precedence(last.operand) < 3
            elif isinstance(last, ast.BinOp):
                inner = _PRECEDENCE[type(last.op)]
                last, wrapped = last.right, _precedence(last.right) <= inner
            else:
                return None  # ends without a bracket: in parentheses
        if wrapped:
            head = pad + prefix + text[:-len(self.flat(last)) - 2] + "("
            if _fits(head):
                return [head, *self.body(last, indent + 4), pad + ")" + suffix]
        else:
            lines = self._split_call(last, indent, prefix + text[:-len(self.flat(last))], suffix)
            if lines:
                return lines
        first = chain[0][1]  # the head does not fit: the first bracket splits instead
        if isinstance(first, ast.Call):
            return self._split_call(first, indent, prefix, text[len(self.flat(first)):] + suffix)
        return None

    def _call_arguments(self, call: ast.Call, indent: int) -> list[str]:
        pad = " " * indent
        items = self._arguments(call)
        if _fits(pad + ", ".join(items)):
            return [pad + ", ".join(items)]
        if len(call.args) == 1 and not call.keywords:
            return self.body(call.args[0], indent)
        lines = []
        for argument in call.args:  # inside brackets: a sum splits at its operators
            lines += self.body(argument, indent, ",")
        for keyword in call.keywords:
            lines += self.rhs(keyword.value, indent, f"{keyword.arg}=", ",")
        return lines

    def _chain(self, node: ast.expr, level: int) -> list[tuple[str, ast.expr]]:
        """The operands of the loosest operators of `node`: (operator or "", operand)."""
        if isinstance(node, ast.BinOp) and _PRECEDENCE[type(node.op)] == level:
            return [*self._chain(node.left, level), (_SYMBOLS[type(node.op)], node.right)]
        return [("", node)]

    def body(self, node: ast.expr, indent: int, suffix: str = "") -> list[str]:
        """`node` alone inside brackets (or an item of a split list: `suffix` ",")."""
        pad = " " * indent
        if _fits(pad + self.flat(node) + suffix):
            return [pad + self.flat(node) + suffix]
        if isinstance(node, ast.BinOp):
            level = _PRECEDENCE[type(node.op)]
            lines = []
            for index, (symbol, operand) in enumerate(self._chain(node, level)):
                start = f"{symbol} " if symbol else ""
                if _precedence(operand) < level or (index and _precedence(operand) == level):
                    lines.append(pad + start + f"({self.flat(operand)})")
                else:
                    lines += self.rhs(operand, indent, start, "")
            lines[-1] += suffix
            return lines
        if isinstance(node, ast.Compare):  # split before each comparison operator
            lines = self.rhs(node.left, indent, "", "")
            for op, right in zip(node.ops, node.comparators):
                lines += self.rhs(right, indent, f"{_COMPARE[type(op)]} ", "")
            lines[-1] += suffix
            return lines
        return self.rhs(node, indent, "", suffix)

    def contents(self, node: ast.expr, indent: int) -> list[str]:
        """The inside of a tuple's or a generator's own parentheses."""
        pad = " " * indent
        if isinstance(node, ast.GeneratorExp):
            loop = node.generators[0]
            inside = f"{self.flat(node.elt)} for {self.flat(loop.target)} in {self.flat(loop.iter)}"
            if _fits(pad + inside):
                return [pad + inside]
            return [*self.rhs(node.elt, indent, "", ""),
                    pad + f"for {self.flat(loop.target)} in {self.flat(loop.iter)}"]
        lines = []
        for element in node.elts:  # a tuple that splits has one element per line
            lines += self.body(element, indent, ",")
        return lines


def statement(code: str, indent: int, comment: str | None = None) -> str:
    """`code` (an assignment, or a `return`) at `indent`, with its trailing comment."""
    suffix = f"  # {comment}" if comment else ""
    pad = " " * indent
    if _fits(pad + code + suffix):
        return pad + code + suffix
    tree = ast.parse(code).body[0]
    layout = _Layout(code)
    if isinstance(tree, ast.Return):
        return "\n".join(layout.rhs(tree.value, indent, "return ", suffix))
    target = tree.targets[0]
    value = tree.value
    target_text = ast.get_source_segment(code, target)
    if isinstance(target, ast.Tuple) and not _fits(pad + target_text + " = ("):
        lines = layout.rhs(target, indent, "", "")  # the targets split, then the value
        return "\n".join([*lines[:-1], lines[-1] + f" = {layout.flat(value)}{suffix}"])
    return "\n".join(layout.rhs(value, indent, target_text + " = ", suffix))
