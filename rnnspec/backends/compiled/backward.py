"""The compiled backend's generated backward: a training forward that saves, a reverse loop.

Where gradients are needed on CPU in float or double, the module calls a
`torch.autograd.Function` (`autograd.py`) whose forward runs `train_<k>` and whose
backward runs `back_<k>`, both printed here from the same lowered step as the fused loops:

- `train_<k>`: the fused step (`FusedCell`'s matrix products and elementwise loops), its
  values in single assignment (a state assigned in the step gets a new name), every tensor
  the reverse loop reads saved per step and returned stacked, [T, ...] per value;
- `back_<k>`: from the last step to the first, the frame's backward (the padded steps'
  pass-through, zoneout, recurrent dropout's mask), then each statement's in reverse:
  an elementwise loop's derivative is ONE loop over the same operands (the forward values
  recomputed inside it, `DERIVATIVE` gives each op's rule), a matrix product's is
  `g @ W` per step while the weight's gradient is deferred (`G` and the vector kept per step,
  one `G^T @ V` after the loop), `layer_norm`'s is ATen's, `concat`'s and `chunk`'s are
  slices and a concatenation.

A step the printers cannot differentiate (`Unsupported`: `@` of heads, a matrix product of
a computed matrix, a number-only condition, ...) gets no `train_<k>`: its gradient stays
autograd's over the generic loop. Double backward is not supported (the backward is not
itself differentiable).
"""

from __future__ import annotations

from rnnspec.backends.compiled.cpp import _ELEMENTWISE, _PROLOGUE, Unsupported, _is_tensor
from rnnspec.backends.compiled.fused import FusedCell
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

PRELUDE = """
template <typename T> T _sign(T x) { return T((x > T(0)) - (x < T(0))); }
template <typename T> T _dsilu(T x) {
  const T s = _sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}
template <typename T> T _dgelu(T x) {
  const T cdf = T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440)));
  return cdf + x * std::exp(T(-0.5) * x * x) * T(0.39894228040143267794);
}
void _acc(Tensor& g, const Tensor& d) {
  if (d.defined()) g = g.defined() ? g + d : d;
}
Tensor _or_zeros(const Tensor& g, const Tensor& like) {
  return g.defined() ? g : at::zeros_like(like);
}
// the training loops' arguments with unit feature strides, as the fused loops read them
std::vector<Tensor> _dense(at::TensorList list) {
  std::vector<Tensor> out;
  for (const auto& t : list) out.push_back(t.contiguous());
  return out;
}
"""


