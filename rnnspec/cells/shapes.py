"""Symbolic sizes: polynomials over size names with integer coefficients.

A size such as `4 * hidden_size` or `input_size + hidden_size` is a `Size`: a canonical
sum of monomials, so `hidden_size * 2 * 2` and `4 * hidden_size` are the same value and
compare equal. Sizes print back the way a person writes them. Shapes are tuples of
dimensions, each an int, a `Size`, the batch symbol `"B"`, the time axis (a `Time`: an
expression in the input's length `T`) or None (any).

Pure: no diagnostics here. Callers compare and report.
"""

from __future__ import annotations

from collections.abc import Mapping

# PyTorch sizes are int64: a tensor dimension beyond this cannot exist.
MAX_DIMENSION = 2**63 - 1

Monomial = tuple[str, ...]  # sorted size names, with repeats: ("hidden_size", "hidden_size")

# Quotients that hold for some sizes only (`(input_size + hidden_size) / 2`) stand as
# names of their own: the name, spelled from its parts, says what it evaluates to. A
# divisor that is a size (`hidden_size // heads`) must divide exactly (each block is
# checked), so `heads * (hidden_size // heads)` is `hidden_size`.
_QUOTIENTS: dict[str, tuple[Size, int | Size]] = {}


class Size:
    """A polynomial in size names with integer coefficients, in canonical form."""

    __slots__ = ("terms", "_hash")

    def __init__(self, terms: Mapping[Monomial, int] | None = None):
        canonical = {tuple(sorted(m)): c for m, c in (terms or {}).items() if c}
        # degree first, then names: `input_size + hidden_size + 1`
        self.terms: tuple[tuple[Monomial, int], ...] = tuple(
            sorted(canonical.items(), key=lambda item: (-len(item[0]), item[0])))
        self._hash = hash(self.terms)

    # ------------------------------------------------------------------- construction

    @classmethod
    def of(cls, value: int | str | Size) -> Size:
        """A constant (int) or a size name (str) as a `Size`."""
        if isinstance(value, Size):
            return value
        if isinstance(value, bool):
            raise TypeError("a bool is not a size")
        if isinstance(value, int):
            return cls({(): value})
        return cls({(value,): 1})

    # ------------------------------------------------------------------- ring operations

    def _combine(self, other: Size, sign: int) -> Size:
        terms = dict(self.terms)
        for monomial, coefficient in Size.of(other).terms:
            terms[monomial] = terms.get(monomial, 0) + sign * coefficient
        return Size(terms)

    def __add__(self, other) -> Size:
        return self._combine(Size.of(other), 1)

    __radd__ = __add__

    def __sub__(self, other) -> Size:
        return self._combine(Size.of(other), -1)

    def __rsub__(self, other) -> Size:
        return Size.of(other)._combine(self, -1)

    def __neg__(self) -> Size:
        return Size({m: -c for m, c in self.terms})

    def __mul__(self, other) -> Size:
        other = Size.of(other)
        terms: dict[Monomial, int] = {}
        exact = []  # products that an exact quotient cancels: d * (s // d) is s
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                key = tuple(sorted(m1 + m2))
                cancelled = _cancel(key)
                if cancelled is None:
                    terms[key] = terms.get(key, 0) + c1 * c2
                else:
                    exact.append(cancelled * (c1 * c2))
        result = Size(terms)
        for product in exact:
            result = result + product
        return result

    __rmul__ = __mul__

    def exact_div(self, divisor: int) -> Size | None:
        """`self / divisor` when every coefficient divides, for every value of the names."""
        if divisor == 0 or any(c % divisor for _, c in self.terms):
            return None
        return Size({m: c // divisor for m, c in self.terms})

    # ------------------------------------------------------------------- reading

    def __eq__(self, other) -> bool:
        if isinstance(other, int) and not isinstance(other, bool):
            other = Size.of(other)
        return isinstance(other, Size) and self.terms == other.terms

    def __hash__(self) -> int:
        return self._hash

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name for monomial, _ in self.terms for name in monomial)

    @property
    def constant(self) -> int | None:
        """The value when no name appears, else None."""
        if not self.terms:
            return 0
        if len(self.terms) == 1 and self.terms[0][0] == ():
            return self.terms[0][1]
        return None

    def evaluate(self, values: Mapping[str, int]) -> int:
        """The integer value for the given sizes (every name must be bound)."""
        total = 0
        for monomial, coefficient in self.terms:
            product = coefficient
            for name in monomial:
                product *= values[name] if name in values else _quotient_value(name, values)
            total += product
        return total

    def substitute(self, values: Mapping[str, Size | int]) -> Size:
        """Names replaced by sizes (names without a value stay)."""
        total = Size()
        for monomial, coefficient in self.terms:
            product = Size.of(coefficient)
            for name in monomial:
                product = product * Size.of(values.get(name, name))
            total = total + product
        return total

    def __str__(self) -> str:
        if not self.terms:
            return "0"
        text = ""
        for index, (monomial, coefficient) in enumerate(self.terms):
            magnitude = abs(coefficient)
            factors = [str(magnitude)] if magnitude != 1 or not monomial else []
            factors += monomial
            if len(factors) > 1 or (index == 0 and coefficient < 0):
                # a quotient among factors, or negated first, reads as written only in
                # parentheses: `2 * (T // 2)`, `-(T // 2)`
                factors = [f"({f})" if "//" in f else f for f in factors]
            term = " * ".join(factors)
            if index == 0:
                text = ("-" if coefficient < 0 else "") + term
            else:
                text += (" - " if coefficient < 0 else " + ") + term
        return text

    def __repr__(self) -> str:
        return f"Size({str(self)!r})"


def quotient(size: Size, divisor: int) -> Size:
    """`size // divisor` (floor division, as everywhere in the language) as a size of its
    own where no polynomial is equal to it; spelt so that the parser reads it back."""
    exact = size.exact_div(divisor)
    if exact is not None:
        return exact
    text = str(size)
    name = (f"({text})" if len(size.terms) > 1 else text) + f" // {divisor}"
    _QUOTIENTS[name] = (size, divisor)
    return Size.of(name)


def exact_quotient(size: Size, divisor: Size) -> Size:
    """`size // divisor` for a divisor that is a size (not a constant): a size of its own,
    which the caller must check divides exactly for each block."""
    text = str(size)
    shown = str(divisor)
    name = (f"({text})" if len(size.terms) > 1 else text) + " // " + (
        f"({shown})" if len(divisor.terms) > 1 or divisor.terms[0][1] != 1 else shown)
    _QUOTIENTS[name] = (size, divisor)
    return Size.of(name)


def _cancel(monomial: Monomial) -> Size | None:
    """The monomial with one exact quotient `s // d` and its divisor `d` (a name) replaced
    by `s`; None when it has no such pair."""
    for index, name in enumerate(monomial):
        entry = _QUOTIENTS.get(name)
        if entry is None or not isinstance(entry[1], Size):
            continue
        divisor = entry[1].names
        (divisor_name,) = divisor if len(divisor) == 1 else (None,)
        if entry[1] != Size.of(divisor_name or "") or divisor_name not in monomial:
            continue
        rest = list(monomial[:index] + monomial[index + 1:])
        rest.remove(divisor_name)
        result = entry[0]
        for other in rest:
            result = result * Size.of(other)
        return result
    return None


def symbols(size: Size) -> frozenset[str]:
    """The size names a size depends on, through its quotients (`(a + b) // 2`: a, b)."""
    found: set[str] = set()
    for name in size.names:
        if name in _QUOTIENTS:
            dividend, divisor = _QUOTIENTS[name]
            found |= symbols(dividend)
            if isinstance(divisor, Size):
                found |= symbols(divisor)
        else:
            found.add(name)
    return frozenset(found)


def _quotient_value(name: str, values: Mapping[str, int]) -> int:
    size, divisor = _QUOTIENTS[name]
    if isinstance(divisor, Size):
        return size.evaluate(values) // divisor.evaluate(values)
    return size.evaluate(values) // divisor


class Time(str):
    """The time axis of a shape: an expression in the stack input's length `T`.

    Every entry of a stack keeps the time of its input today, so the axis is always `T`
    itself (`TIME`); entries that change time will make it an expression such as
    `(T - 1) // 2 + 1`. A `Time` is a `str` spelled as its formula, so it prints, compares
    (`TIME == "T"`), hashes and serialises to JSON as that formula, and `evaluate` gives
    its length for a bound `T`."""

    def __new__(cls, size: Size):
        self = super().__new__(cls, str(size))
        self.size = size
        return self

    def __getnewargs__(self):  # copy and pickle rebuild it from its expression
        return (self.size,)

    def evaluate(self, length: int) -> int:
        """The axis' length for an input of `length` steps."""
        return self.size.evaluate({"T": length})


# The time axis of the stack's input, and of every entry that keeps its input's time.
TIME = Time(Size.of("T"))


def format_dim(dim) -> str:
    if dim is None:
        return "_"
    return str(dim)


def format_shape(dims) -> str:
    """`[T, B, 20]`, `[4 * hidden_size]`; a dimension that may be anything prints as `_`."""
    return "[" + ", ".join(format_dim(d) for d in dims) + "]"


def bind_dims(shape, bindings: Mapping[str, int | None]) -> list:
    """A derived shape with its symbols (`T`, `B`) replaced by bound values (None: any); a
    time axis is evaluated at the bound `T`."""
    return [_bind(d, bindings) if isinstance(d, str) else d for d in shape]


def _bind(dim: str, bindings: Mapping[str, int | None]) -> int | None:
    if isinstance(dim, Time) and dim not in bindings:
        length = bindings.get("T")
        return None if length is None else dim.evaluate(length)
    return bindings.get(dim)


def without_batch(shape) -> tuple:
    """The unbatched form of a derived shape: the `B` axis dropped."""
    return tuple(d for d in shape if d != "B")


def sequence_shape(features, batch_first: bool) -> tuple:
    """The shape of a sequence of `features`-wide steps: `[T, B, F]` or `[B, T, F]`."""
    return ("B", TIME, features) if batch_first else (TIME, "B", features)
