"""The C++ of the compiled backend: each cell's time loop over the whole sequence.

The step is the one `cells.lower` lowers for every backend: what reads no state runs
before the loop in Python (the cell's `hoist`, as on the explicit backend); the rest is
printed here twice from `CPP_FOR_OP`-style printers over the same `Node`s:

- the generic loop (`<cell>_generic`): every op an ATen call (any dtype, any device, and
  autograd records it: the backward runs in autograd's C++ engine);
- the CPU fast path (`<cell>_fused`, float and double, no gradient needed): matrix
  products, `layer_norm`, `concat` and `@` of heads as ATen calls, and each statement's
  elementwise rest fused into one plain loop over the batch and the features.

A cell the printers cannot write (`Unsupported`) keeps the explicit backend's Python loop.
The source is deterministic: the same cells give the same bytes.
"""

from __future__ import annotations

from rnnspec.cells.equations import Node
from rnnspec.cells.lower import Lowered, Statement, lower, terms
from rnnspec.language.names import Namespace

LINE = 96  # C++ lines fit the generated Python module's line length


# The first lines of every generated loop function: its arguments unpacked.
_PROLOGUE = (
    "  at::TensorList w = a.weights;",
    "  c10::ArrayRef<double> numbers = a.numbers;",
    "  (void)numbers;",
    "  const auto dtype = a.state[0].scalar_type();",
    "  (void)dtype;",
)


class Unsupported(Exception):
    """A step the C++ printers cannot write: that cell runs the Python loop."""


def _double(value) -> str:
    if isinstance(value, bool):
        raise Unsupported("a bool where a number is expected")
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        raise Unsupported(f"the number {text}")
    return text


_UNARY = {
    "sigmoid": "at::sigmoid",
    "tanh": "at::tanh",
    "relu": "at::relu",
    "exp": "at::exp",
    "log": "at::log",
    "abs": "at::abs",
    "sqrt": "at::sqrt",
    "gelu": "at::gelu",
    "silu": "at::silu",
    "softplus": "at::softplus",
    "logsigmoid": "at::log_sigmoid",
}
_COMPARE = {
    "less": ("at::lt", "at::gt", "<"),
    "less_equal": ("at::le", "at::ge", "<="),
    "greater": ("at::gt", "at::lt", ">"),
    "greater_equal": ("at::ge", "at::le", ">="),
    "equal": ("at::eq", "at::eq", "=="),
    "not_equal": ("at::ne", "at::ne", "!="),
}
# the fused loop's scalar forms (`x` is the operand, a `scalar_t`)
_SCALAR = {
    "sigmoid": "_sigmoid({})",
    "tanh": "std::tanh({})",
    "relu": "_relu({})",
    "exp": "std::exp({})",
    "log": "std::log({})",
    "abs": "std::abs({})",
    "sqrt": "std::sqrt({})",
    "gelu": "_gelu({})",
    "silu": "_silu({})",
    "softplus": "_softplus({})",
    "logsigmoid": "_logsigmoid({})",
}
_ELEMENTWISE = {
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "clamp",
    "minimum",
    "maximum",
    "where",
    "dropout",
    "and",
    "or",
    "not",
    *_UNARY,
    *_COMPARE,
}


def _is_tensor(node: Node) -> bool:
    return node.size is not None


def _condition(node: Node) -> bool:
    return node.op in _COMPARE or node.op in ("and", "or", "not")


