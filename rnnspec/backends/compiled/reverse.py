"""The reverse loop's statements: each recorded step of the training forward (`backward.py`'s
tape), from the last to the first, as the adjoints of its operands.

An elementwise loop's derivative is one loop over the same operands: each element's forward
values recomputed, then its adjoints by `DERIVATIVE`, the table of each op's rule (next to
`fused.py`'s printer of the op); a matrix product's is `g @ W` per step (the weight's gradient
deferred to one product after the loop); `layer_norm`'s is ATen's; `concat`'s and `chunk`'s
slices and a concatenation.
"""

from __future__ import annotations

from rnnspec.backends.compiled.cpp import Unsupported
from rnnspec.backends.compiled.fused import element
from rnnspec.cells.equations import Node

# The derivative of each elementwise op: `y` its value, `a`/`b`/`c` its operands' values,
# `d` its adjoint; each entry gives, per operand, the term added to that operand's adjoint
# (None: no gradient). As PyTorch's own backward formulas (derivatives.yaml) write them.
DERIVATIVE = {
    "add": ("{d}", "{d}"),
    "sub": ("{d}", "(-{d})"),
    "mul": ("({d} * {b})", "({d} * {a})"),
    "div": ("({d} / {b})", "(-{d} * {y} / {b})"),
    "neg": ("(-{d})",),
    "sigmoid": ("({d} * {y} * (scalar_t(1) - {y}))",),
    "tanh": ("({d} * (scalar_t(1) - {y} * {y}))",),
    "relu": ("({y} > scalar_t(0) ? {d} : scalar_t(0))",),
    "exp": ("({d} * {y})",),
    "log": ("({d} / {a})",),
    "abs": ("({d} * _sign({a}))",),
    "sqrt": ("({d} / (scalar_t(2) * {y}))",),
    "silu": ("({d} * _dsilu({a}))",),
    "gelu": ("({d} * _dgelu({a}))",),
    "softplus": ("({a} > scalar_t(20) ? {d} : {d} * _sigmoid({a}))",),
    "logsigmoid": ("({d} * _sigmoid(-{a}))",),
    "where": (None, "({a} ? {d} : scalar_t(0))", "({a} ? scalar_t(0) : {d})"),
    "clamp": (
        "(({a} >= {b} && {a} <= {c}) ? {d} : scalar_t(0))",
        "({a} < {b} ? {d} : scalar_t(0))",
        "({a} > {c} ? {d} : scalar_t(0))",
    ),
    "maximum": (
        "({a} > {b} ? {d} : {a} == {b} ? {d} / scalar_t(2) : scalar_t(0))",
        "({b} > {a} ? {d} : {a} == {b} ? {d} / scalar_t(2) : scalar_t(0))",
    ),
    "minimum": (
        "({a} < {b} ? {d} : {a} == {b} ? {d} / scalar_t(2) : scalar_t(0))",
        "({b} < {a} ? {d} : {a} == {b} ? {d} / scalar_t(2) : scalar_t(0))",
    ),
    "dropout": ("{d}",),  # the loop runs only where dropout is the identity
}
# `maximum`/`minimum` of a vector and a number are clamps (PyTorch's clamp_min/clamp_max)
_BOUND = {
    "maximum": "({a} >= {b} ? {d} : scalar_t(0))",
    "minimum": "({a} <= {b} ? {d} : scalar_t(0))",
}


