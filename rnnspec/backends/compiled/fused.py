"""The compiled backend's CPU fast path: a step whose elementwise parts are plain C++ loops.

`loop_<k>_fused<scalar_t>` runs where no gradient is needed, on CPU, in float or double.
Each statement of the lowered step becomes: its matrix products, `layer_norm`, `concat`
and `@` of heads as ATen calls (their operands computed first), and the elementwise rest
as ONE loop over the batch and the features, reading every tensor through a pointer and
its row stride (a parameter's is 0). Ten small elementwise ATen calls (about 1.5 us each
at B = 1, almost all dispatch) become one loop.
"""

from __future__ import annotations

from rnnspec.backends.compiled.cpp import (
    _ELEMENTWISE,
    _PROLOGUE,
    Unsupported,
    _Cell,
    _is_tensor,
)
from rnnspec.cells.equations import Node
from rnnspec.cells.lower import terms

_LEAVES = ("x", "state", "local", "param")
_SCALAR = {
    "sigmoid": "_sigmoid",
    "tanh": "_tanh",
    "relu": "_relu",
    "exp": "_exp",
    "log": "std::log",
    "abs": "std::abs",
    "sqrt": "std::sqrt",
    "gelu": "_gelu",
    "silu": "_silu",
    "softplus": "_softplus",
    "logsigmoid": "_logsigmoid",
}
_SYMBOLS = {
    "less": "<",
    "less_equal": "<=",
    "greater": ">",
    "greater_equal": ">=",
    "equal": "==",
    "not_equal": "!=",
}