class _Cell:
    """One cell's two loops."""

    def __init__(self, step, index: int):
        self.step = step
        self.index = index
        self.lowered: Lowered = lower(step, Namespace(set()))
        self.roles = self._roles()
        self.dropout = self._reads_op("dropout")

    # ------------------------------------------------------------------ facts

    def _nodes(self, statements):
        pending = [s.node for s in statements]
        while pending:
            node = pending.pop()
            yield node
            pending.extend(a for a in node.args if isinstance(a, Node))

    def _reads_op(self, op: str) -> bool:
        return any(n.op == op for n in self._nodes(self._step_statements()))

    def _step_statements(self) -> list[Statement]:
        lowered = self.lowered
        return [*lowered.static_for(lowered.step), *lowered.step]

    def _roles(self) -> tuple[str, ...]:
        """The parameters the loop reads, in the step's order (the op's `weights`)."""
        read = {n.value for n in self._nodes(self._step_statements()) if n.op == "param"}
        return tuple(p for p in self.step.params if p in read)

    def var(self, name: str) -> str:
        return "v_" + self.lowered.names.get(name, name)

    # ------------------------------------------------------------------ generic

    def expr(self, node: Node) -> str:
        """The node as a C++ expression: an `at::Tensor`, or a `double`/`bool` for numbers."""
        op = node.op
        args = [a for a in node.args if isinstance(a, Node)]
        if op == "number":
            return _double(node.value)
        if op == "x":
            return "v_x"
        if op in ("state", "local"):
            return self.var(node.value)
        if op == "param":
            return f"p_{node.value}"
        if op == "argument":
            return f"numbers[{self.step.numbers.index(node.value)}]"
        if op in ("add", "sub"):
            text, tensor = None, False
            for sign, term in terms(node):
                part = self.expr(term)
                if text is None:
                    text = part if sign > 0 else self._neg(term, part)
                else:
                    text = self._binary(
                        "+" if sign > 0 else "-", tensor, text, self._tensor_valued(term), part
                    )
                tensor = tensor or self._tensor_valued(term)
            return text
        if op in ("mul", "div"):
            a, b = args
            return self._binary(
                "*" if op == "mul" else "/",
                self._tensor_valued(a),
                self.expr(a),
                self._tensor_valued(b),
                self.expr(b),
            )
        if op == "neg":
            return self._neg(args[0], self.expr(args[0]))
        if op in _UNARY:
            if not _is_tensor(args[0]):
                raise Unsupported(f"`{op}` of a number")
            return f"{_UNARY[op]}({self.expr(args[0])})"
        if op in _COMPARE:
            return self._compare(op, *args)
        if op in ("and", "or", "not"):
            if not all(_is_tensor(a) or _condition(a) for a in args):
                raise Unsupported(f"`{op}` of numbers")
            parts = [self.expr(a) for a in args]
            if not all(self._tensor_valued(a) for a in args):
                raise Unsupported(f"`{op}` of a condition on numbers")
            return f"at::logical_{op}({', '.join(parts)})"
        if op == "where":
            return self._where(*args)
        if op == "clamp":
            inner, low, high = args
            if _is_tensor(low) != _is_tensor(high):
                raise Unsupported("`clamp` between a number and a vector")
            return f"at::clamp({self.expr(inner)}, {self.expr(low)}, {self.expr(high)})"
        if op in ("minimum", "maximum"):
            left, right = args
            if _is_tensor(left) and _is_tensor(right):
                return f"at::{op}({self.expr(left)}, {self.expr(right)})"
            if not (_is_tensor(left) or _is_tensor(right)):
                raise Unsupported(f"`{op}` of two numbers")
            vector, number = (right, left) if not _is_tensor(left) else (left, right)
            bound = "at::clamp_max" if op == "minimum" else "at::clamp_min"
            return f"{bound}({self.expr(vector)}, {self.expr(number)})"
        if op == "matmul":
            matrix, vector = args
            return f"at::linear({self.expr(vector)}, {self.expr(matrix)})"
        if op == "linear":
            vector, matrix, *biases = args
            bias = self.bias(biases)
            return f"at::linear({self.expr(vector)}, {self.expr(matrix)}, {bias})"
        if op == "heads_matmul":
            matrix, vector = args
            return f"_heads({self.expr(matrix)}, {self.expr(vector)})"
        if op == "layer_norm":
            inner, *affine = args
            parts = [f"_opt({self.expr(a)})" for a in affine]
            parts += ["std::optional<Tensor>()"] * (2 - len(parts))
            return f"_layer_norm({self.expr(inner)}, {parts[0]}, {parts[1]}, {_double(node.value)})"
        if op == "concat":
            return f"_concat({{{', '.join(self.expr(a) for a in args)}}})"
        if op == "dropout":  # the loop runs only where dropout is the identity
            return self.expr(args[0])
        raise Unsupported(f"the operation `{op}`")

    def _tensor_valued(self, node: Node) -> bool:
        if _condition(node):
            return any(self._tensor_valued(a) for a in node.args if isinstance(a, Node))
        return _is_tensor(node)

    def bias(self, biases: list[Node]) -> str:
        """The sum of a `linear`'s biases: computed once, before the loop."""
        text = " + ".join(f"p_{b.value}" for b in biases)
        if len(biases) == 1:
            return text
        if text not in self.biases:
            self.biases[text] = f"bias_{len(self.biases)}"
        return self.biases[text]

    def _neg(self, node: Node, text: str) -> str:
        return f"at::neg({text})" if _is_tensor(node) else f"(-{text})"

    def _binary(self, symbol: str, ta: bool, left: str, tb: bool, right: str) -> str:
        if ta or not tb:  # tensor op tensor, tensor op number, number op number
            return f"({left} {symbol} {right})"
        if symbol in "+*":  # number op tensor: commutes, as Python's reflected operators do
            return f"({right} {symbol} {left})"
        if symbol == "-":
            return f"at::rsub({right}, {left})"
        return f"(at::reciprocal({right}) * {left})"  # Python's `number / tensor`

    def _compare(self, op: str, a: Node, b: Node) -> str:
        function, flipped, symbol = _COMPARE[op]
        if _is_tensor(a):
            return f"{function}({self.expr(a)}, {self.expr(b)})"
        if _is_tensor(b):
            return f"{flipped}({self.expr(b)}, {self.expr(a)})"
        return f"({self.expr(a)} {symbol} {self.expr(b)})"

    def _where(self, condition: Node, a: Node, b: Node) -> str:
        if not self._tensor_valued(condition):
            raise Unsupported("`where` on a condition of numbers")
        text = f"at::where({self.expr(condition)}, {self.expr(a)}, {self.expr(b)})"
        if not _is_tensor(a) and not _is_tensor(b):
            return f"{text}.to(dtype)"
        return text

    def _assign(self, statement: Statement, value: str, declared: set[str]) -> list[str]:
        """`v_a = value;` (declaring `a` where it is new); a chunk's pieces one by one."""
        node = statement.node
        targets = statement.targets
        if statement.assign is not None and statement.assign.sizes[0] is None:
            name = self.var(targets[0])
            return [f"double {name} = {value};" if name not in declared else f"{name} = {value};"]
        expand = f".expand_as({self.var(statement.expand)})" if statement.expand is not None else ""
        if node.op == "chunk" or len(targets) > 1:
            if node.op != "chunk":
                raise Unsupported("several targets of one value")
            lines = [f"auto pieces_{len(declared)} = {value};"]
            pieces = f"pieces_{len(declared)}"
            for k, target in enumerate(targets):
                if target.startswith("_"):
                    continue  # a piece nothing reads
                lines.append(self._set(target, f"{pieces}[{k}]{expand}", declared))
            return lines
        return [self._set(targets[0], value if not expand else f"({value}){expand}", declared)]

    def _frame(self, static: list[str]) -> tuple[list[str], list[str], list[str], str]:
        """What both loops declare around the step: the weights, the values computed once
        before the loop (`static`, the folded biases), the step's inputs and states, and
        the states it returns."""
        lowered = self.lowered
        header = [f"const Tensor& p_{role} = w[{i}];" for i, role in enumerate(self.roles)]
        header += static
        header += [f"const Tensor {name} = {text};" for text, name in self.biases.items()]
        inputs = [
            f"const Tensor& {self.var(name)} = in[{i}];"
            for i, (name, _) in enumerate(lowered.passed)
        ]
        states = [f"Tensor {self.var(name)} = st[{i}];" for i, name in enumerate(lowered.states)]
        return header, inputs, states, ", ".join(self.var(s) for s in lowered.states)

    def _set(self, target: str, value: str, declared: set[str]) -> str:
        name = self.var(target)
        if name in declared:
            return f"{name} = {value};"
        declared.add(name)
        return f"Tensor {name} = {value};"

    def generic(self) -> list[str]:
        """`std::vector<Tensor> loop_<k>_generic(...)`: the step as ATen calls."""
        self.biases: dict[str, str] = {}
        lowered = self.lowered
        declared = {self.var(s) for s in lowered.states}
        static = self._static_lines()
        step = []
        for statement in lowered.step:
            if statement.node.op == "chunk":
                value = (
                    f"at::chunk({self.expr(statement.node.args[0])}, {statement.node.value[0]}, -1)"
                )
            else:
                value = self.expr(statement.node)
            step += self._assign(statement, value, declared)
        header, inputs, states, returned = self._frame(static)
        return [
            f"std::vector<Tensor> loop_{self.index}_generic(const Args& a) {{",
            *_PROLOGUE,
            *("  " + line for line in header),
            "  auto step = [&](const std::vector<Tensor>& in, const std::vector<Tensor>& st) {",
            "    (void)in;",
            *("    " + line for line in inputs + states + step),
            f"    return std::vector<Tensor>{{{returned}}};",
            "  };",
            "  return run_generic(step, a);",
            "}",
        ]

    def _static_lines(self) -> list[str]:
        """`A, B = chunk(W, 2)` of matrix parameters: views, once before the loop."""
        lines = []
        lowered = self.lowered
        for n, statement in enumerate(lowered.static_for(lowered.step)):
            pieces, _, _ = statement.node.value
            matrix = self.expr(statement.node.args[0])
            lines.append(f"auto rows_{n} = at::chunk({matrix}, {pieces}, 0);")
            for k, target in enumerate(statement.targets):
                lines.append(f"const Tensor {self.var(target)} = rows_{n}[{k}];")
        return lines