class Reverse:
    """The reverse of each event of the tape (a mixin of `backward.TrainCell`)."""

    def _reverse(self, event) -> list[str]:
        kind = event[0]
        if kind == "number":
            return []
        if kind == "alias":
            _, target, node, (source,) = event
            if source == target:
                return []
            return [
                f"if (g_{target}.defined()) _acc(g_{source}, at::sum_to(g_{target}, "
                f"{source}.sizes()));"
            ]
        if kind == "chunk":
            _, source, node, targets, _expand = event
            parts = []
            by_index = {k: name for name, k in targets}
            lines = [
                f"if (gb_{source}.defined()) {{",
                f"  _acc(g_{source}, gb_{source});",
                f"  gb_{source} = Tensor();",
                "}",
            ]
            if not targets:
                return lines
            lines.append(f"if ({' || '.join(f'g_{n}.defined()' for n, _ in targets)}) {{")
            for k in range(int(node.value[0])):
                name = by_index.get(k)
                piece = f"pieces_{source}[{k}]"
                if name is None:
                    parts.append(f"at::zeros_like({piece})")
                else:
                    parts.append(
                        f"_or_zeros(at::sum_to(_or_zeros(g_{name}, {name}), "
                        f"{piece}.sizes()), {piece})"
                    )
            lines.append(f"  _acc(g_{source}, at::cat({{{', '.join(parts)}}}, -1));")
            lines.append("}")
            return lines
        if kind == "op":
            return self._reverse_op(*event[1:])
        return self._reverse_loop(*event[1:])

    def _reverse_op(self, name: str, node: Node, operands: list[str]) -> list[str]:
        g = f"g_{name}"
        lines = [f"if ({g}.defined()) {{"]
        op = node.op
        args = [a for a in node.args if isinstance(a, Node)]
        if op in ("matmul", "linear"):
            matrix, vector = (args[0], args[1]) if op == "matmul" else (args[1], args[0])
            if matrix.op not in ("param", "local") or not vector.batched:
                raise Unsupported("the gradient of a product with a computed matrix")
            w, v = (operands[0], operands[1]) if op == "matmul" else (operands[1], operands[0])
            if w.startswith("v_") and w not in self._static_names():
                raise Unsupported("the gradient of a product with a hoisted matrix")
            biases = [f"p_{b.value}" for b in args[2:]] if op == "linear" else []
            if self.deferred.setdefault(w, biases) != biases:  # one G per matrix
                raise Unsupported("one matrix with different biases")
            key = list(self.deferred).index(w)
            lines.append(f"  _acc(g_{v}, at::mm({g}, {w}));")
            lines.append(f"  G_{key}.push_back({g});")
            lines.append(f"  V_{key}.push_back({v});")
        elif op == "layer_norm":
            value = operands[0]
            affine = operands[1:]
            weight = f"_opt({affine[0]})" if affine else "std::optional<Tensor>()"
            bias = f"_opt({affine[1]})" if len(affine) > 1 else "std::optional<Tensor>()"
            mask = f"{{true, {str(bool(affine)).lower()}, {str(len(affine) > 1).lower()}}}"
            lines += [
                f"  const auto ln = at::native_layer_norm({value}, {{{value}.size(-1)}}, "
                f"{weight}, {bias}, {float(node.value)!r});",
                f"  const auto back = at::native_layer_norm_backward({g}, {value}, "
                f"{{{value}.size(-1)}}, std::get<1>(ln), std::get<2>(ln), {weight}, {bias}, "
                f"{mask});",
                f"  _acc(g_{value}, std::get<0>(back));",
            ]
            for k, part in enumerate(affine):
                lines.append(f"  _acc(g_{part}, std::get<{k + 1}>(back));")
        elif op == "concat":
            lines.append("  int64_t offset = 0;")
            for part in operands:
                if not part:
                    raise Unsupported("a number in a concat")
                lines.append(
                    f"  _acc(g_{part}, at::sum_to({g}.narrow(-1, offset, "
                    f"{part}.size(-1)), {part}.sizes()));"
                )
                lines.append(f"  offset += {part}.size(-1);")
        else:
            raise Unsupported(f"the gradient of `{op}`")
        lines.append("}")
        return lines

    def _reverse_loop(self, name: str, node: Node, leaves: dict[int, str]) -> list[str]:
        """One loop: each element's forward values recomputed, then its adjoints."""
        pointers: dict[str, str] = {}
        values: dict[int, str] = {}
        forward: list[str] = []
        order: list[Node] = []
        self._values(node, leaves, pointers, values, forward, order)
        adjoints = {id(node): "d0"}
        backward = ["const scalar_t d0 = gq[b * n + j];"]
        for current in reversed(order):
            if id(current) not in adjoints or id(current) in leaves:
                continue
            backward += self._propagate(current, values, adjoints, leaves)
        grads = {tensor: f"gr{pointer[1:]}" for tensor, pointer in pointers.items()}
        for tensor in pointers:
            if tensor not in self._needs_grad:
                raise Unsupported(f"the gradient of `{tensor}` in a loop")
        lines = [f"if (g_{name}.defined()) {{"]
        lines.append(f"  const Tensor gout_{name} = g_{name}.contiguous();")
        lines.append(f"  const scalar_t* gq = gout_{name}.data_ptr<scalar_t>();")
        lines.append(f"  const int64_t n = {name}.size(1);")
        for tensor, pointer in pointers.items():
            lines.append(f"  const scalar_t* {pointer} = {tensor}.data_ptr<scalar_t>();")
            lines.append(f"  const int64_t r{pointer[1:]} = _row({tensor});")
            if tensor in self.chunks:  # a piece: its gradient written into its source's
                source, count, k = self.chunks[tensor]
                lines += [
                    f"  if (!gb_{source}.defined()) gb_{source} = at::zeros_like({source});",
                    f"  scalar_t* {grads[tensor]} = gb_{source}.data_ptr<scalar_t>()"
                    f" + {k} * ({source}.size(-1) / {count});",
                    f"  const int64_t w{pointer[1:]} = {source}.dim() > 1 ? {source}.size(-1) : 0;",
                ]
            elif tensor in self._needs_grad:
                lines.append(f"  Tensor b{pointer[1:]} = at::zeros({tensor}.sizes(), options);")
                lines.append(f"  scalar_t* {grads[tensor]} = b{pointer[1:]}.data_ptr<scalar_t>();")
                lines.append(f"  const int64_t w{pointer[1:]} = {tensor}.dim() > 1 ? n : 0;")
        lines.append("  for (int64_t b = 0; b < batch; ++b) {")
        lines.append("    for (int64_t j = 0; j < n; ++j) {")
        lines += ["      " + line for line in forward + backward]
        for tensor, pointer in pointers.items():
            if tensor not in self._needs_grad:
                continue
            terms = [a for leaf, a in self._leaf_adjoints(leaves, tensor, adjoints)]
            if terms:
                index = f"b * w{pointer[1:]} + j"
                lines.append(f"      {grads[tensor]}[{index}] += {' + '.join(terms)};")
        lines += ["    }", "  }"]
        for tensor, pointer in pointers.items():
            if tensor in self._needs_grad and tensor not in self.chunks:
                lines.append(f"  _acc(g_{tensor}, b{pointer[1:]});")
        lines.append("}")
        return lines

    @property
    def _needs_grad(self) -> set[str]:
        return {
            *self.names,
            *self.reads,
            *(f"p_{r}" for r in self.roles),
            *(self._input(i) for i in range(len(self.lowered.passed))),
        }

    def _leaf_adjoints(self, leaves, tensor, adjoints):
        for key, name in leaves.items():
            if name == tensor and key in adjoints:
                yield key, adjoints[key]

    def _values(self, node, leaves, pointers, values, forward, order) -> str:
        """`node`'s value at (b, j) as a local of the loop; its subtree's first."""
        if id(node) in values:
            return values[id(node)]
        args = [a for a in node.args if isinstance(a, Node)]
        if id(node) in leaves:
            tensor = leaves[id(node)]
            pointer = pointers.setdefault(tensor, f"q{len(pointers)}")
            text = f"{pointer}[b * r{pointer[1:]} + j]"
        elif not self._tensor_valued(node):
            text = self.el(node, {})
        else:
            for arg in args:
                self._values(arg, leaves, pointers, values, forward, order)
            text = element(node.op, [values[id(a)] for a in args])
        name = f"f{len(values)}"
        kind = "bool" if self._condition(node) else "scalar_t"
        forward.append(f"const {kind} {name} = {text};")
        values[id(node)] = name
        order.append(node)
        return name

    def _propagate(self, node: Node, values, adjoints, leaves) -> list[str]:
        """The adjoints of `node`'s operands from its own (`adjoints[id(node)]`)."""
        op = node.op
        if self._condition(node):
            return []
        args = [a for a in node.args if isinstance(a, Node)]
        rules = DERIVATIVE.get(op)
        if rules is None:
            raise Unsupported(f"the gradient of `{op}`")
        tensors = [self._tensor_valued(a) for a in args]
        if op in _BOUND and tensors.count(True) == 1:
            vector = 0 if tensors[0] else 1
            a, b = values[id(args[vector])], values[id(args[1 - vector])]
            rules = [None, None]
            rules[vector] = _BOUND[op].replace("{a}", a).replace("{b}", b)
        fields = {"y": values[id(node)], "d": adjoints[id(node)]}
        for letter, arg in zip("abc", args):
            fields[letter] = values[id(arg)]
        lines = []
        for arg, rule, tensor in zip(args, rules, tensors):
            if rule is None or not tensor:
                continue
            term = rule.format(**fields)
            key = id(arg)
            if key in adjoints:
                lines.append(f"{adjoints[key]} += {term};")
            else:
                adjoint = f"d{len(adjoints)}"
                adjoints[key] = adjoint
                lines.append(f"scalar_t {adjoint} = {term};")
        return lines
