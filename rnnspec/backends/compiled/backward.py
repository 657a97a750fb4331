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
from rnnspec.backends.compiled.reverse import Reverse
from rnnspec.cells.equations import Node

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


class TrainCell(Reverse, FusedCell):
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
        leaf = self._tensor_leaf(node)
        name = super().materialize(node, lines)
        if not leaf:
            self.names.append(name)
        return name

    def _op(self, node: Node, lines: list[str]) -> str:
        name = super()._op(node, lines)
        self.tape.append(("op", name, node, self._operands(node)))
        return name

    def _add_product(self, node: Node, lines: list[str]) -> None:
        return None  # `a + W @ v` stays a product and a loop: the tape has their reverses

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
        self.chunks: dict[str, tuple[str, int, int]] = {}  # a piece -> (source, pieces, k)
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
                    self.chunks[self.names[-1]] = (name, int(node.value[0]), k)
                self.tape.append(("chunk", name, node, pieces, statement.expand is not None))
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
            f"    if (a.keep) {reads[0]} = s[0] * *a.keep;",
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

    def _header(self, products: bool = True) -> list[str]:
        """The loop's frame; with `products`, each weight's `Matrix` (the forward's; the
        reverse loop multiplies by the weights themselves)."""
        header, _, _, _ = self._frame(self._static_lines())
        header += [
            f"const Matrix {name} = _matrix<scalar_t>({matrix}, batch, a.inputs[0].size(0));"
            for matrix, name in (self.transposed.items() if products else ())
        ]
        return [
            "const auto options = a.state[0].options();",
            "const int64_t batch = a.state[0].size(0);",
            *header,
        ]

    # ------------------------------------------------------------ the reverse loop

    def back(self) -> list[str]:
        """`back_<k>_fused<scalar_t>(a, saved, gout, gfinal)`, after `train()`."""
        # matrix -> its biases; its place is the suffix of its G, V lists
        self.deferred: dict[str, list[str]] = {}
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
        adjoints += [
            f"Tensor gb_{n};" for n in dict.fromkeys(s for s, _, _ in self.chunks.values())
        ]
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
        for key, (matrix, biases) in enumerate(self.deferred.items()):
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
            *("  " + line for line in self._header(products=False)),
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
            *(f"  std::vector<Tensor> G_{k}, V_{k};" for k in range(len(self.deferred))),
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