class TrainCell(FusedCell):
    """A cell's training forward (`train_<k>`) and reverse loop (`back_<k>`)."""

    # ------------------------------------------------------------ single assignment

    def var(self, name: str) -> str:
        base = self.lowered.names.get(name, name)
        version = getattr(self, "versions", {}).get(base, 0)
        return f"v_{base}" if version == 0 else f"s{version}_{base}"

    def _set(self, target: str, value: str, declared: set[str]) -> str:
        base = self.lowered.names.get(target, target)
        self.versions[base] = self.versions.get(base, 0) + 1
        name = self.var(target)
        self.names.append(name)
        return f"Tensor {name} = {value};"

    # ------------------------------------------------------------ the tape

    def materialize(self, node: Node, lines: list[str]) -> str:
        if self._tensor_leaf(node):
            return self.expr(node)
        if node.op == "chunk":
            raise Unsupported("a chunk inside an expression")
        if node.op in _ELEMENTWISE:
            self._blocks(node, lines)
            name = self._loop(node, lines)
        else:
            for arg in node.args:
                if isinstance(arg, Node) and _is_tensor(arg):
                    self.materialize(arg, lines)
            name = f"t{self.count}"
            self.count += 1
            lines.append(f"Tensor {name} = ({self.expr(node)}).contiguous();")
            self.tape.append(("op", name, node, self._operands(node)))
        self.temps[id(node)] = name
        self.names.append(name)
        return name

    def _operands(self, node: Node) -> list[str]:
        return [
            self.expr(a) if _is_tensor(a) or a.op in ("param", "local") else ""
            for a in node.args
            if isinstance(a, Node)
        ]

    def _loop(self, node: Node, lines: list[str]) -> str:
        name = super()._loop(node, lines)
        self.tape.append(("loop", name, node, self._leaves(node)))
        return name

    def _leaves(self, node: Node) -> dict[int, str]:
        """The operands of an elementwise loop: id of the node -> its tensor's name."""
        found: dict[int, str] = {}
        pending = [node]
        while pending:
            current = pending.pop()
            if _is_tensor(current) and self._tensor_leaf(current):
                found[id(current)] = self.expr(current)
                continue
            if current.op not in _ELEMENTWISE:
                continue
            pending.extend(a for a in current.args if isinstance(a, Node))
        return found

    # ------------------------------------------------------------ the forward

    def _body(self) -> list[str]:
        """The step's statements in single assignment, recording the tape."""
        lines: list[str] = []
        self.versions: dict[str, int] = {}
        self.names: list[str] = []  # every tensor the step names, in order
        self.tape: list[tuple] = []
        self.chunks: dict[str, tuple[str, int]] = {}  # a piece -> (its source, pieces)
        declared: set[str] = set()
        for statement in self.lowered.step:
            node = statement.node
            if statement.assign is not None and statement.assign.sizes[0] is None:
                lines += self._assign(statement, self.expr(node), declared)
                self.tape.append(("number", lines[-1], node, []))
                continue
            inner = node.args[0] if node.op == "chunk" else node
            name = self.materialize(inner, lines)
            if node.op == "chunk":
                lines.append(f"auto pieces_{name} = _pieces({name}, {node.value[0]});")
                pieces = []
                for k, target in enumerate(statement.targets):
                    if target.startswith("_"):
                        continue
                    expand = self._expand(statement)
                    lines.append(self._set(target, f"pieces_{name}[{k}]{expand}", declared))
                    pieces.append((self.names[-1], k))
                    self.chunks[self.names[-1]] = (name, int(node.value[0]))
                self.tape.append(("chunk", name, node, pieces))
                self.tape[-1] += (statement.expand is not None,)
                continue
            if len(statement.targets) > 1:
                raise Unsupported("several targets of one value")
            value = name if statement.expand is None else f"({name}){self._expand(statement)}"
            lines.append(self._set(statement.targets[0], value, declared))
            self.tape.append(("alias", self.names[-1], node, [name]))
        return lines

    def _expand(self, statement) -> str:
        if statement.expand is None:
            return ""
        base = self.lowered.names.get(statement.expand, statement.expand)
        return (
            f".expand_as(v_{base})"
            if self.versions.get(base, 0) == 0
            else (f".expand_as({self.var(statement.expand)})")
        )

    def train(self) -> list[str]:
        """`train_<k>_fused<scalar_t>(a)`: the forward, saving what the reverse loop reads."""
        self.biases = {}
        self.temps: dict[int, str] = {}
        self.transposed: dict[str, str] = {}
        self.count = 0
        self.versions = {}
        lowered = self.lowered
        reads = [self.var(s) for s in lowered.states]
        body = self._body()
        finals = [self.var(s) for s in lowered.states]
        inputs = {self._input(i) for i in range(len(lowered.passed))}
        chunked = set(self.chunks)
        self.saved = [n for n in [*reads, *self.names] if n not in inputs and n not in chunked]
        self.saved = list(dict.fromkeys(self.saved))
        self.finals = finals
        self.reads = reads
        self.body = body
        header = self._header()
        save = [f"saved[{j}].push_back({name});" for j, name in enumerate(self.saved)]
        return [
            "template <typename scalar_t>",
            f"std::vector<Tensor> train_{self.index}_fused(const Args& a) {{",
            *_PROLOGUE,
            *("  " + line for line in header),
            "  const int64_t total = a.inputs[0].size(0);",
            "  std::vector<std::vector<Tensor>> steps;",
            "  for (const auto& input : a.inputs) steps.push_back(input.unbind(0));",
            "  std::vector<Tensor> zone, valid;",
            "  if (a.zone) zone = a.zone->unbind(0);",
            "  if (a.valid) valid = a.valid->unbind(0);",
            "  std::vector<Tensor> s(a.state.begin(), a.state.end());",
            "  std::vector<Tensor> out(total);",
            f"  std::vector<std::vector<Tensor>> saved({len(self.saved)});",
            "  for (int64_t i = 0; i < total; ++i) {",
            "    const int64_t t = a.reverse ? total - 1 - i : i;",
            *("    " + line for line in self._step_inputs()),
            *(f"    Tensor {name} = s[{k}];" for k, name in enumerate(reads)),
            *(["    if (a.keep) v_0 = s[0] * *a.keep;".replace("v_0", reads[0])]),
            *("    " + line for line in body),
            *("    " + line for line in save),
            f"    std::vector<Tensor> n{{{', '.join(finals)}}};",
            "    if (a.zone) {",
            "      n[0] = s[0] + zone[i] * (n[0] - s[0]);",
            "    } else if (a.zoneout > 0) {",
            "      n[0] = a.zoneout * s[0] + (1 - a.zoneout) * n[0];",
            "    }",
            "    if (a.valid) {",
            "      for (size_t k = 0; k < n.size(); ++k) n[k] = at::where(valid[t], n[k], s[k]);",
            "    }",
            "    s = std::move(n);",
            "    out[t] = s[0];",
            "  }",
            "  std::vector<Tensor> result{at::stack(out)};",
            "  result.insert(result.end(), s.begin(), s.end());",
            "  for (const auto& value : saved) result.push_back(at::stack(value));",
            "  return result;",
            "}",
        ]

    def _input(self, i: int) -> str:
        name = self.lowered.passed[i][0]
        return "v_" + self.lowered.names.get(name, name)

    def _step_inputs(self) -> list[str]:
        return [
            f"const Tensor& {self._input(i)} = steps[{i}][t];"
            for i in range(len(self.lowered.passed))
        ]

    def _header(self) -> list[str]:
        header, _, _, _ = self._frame(self._static_lines())
        header += [
            f"const Tensor {name} = {matrix}.t();" for matrix, name in self.transposed.items()
        ]
        return [
            "const auto options = a.state[0].options();",
            "const int64_t batch = a.state[0].size(0);",
            *header,
        ]

    # ------------------------------------------------------------ the reverse loop

    def back(self) -> list[str]:
        """`back_<k>_fused<scalar_t>(a, saved, gout, gfinal)`, after `train()`."""
        self.deferred: dict[str, tuple[list[str], list]] = {}  # matrix -> (its biases, _)
        self.deferred_names: dict[str, str] = {}  # matrix -> the suffix of its G, V lists
        lines: list[str] = []
        for event in reversed(self.tape):
            lines += self._reverse(event)
        params = [f"p_{role}" for role in self.roles]
        statics = self._statics()
        locals_ = [n for n in dict.fromkeys([*self.reads, *self.names]) if n not in params]
        inputs = [self._input(i) for i in range(len(self.lowered.passed))]
        loads = [f"const Tensor& {name} = sv[{j}][i];" for j, name in enumerate(self.saved)]
        pieces = []
        for event in self.tape:
            if event[0] == "number":
                pieces.append(event[1])
            if event[0] == "chunk":
                _, source, node, targets, expand = event
                pieces.append(f"auto pieces_{source} = _pieces({source}, {node.value[0]});")
                for name, k in targets:
                    pieces.append(f"const Tensor {name} = pieces_{source}[{k}];")
        adjoints = [f"Tensor g_{n};" for n in dict.fromkeys([*inputs, *locals_])]
        seeds = []  # several states may be one value (a state not assigned): they add up
        for k, name in enumerate(self.finals):
            seeds.append(f"_acc(g_{name}, gn[{k}]);")
        reads = []
        for k, name in enumerate(self.reads):
            if k == 0:
                reads.append(f"if (a.keep && g_{name}.defined()) g_{name} = g_{name} * *a.keep;")
            reads.append(f"_acc(gs[{k}], g_{name});")
        record = [f"gin[{i}][t] = _or_zeros(g_{name}, {name});" for i, name in enumerate(inputs)]
        after = []
        for matrix, (biases, _) in self.deferred.items():
            key = self.deferred_names[matrix]
            after.append(f"if (!G_{key}.empty()) {{")
            after.append(f"  const Tensor gm = at::cat(G_{key});")
            after.append(f"  _acc(g_{matrix}, gm.t().mm(at::cat(V_{key})));")
            for bias in biases:
                after.append(f"  _acc(g_{bias}, gm.sum(0));")
            after.append("}")
        after += statics
        grads = ", ".join(f"_or_zeros(g_p_{role}, p_{role})" for role in self.roles)
        return [
            "template <typename scalar_t>",
            f"std::vector<Tensor> back_{self.index}_fused(const Args& a, at::TensorList saved,",
            "    const Tensor& gout, at::TensorList gfinal) {",
            *_PROLOGUE,
            *("  " + line for line in self._header()),
            "  const int64_t total = a.inputs[0].size(0);",
            "  std::vector<std::vector<Tensor>> steps, sv;",
            "  for (const auto& input : a.inputs) steps.push_back(input.unbind(0));",
            "  for (const auto& value : saved) sv.push_back(value.unbind(0));",
            "  std::vector<Tensor> zone, valid;",
            "  if (a.zone) zone = a.zone->unbind(0);",
            "  if (a.valid) valid = a.valid->unbind(0);",
            "  const std::vector<Tensor> go = gout.unbind(0);",
            "  std::vector<Tensor> gs(gfinal.begin(), gfinal.end());",
            "  std::vector<std::vector<Tensor>> gin(a.inputs.size(), std::vector<Tensor>(total));",
            *(f"  Tensor g_p_{role};" for role in self.roles),
            *(f"  Tensor g_{name};" for name in self._static_names()),
            *(f"  std::vector<Tensor> G_{k}, V_{k};" for k in self.deferred_names.values()),
            "  for (int64_t i = total - 1; i >= 0; --i) {",
            "    const int64_t t = a.reverse ? total - 1 - i : i;",
            *("    " + line for line in self._step_inputs()),
            *("    " + line for line in loads),
            *("    " + line for line in pieces),
            "    std::vector<Tensor> gn = gs;",
            "    gn[0] = gn[0] + go[t];",
            "    for (auto& g : gs) g = Tensor();",
            "    if (a.valid) {",
            "      for (size_t k = 0; k < gn.size(); ++k) {",
            "        gs[k] = at::where(valid[t], at::zeros_like(gn[k]), gn[k]);",
            "        gn[k] = at::where(valid[t], gn[k], at::zeros_like(gn[k]));",
            "      }",
            "    }",
            "    if (a.zone) {",
            "      _acc(gs[0], (1 - zone[i]) * gn[0]);",
            "      gn[0] = zone[i] * gn[0];",
            "    } else if (a.zoneout > 0) {",
            "      _acc(gs[0], a.zoneout * gn[0]);",
            "      gn[0] = (1 - a.zoneout) * gn[0];",
            "    }",
            *("    " + line for line in adjoints),
            *("    " + line for line in seeds),
            *("    " + line for line in lines),
            *("    " + line for line in reads),
            "    for (size_t k = 0; k < gs.size(); ++k) gs[k] = _or_zeros(gs[k], gn[k]);",
            *("    " + line for line in record),
            "  }",
            *("  " + line for line in after),
            "  std::vector<Tensor> result;",
            "  for (size_t k = 0; k < gin.size(); ++k) result.push_back(at::stack(gin[k]));",
            "  result.insert(result.end(), gs.begin(), gs.end());",
            f"  for (const Tensor& g : std::vector<Tensor>{{{grads}}}) result.push_back(g);",
            "  return result;",
            "}",
        ]

    def _static_names(self) -> list[str]:
        names = []
        for statement in self.lowered.static_for(self.lowered.step):
            names += [self.var(t) for t in statement.targets]
        return names

    def _statics(self) -> list[str]:
        """A matrix parameter's gradient from its row pieces' (`A, B = chunk(W, 2)`)."""
        lines = []
        for statement in self.lowered.static_for(self.lowered.step):
            matrix = self.expr(statement.node.args[0])
            parts = [f"_or_zeros(g_{self.var(t)}, {self.var(t)})" for t in statement.targets]
            lines.append(f"_acc(g_{matrix}, at::cat({{{', '.join(parts)}}}, 0));")
        return lines

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
            lines = [f"if ({' || '.join(f'g_{n}.defined()' for n, _ in targets)}) {{"]
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
            names = self.deferred_names
            key = names.setdefault(w, str(len(names)))
            known = self.deferred.setdefault(w, ([], []))
            for bias in biases:
                if bias not in known[0]:
                    known[0].append(bias)
            if len(known[0]) != len(biases) or biases != known[0][: len(biases)]:
                raise Unsupported("one matrix with different biases")
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
            if tensor in self._needs_grad:
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
            if tensor in self._needs_grad:
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
            text = self._el_of(node, values)
        name = f"f{len(values)}"
        kind = "bool" if self._condition(node) else "scalar_t"
        forward.append(f"const {kind} {name} = {text};")
        values[id(node)] = name
        order.append(node)
        return name

    def _el_of(self, node: Node, values: dict[int, str]) -> str:
        """The forward expression of one elementwise node over its operands' locals."""
        op = node.op
        args = [values[id(a)] for a in node.args if isinstance(a, Node)]
        if op in ("add", "sub", "mul", "div"):
            symbol = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[op]
            return f"({args[0]} {symbol} {args[1]})"
        if op == "neg":
            return f"(-{args[0]})"
        if op == "dropout":
            return args[0]
        return self._el_text(op, args)

    def _el_text(self, op: str, args: list[str]) -> str:
        from rnnspec.backends.compiled.fused import _SCALAR, _SYMBOLS

        if op in _SCALAR:
            return f"{_SCALAR[op]}({args[0]})"
        if op in _SYMBOLS:
            return f"({args[0]} {_SYMBOLS[op]} {args[1]})"
        if op in ("and", "or"):
            return f"({args[0]} {'&&' if op == 'and' else '||'} {args[1]})"
        if op == "not":
            return f"(!{args[0]})"
        if op == "where":
            return f"({args[0]} ? {args[1]} : {args[2]})"
        if op == "clamp":
            return f"_clamp({args[0]}, {args[1]}, {args[2]})"
        if op in ("minimum", "maximum"):
            return f"{'_min' if op == 'minimum' else '_max'}({args[0]}, {args[1]})"
        raise Unsupported(f"`{op}` in a fused loop")

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