_PRELUDE = """\
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <vector>

namespace {

using at::Tensor;

struct Args {
  at::TensorList inputs;  // the hoisted values, each [T, B, ...] (or [T, ...])
  at::TensorList state;  // the initial states, each [B, size]
  at::TensorList weights;  // the parameters the step reads
  c10::ArrayRef<double> numbers;  // the cell's number arguments
  bool reverse;  // run from the last step to the first (outputs stay in time order)
  const std::optional<Tensor>& valid;  // [T, B, 1]: a padded batch's valid steps
  const std::optional<Tensor>& keep;  // [B, H]: recurrent dropout's mask of the first state
  double zoneout;  // evaluation's zoneout: h = p * h_prev + (1 - p) * h
  const std::optional<Tensor>& zone;  // [T, B, H]: training's zoneout masks
};

std::optional<Tensor> _opt(const Tensor& value) { return value; }

Tensor _layer_norm(const Tensor& value, const std::optional<Tensor>& weight,
                   const std::optional<Tensor>& bias, double eps) {
  return at::layer_norm(value, {value.size(-1)}, weight, bias, eps);
}

Tensor _concat(std::vector<Tensor> parts) {
  int64_t most = 0;
  for (const auto& part : parts) most = std::max<int64_t>(most, part.dim());
  std::vector<int64_t> leading;
  for (const auto& part : parts) {
    if (part.dim() == most) {
      leading = part.sizes().vec();
      break;
    }
  }
  for (auto& part : parts) {
    std::vector<int64_t> shape = leading;
    shape.back() = part.size(-1);
    part = part.expand(shape);
  }
  return at::cat(parts, -1);
}

Tensor _heads(const Tensor& weight, const Tensor& value) {
  const int64_t heads = weight.size(0), columns = weight.size(2);
  Tensor split = value.unflatten(-1, {heads, columns});
  return at::einsum("hmn,...hn->...hm", {weight, split}).flatten(-2);
}

// The time loop of the generic path: `step(inputs_t, states) -> new states`, every op
// an ATen call (recorded by autograd where gradients are needed).
template <typename Step>
std::vector<Tensor> run_generic(Step&& step, const Args& a) {
  const int64_t total = a.inputs[0].size(0);
  std::vector<Tensor> s(a.state.begin(), a.state.end());
  std::vector<Tensor> in(a.inputs.size());
  std::vector<Tensor> out(total);
  // Without gradients and from 8192 values per step, each step's output is copied into the
  // result at once: the final stack re-reads outputs long out of the cache (measured, 100
  // steps: B = 64, H = 512 stack 7 ms, copies 1.3 ms; B = 1, H = 256 stack 0.02 ms, copies
  // and their views 0.3 ms).
  const bool record = at::GradMode::is_enabled() || s[0].numel() < 8192;
  std::vector<int64_t> shape{total};
  for (const int64_t size : s[0].sizes()) shape.push_back(size);
  Tensor output = record ? Tensor() : at::empty(shape, s[0].options());
  // each input's steps as views, once (one backward node per input, not one per step)
  std::vector<std::vector<Tensor>> steps;
  for (const auto& input : a.inputs) steps.push_back(input.unbind(0));
  std::vector<Tensor> zone, valid;
  if (a.zone) zone = a.zone->unbind(0);
  if (a.valid) valid = a.valid->unbind(0);
  for (int64_t i = 0; i < total; ++i) {
    const int64_t t = a.reverse ? total - 1 - i : i;
    for (size_t k = 0; k < in.size(); ++k) in[k] = steps[k][t];
    std::vector<Tensor> read = s;
    if (a.keep) read[0] = s[0] * *a.keep;
    std::vector<Tensor> n = step(in, read);
    if (a.zone) {
      n[0] = s[0] + zone[i] * (n[0] - s[0]);
    } else if (a.zoneout > 0) {
      n[0] = a.zoneout * s[0] + (1 - a.zoneout) * n[0];
    }
    if (a.valid) {
      const Tensor& v = valid[t];
      for (size_t k = 0; k < n.size(); ++k) n[k] = at::where(v, n[k], s[k]);
    }
    s = std::move(n);
    if (record) {
      out[t] = s[0];
    } else {
      output[t].copy_(s[0]);
    }
  }
  std::vector<Tensor> result{record ? at::stack(out) : output};
  result.insert(result.end(), s.begin(), s.end());
  return result;
}
"""