# The scalar functions of the fused loops, as PyTorch's CPU kernels define them.
PRELUDE = """
// exp of a float without a libm call (Cephes' expf: a degree-5 polynomial after range
// reduction, about 1 ulp), so that the loops vectorise; double keeps std::exp
inline float _exp(float x) {
  const float c = std::min(std::max(x, -87.0f), 88.0f);
  const float n = std::floor(c * 1.44269504088896341f + 0.5f);
  const float r = c - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  const float v = e * __builtin_bit_cast(float, bits);
  return x != x ? x : x > 88.7228f ? INFINITY : x < -87.0f ? 0.0f : v;  // 0: below 2e-38
}
inline double _exp(double x) { return std::exp(x); }
inline float _tanh(float x) {
  const float a = std::abs(x);
  const float t = 1.0f - 2.0f / (_exp(2.0f * a) + 1.0f);
  const float small = x * (1.0f - x * x * (1.0f / 3.0f));  // |x| < 0.004: its series
  return a < 0.004f ? small : (x < 0 ? -t : t);
}
inline double _tanh(double x) { return std::tanh(x); }
template <typename T> T _sigmoid(T x) { return T(1) / (T(1) + _exp(-x)); }
template <typename T> T _relu(T x) { return (x > T(0) || x != x) ? x : T(0); }
template <typename T> T _silu(T x) { return x / (T(1) + _exp(-x)); }
template <typename T> T _gelu(T x) {
  return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
}
template <typename T> T _softplus(T x) { return x > T(20) ? x : std::log1p(std::exp(x)); }
template <typename T> T _logsigmoid(T x) {
  return std::min(x, T(0)) - std::log1p(std::exp(-std::abs(x)));
}
template <typename T> T _max(T a, T b) { return (a != a || a > b) ? a : b; }
template <typename T> T _min(T a, T b) { return (a != a || a < b) ? a : b; }
template <typename T> T _clamp(T x, T low, T high) { return _min(_max(x, low), high); }
int64_t _row(const Tensor& t) { return t.dim() > 1 ? t.stride(0) : 0; }

// The recurrent products `v @ W.t()`. On this project's CPU (AMD Zen 5) ATen's fp32 `mm`
// runs MKL, about 2x slower than oneDNN from 2 rows up; with the weight packed by oneDNN
// once per call of the loop (0.1-0.4 ms), a step's product at B = 64, H = 512 is 0.6 ms
// against `mm`'s 1.6 (B = 1: `mm` is faster than oneDNN, and `_gemv` below faster still).
// So oneDNN runs in float32 from `kPackedBatch` rows and `kPackedSteps` steps, where it is
// built in (`at::hasMKLDNN`) and enabled (`torch.backends.mkldnn.enabled`), unless
// RNNSPEC_COMPILED_ONEDNN=0.
constexpr int64_t kPackedBatch = 4;
constexpr int64_t kPackedSteps = 8;

using LinearOp = Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&,
                        c10::string_view, c10::List<std::optional<c10::Scalar>>,
                        std::optional<c10::string_view>);
using ReorderOp = Tensor(const Tensor&, std::optional<int64_t>);

// oneDNN's linear (`mkldnn::_linear_pointwise`) and weight packing, through the
// dispatcher; None where this torch has no oneDNN
struct OneDnn {
  std::optional<c10::TypedOperatorHandle<LinearOp>> linear;
  std::optional<c10::TypedOperatorHandle<ReorderOp>> reorder;
};

const OneDnn& _onednn() {
  static const OneDnn found = [] {
    OneDnn ops;
    const char* flag = std::getenv("RNNSPEC_COMPILED_ONEDNN");
    if (!at::hasMKLDNN() || (flag != nullptr && std::string(flag) == "0")) return ops;
    auto& dispatcher = c10::Dispatcher::singleton();
    auto linear = dispatcher.findSchema({"mkldnn::_linear_pointwise", ""});
    auto reorder = dispatcher.findSchema({"mkldnn::_reorder_linear_weight", ""});
    if (linear && reorder) {
      ops.linear = linear->typed<LinearOp>();
      ops.reorder = reorder->typed<ReorderOp>();
    }
    return ops;
  }();
  return found;
}

// A weight `W` [n, k] of the step's products: `W.t()` for `mm`, W packed by oneDNN where
// the rule above picks it, and W itself (`rows`) for one row's product from `kPackedSteps`
// steps: `_gemv` below, 8 rows of W at a time, each read once and in order. Measured at
// k = 256, n = 1024 (one thread): ATen's `mm` by the view `W.t()` 21-24 us a step, by a
// contiguous copy of it 14-16 us plus the copy (0.26 ms a call), `_gemv` as fast as the
// latter without the copy.
struct Matrix {
  Tensor t;
  Tensor packed;
  Tensor rows;
};

template <typename scalar_t>
Matrix _matrix(const Tensor& weight, int64_t batch, int64_t steps) {
  Matrix m{weight.t(), Tensor(), Tensor()};
  const auto& ops = _onednn();
  const bool enabled = at::globalContext().userEnabledMkldnn();
  if (std::is_same_v<scalar_t, float> && ops.reorder && enabled && batch >= kPackedBatch &&
      steps >= kPackedSteps && weight.dim() == 2 && weight.is_contiguous()) {
    m.packed = ops.reorder->call(weight, batch);
  } else if (batch == 1 && steps >= kPackedSteps && weight.dim() == 2 &&
             weight.is_contiguous()) {
    m.rows = weight;
  }
  return m;
}

// y = v @ W.t() (+ bias) for one contiguous row v [1, k]: 8 dot products at a time over
// the contiguous rows of W, vectorised by `omp simd` (8 independent sums hide the
// multiply-adds' latency)
template <typename scalar_t>
Tensor _gemv(const Tensor& v, const Tensor& weight, const Tensor* bias) {
  const int64_t n = weight.size(0), k = weight.size(1);
  Tensor out = at::empty({1, n}, v.options());
  const scalar_t* x = v.data_ptr<scalar_t>();
  const scalar_t* w = weight.data_ptr<scalar_t>();
  const scalar_t* b = bias ? bias->data_ptr<scalar_t>() : nullptr;
  scalar_t* y = out.data_ptr<scalar_t>();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const scalar_t* r = w + j * k;
    scalar_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3, a4, a5, a6, a7)
    for (int64_t i = 0; i < k; ++i) {
      const scalar_t xi = x[i];
      a0 += r[i] * xi;
      a1 += r[k + i] * xi;
      a2 += r[2 * k + i] * xi;
      a3 += r[3 * k + i] * xi;
      a4 += r[4 * k + i] * xi;
      a5 += r[5 * k + i] * xi;
      a6 += r[6 * k + i] * xi;
      a7 += r[7 * k + i] * xi;
    }
    const scalar_t sums[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    for (int q = 0; q < 8; ++q) y[j + q] = b ? sums[q] + b[j + q] : sums[q];
  }
  for (; j < n; ++j) {
    const scalar_t* r = w + j * k;
    scalar_t a = 0;
#pragma omp simd reduction(+ : a)
    for (int64_t i = 0; i < k; ++i) a += r[i] * x[i];
    y[j] = b ? a + b[j] : a;
  }
  return out;
}

bool _one_row(const Tensor& v, const Matrix& m) {
  return m.rows.defined() && v.dim() == 2 && v.size(0) == 1 && v.is_contiguous() &&
         v.scalar_type() == m.rows.scalar_type() && v.size(1) == m.rows.size(1);
}

Tensor _row_product(const Tensor& v, const Matrix& m, const Tensor* bias) {
  if (v.scalar_type() == at::kFloat) return _gemv<float>(v, m.rows, bias);
  return _gemv<double>(v, m.rows, bias);
}

c10::List<std::optional<c10::Scalar>> _no_scalars() {
  return c10::List<std::optional<c10::Scalar>>();
}

Tensor _mm(const Tensor& v, const Matrix& m) {
  if (_one_row(v, m)) return _row_product(v, m, nullptr);
  if (!m.packed.defined()) return at::mm(v, m.t);
  return _onednn().linear->call(v, m.packed, std::nullopt, "none", _no_scalars(), std::nullopt);
}

Tensor _addmm(const Tensor& bias, const Tensor& v, const Matrix& m) {
  const bool flat = bias.dim() == 1 && bias.is_contiguous();
  if (flat && _one_row(v, m) && bias.scalar_type() == v.scalar_type()) {
    return _row_product(v, m, &bias);
  }
  if (!m.packed.defined() || !flat) return at::addmm(bias, v, m.t);
  return _onednn().linear->call(v, m.packed, bias, "none", _no_scalars(), std::nullopt);
}

// `a + v @ W.t()` with `a` of the product's shape: one row's product starts from `a`
Tensor _add_mm(const Tensor& a, const Tensor& v, const Matrix& m) {
  if (_one_row(v, m) && a.is_contiguous() && a.numel() == m.rows.size(0) &&
      a.scalar_type() == v.scalar_type()) {
    return _row_product(v, m, &a);
  }
  Tensor product = _mm(v, m);
  if (product.sizes() == a.sizes() && product.scalar_type() == a.scalar_type()) {
    return product.add_(a);
  }
  return a + product;
}

// `chunk(t, n, -1)` of a [B, n * size] tensor with unit feature stride, as direct views
std::vector<Tensor> _pieces(const Tensor& t, int64_t n) {
  if (t.dim() != 2 || t.stride(-1) != 1) return at::chunk(t, n, -1);
  const int64_t width = t.size(-1) / n;
  std::vector<Tensor> out;
  for (int64_t k = 0; k < n; ++k) {
    out.push_back(t.as_strided({t.size(0), width}, {t.stride(0), 1},
                               t.storage_offset() + k * width));
  }
  return out;
}

// Whether the fused loops may run: no gradient, CPU, one floating dtype, unit feature
// strides (views along the batch are fine), and RNNSPEC_COMPILED_GENERIC unset
bool fusable(const Args& a) {
  const auto dtype = a.state[0].scalar_type();
  if (dtype != at::kFloat && dtype != at::kDouble) return false;
  const bool grad = at::GradMode::is_enabled();
  for (const at::TensorList list : {a.inputs, a.state, a.weights}) {
    for (const auto& t : list) {
      if (!t.device().is_cpu() || t.scalar_type() != dtype) return false;
      if (grad && t.requires_grad()) return false;
      if (t.dim() > 0 && t.size(-1) > 1 && t.stride(-1) != 1) return false;
    }
  }
  static const bool generic = std::getenv("RNNSPEC_COMPILED_GENERIC") != nullptr;
  return !generic;
}
"""