_BACK_SCHEMA = (
    '"(Tensor[] inputs, Tensor[] state, Tensor[] weights, float[] numbers, " \\\n'
    '  "bool reverse, " \\\n'
    '  "Tensor? valid, Tensor? keep, float zoneout, Tensor? zone, Tensor[] saved, " \\\n'
    '  "Tensor gout, Tensor[] gfinal) -> Tensor[]"'
)
SCHEMA = f"\n// The schema of every cell's reverse loop.\n#define BACK_SCHEMA {_BACK_SCHEMA}\n"


def _entries(index: int) -> list[str]:
    arguments = [
        "at::TensorList inputs, at::TensorList state,",
        "    at::TensorList weights, c10::ArrayRef<double> numbers, bool reverse,",
        "    const std::optional<Tensor>& valid, const std::optional<Tensor>& keep,",
        "    double zoneout, const std::optional<Tensor>& zone",
    ]
    unpack = [
        "  const auto in = _dense(inputs), st = _dense(state), ws = _dense(weights);",
        "  const Args a{in, st, ws, numbers, reverse, valid, keep, zoneout, zone};",
        "  const bool single = st[0].scalar_type() == at::kFloat;",
    ]
    return [
        f"std::vector<Tensor> train_{index}({arguments[0]}",
        *arguments[1:-1],
        f"{arguments[-1]}) {{",
        *unpack,
        f"  return single ? train_{index}_fused<float>(a) : train_{index}_fused<double>(a);",
        "}",
        "",
        f"std::vector<Tensor> back_{index}({arguments[0]}",
        *arguments[1:-1],
        f"{arguments[-1]}, at::TensorList saved,",
        "    const Tensor& gout, at::TensorList gfinal) {",
        *unpack,
        f"  return single ? back_{index}_fused<float>(a, saved, gout, gfinal)",
        f"                : back_{index}_fused<double>(a, saved, gout, gfinal);",
        "}",
    ]


def train_source(step, index: int) -> tuple[list[str], list[str]] | None:
    """The C++ of cell `index`'s training forward and reverse loop, and their
    registrations; None where the printers cannot differentiate its step."""
    cell = TrainCell(step, index)
    try:
        lines = [*cell.train(), "", *cell.back(), "", *_entries(index), ""]
    except Unsupported:
        return None
    registrations = [
        f'  m.def("train_{index}" SCHEMA, &train_{index});',
        f'  m.def("back_{index}" BACK_SCHEMA, &back_{index});',
    ]
    return lines, registrations