def element(op: str, args: list[str]) -> str:
    """One elementwise op at (b, j) over its operands' C++ expressions (the fused loops'
    and the reverse loops' forward values)."""
    if op in ("add", "sub", "mul", "div"):
        symbol = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[op]
        return f"({args[0]} {symbol} {args[1]})"
    if op == "neg":
        return f"(-{args[0]})"
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
    if op == "dropout":
        return args[0]
    raise Unsupported(f"`{op}` in a fused loop")


def _weight_operands(node) -> tuple[Node, Node] | None:
    """(W, v) of a product by a weight (`W @ v`, `linear(v, W, ...)`) with a batched `v`."""
    if not isinstance(node, Node) or node.op not in ("matmul", "linear"):
        return None
    matrix, vector = (
        (node.args[0], node.args[1]) if node.op == "matmul" else (node.args[1], node.args[0])
    )
    if matrix.op in ("param", "local") and vector.batched:
        return matrix, vector
    return None


class FusedCell(_Cell):
    """A cell's step with each statement's elementwise part one loop."""

    def expr(self, node: Node) -> str:
        temps = getattr(self, "temps", None)
        if temps is None:
            return super().expr(node)
        found = temps.get(id(node))
        if found is not None:
            return found
        operands = _weight_operands(node)
        if operands is not None:
            matrix, vector = operands
            transposed = self._transposed(matrix)
            if node.op == "matmul" or len(node.args) == 2:
                return f"_mm({self.expr(vector)}, {transposed})"
            bias = self.bias(list(node.args[2:]))
            return f"_addmm({bias}, {self.expr(vector)}, {transposed})"
        return super().expr(node)

    def _transposed(self, matrix: Node) -> str:
        """The `Matrix` of a weight, made once before the loop."""
        name = self.expr(matrix)
        return self.transposed.setdefault(name, f"tr_{len(self.transposed)}")

    def _add_product(self, node: Node, lines: list[str]) -> str | None:
        """`a + W @ v` (either order; `a` a tensor of the sum's size, `W` a weight) as
        `_add_mm`: the product's result is the sum (one row's starts from `a`), no loop."""
        if node.op != "add" or len(node.args) != 2:
            return None
        for product, other in (node.args, node.args[::-1]):
            operands = _weight_operands(product)
            if operands is None or product.op == "linear" and len(product.args) > 2:
                continue
            if not (_is_tensor(other) and other.batched and self._tensor_leaf(other)):
                continue
            if not other.size == product.size == node.size:
                continue
            matrix, vector = operands
            self.materialize(vector, lines)
            name = f"t{self.count}"
            self.count += 1
            transposed = self._transposed(matrix)
            lines.append(
                f"Tensor {name} = _add_mm({self.expr(other)}, {self.expr(vector)}, {transposed});"
            )
            return name
        return None

    def _tensor_leaf(self, node: Node) -> bool:
        return id(node) in self.temps or node.op in _LEAVES

    def materialize(self, node: Node, lines: list[str]) -> str:
        """A tensor variable holding `node` ([B, size], or a leaf as it is)."""
        if self._tensor_leaf(node):
            return self.expr(node)
        if node.op == "chunk":
            raise Unsupported("a chunk inside an expression")
        name = self._add_product(node, lines)
        if name is None and node.op in _ELEMENTWISE:
            self._blocks(node, lines)
            name = self._loop(node, lines)
        elif name is None:
            name = self._op(node, lines)
        self.temps[id(node)] = name
        return name

    def _op(self, node: Node, lines: list[str]) -> str:
        """A tensor variable holding a non-elementwise node (an ATen call), its tensor
        operands first."""
        for arg in node.args:
            if isinstance(arg, Node) and _is_tensor(arg):
                self.materialize(arg, lines)
        name = f"t{self.count}"
        self.count += 1
        lines.append(f"Tensor {name} = ({self.expr(node)}).contiguous();")
        return name

    def _blocks(self, node: Node, lines: list[str]) -> None:
        """Materialize the non-elementwise parts under an elementwise node."""
        for arg in node.args:
            if not isinstance(arg, Node) or not _is_tensor(arg) and not self._condition(arg):
                continue
            if self._tensor_leaf(arg):
                continue
            if arg.op in _ELEMENTWISE:
                self._blocks(arg, lines)
            else:
                self.materialize(arg, lines)

    def _condition(self, node: Node) -> bool:
        return node.op in _SYMBOLS or node.op in ("and", "or", "not")

    def _loop(self, node: Node, lines: list[str]) -> str:
        pointers: dict[str, str] = {}
        value = self.el(node, pointers)
        name = f"t{self.count}"
        self.count += 1
        width = next(iter(pointers))
        lines.append(f"Tensor {name} = at::empty({{batch, {width}.size(-1)}}, options);")
        lines.append("{")
        lines.append(f"  scalar_t* out = {name}.data_ptr<scalar_t>();")
        lines.append(f"  const int64_t n = {name}.size(1);")
        for tensor, pointer in pointers.items():
            lines.append(f"  const scalar_t* {pointer} = {tensor}.data_ptr<scalar_t>();")
            lines.append(f"  const int64_t r{pointer[1:]} = _row({tensor});")
        lines.append("  for (int64_t b = 0; b < batch; ++b) {")
        lines.append("#pragma GCC ivdep")
        lines.append("    for (int64_t j = 0; j < n; ++j) {")
        lines.append(f"      out[b * n + j] = {value};")
        lines += ["    }", "  }", "}"]
        return name

    def el(self, node: Node, pointers: dict[str, str]) -> str:
        """The node's element (b, j) as a `scalar_t` (a `bool` for a condition)."""
        op = node.op
        args = [a for a in node.args if isinstance(a, Node)]
        if _is_tensor(node) and self._tensor_leaf(node):
            tensor = self.expr(node)
            pointer = pointers.setdefault(tensor, f"q{len(pointers)}")
            return f"{pointer}[b * r{pointer[1:]} + j]"
        if not _is_tensor(node) and not self._tensor_valued(node):
            text = super().expr(node)  # numbers: a double (or a bool) as the generic path
            return text if self._condition(node) else f"scalar_t({text})"
        if op in ("add", "sub"):
            text = None
            for sign, term in terms(node):
                part = self.el(term, pointers)
                if text is None:
                    text = part if sign > 0 else f"(-{part})"
                else:
                    text = f"({text} {'+' if sign > 0 else '-'} {part})"
            return text
        return element(op, [self.el(x, pointers) for x in args])

    def fused(self) -> list[str]:
        """`template <typename scalar_t> ... loop_<k>_fused(const Args& a)`."""
        self.biases = {}
        self.temps: dict[int, str] = {}
        self.transposed: dict[str, str] = {}  # a matrix -> its `Matrix`, made before the loop
        self.count = 0
        lowered = self.lowered
        declared = {self.var(s) for s in lowered.states}
        static = self._static_lines()
        step: list[str] = []
        for statement in lowered.step:
            node = statement.node
            if statement.assign is not None and statement.assign.sizes[0] is None:
                step += self._assign(statement, self.expr(node), declared)
                continue
            inner = node.args[0] if node.op == "chunk" else node
            name = self.materialize(inner, step)
            if node.op == "chunk":
                value = f"_pieces({name}, {node.value[0]})"
            else:
                value = name
            step += self._assign(statement, value, declared)
        header, inputs, states, returned = self._frame(static)
        header += [
            f"const Matrix {name} = _matrix<scalar_t>({matrix}, batch, steps);"
            for matrix, name in self.transposed.items()
        ]
        return [
            "template <typename scalar_t>",
            f"std::vector<Tensor> loop_{self.index}_fused(const Args& a) {{",
            *_PROLOGUE,
            "  const auto options = a.state[0].options();",
            "  const int64_t batch = a.state[0].size(0);",
            "  const int64_t steps = a.inputs[0].size(0);",
            "  (void)steps;",
            *("  " + line for line in header),
            "  auto step = [&](const std::vector<Tensor>& in, const std::vector<Tensor>& st) {",
            "    (void)in;",
            *("    " + line for line in inputs + states + step),
            f"    return std::vector<Tensor>{{{returned}}};",
            "  };",
            "  return run_generic(step, a);",
            "}",
        ]
