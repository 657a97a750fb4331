"""Time arithmetic: the length of an entry's time axis as an expression in the stack
input's length `T`, with `+ - * //` (floor division, as Python and PyTorch round).

Each formula is PyTorch's own: `nn.Conv1d`'s output length, the pools' (with their
`ceil_mode` rule that a last window must start inside the input or its left padding),
`subsample` (`xs[::factor]`) and `stack_frames` (whole groups only). A formula is a
`cells.shapes.Time`; `length` evaluates one for an integer and `shortest` finds the least
`T` for which a set of formulas are all at least 1 (every formula is non-decreasing in `T`).
"""

from __future__ import annotations

from rnnspec.cells.shapes import Size, Time, quotient

# The longest input the search for a shortest one considers: beyond it no entry is shorter
# than one step for any T (kernels of that size cannot be built).
MAX_SEARCH = 2**62


def conv(time: Time, kernel: int, stride: int = 1, padding: int = 0,
         dilation: int = 1) -> Time:
    """`(T + 2*padding - dilation*(kernel - 1) - 1) // stride + 1`."""
    return Time(quotient(time.size + (2 * padding - dilation * (kernel - 1) - 1), stride) + 1)


def pool(time: Time, kernel: int, stride: int, padding: int = 0,
         ceil_mode: bool = False) -> Time:
    """PyTorch's pooling length. With `ceil_mode` the division rounds up, and a last
    window that would start inside the right padding is dropped: with `L = T + 2p - k`,
    that happens when `(-L) mod s >= k - p`, which only a stride above `k - p` allows."""
    if not ceil_mode:
        return conv(time, kernel, stride, padding)
    span = time.size + (2 * padding - kernel)  # L
    steps = quotient(span + (stride - 1), stride)  # ceil(L / s)
    out = steps + 1
    reach = kernel - padding  # m: the last window is dropped when (-L) mod s >= m
    if reach <= stride - 1:
        remainder = steps * stride - span  # (-L) mod s, in [0, s - 1]
        out = out - quotient(remainder + (stride - reach), stride)  # 1 when r >= m
    return Time(out)


def subsample(time: Time, factor: int) -> Time:
    """Steps 0, factor, 2 * factor, ...: `(T - 1) // factor + 1`."""
    return Time(quotient(time.size - 1, factor) + 1)


def stack_frames(time: Time, factor: int) -> Time:
    """Whole groups of `factor` steps: `T // factor`."""
    return Time(quotient(time.size, factor))


def length(time: Time, steps: int) -> int:
    """The formula's length for an input of `steps` steps."""
    return time.evaluate(steps)


def shortest(times) -> int | None:
    """The least `T >= 1` for which every formula is at least 1; None if there is none
    below `MAX_SEARCH`."""
    times = [t for t in times if t.size != Size.of("T")]

    def fits(steps: int) -> bool:
        return all(t.evaluate(steps) >= 1 for t in times)

    if fits(1):
        return 1
    high = 2
    while not fits(high):
        if high >= MAX_SEARCH:
            return None
        high *= 2
    low = high // 2  # fits(low) is false
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle
    return high


# The kinds whose output steps read several input steps (or that change time).
TIME_KINDS = ("conv1d", "max_pool1d", "avg_pool1d", "subsample", "stack_frames", "conv2d",
              "max_pool2d", "avg_pool2d")


def own(kind: str, arguments: dict, time: Time) -> Time | None:
    """A layer's time formula over the length of what it reads (`time`); None for a
    layer that keeps each step where it is. A 2-D layer's time axis is the second of its
    pairs, or the first with `layout = time_first`."""
    a = arguments
    if kind == "conv1d":
        return conv(time, a["kernel_size"], a["stride"], a["padding"], a["dilation"])
    if kind in ("max_pool1d", "avg_pool1d"):
        return pool(time, a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"])
    if kind == "subsample":
        return subsample(time, a["factor"])
    if kind == "stack_frames":
        return stack_frames(time, a["factor"])
    if kind not in TIME_KINDS:
        return None
    t = 0 if a.get("layout") == "time_first" else 1
    if kind == "conv2d":
        return conv(time, a["kernel_size"][t], a["stride"][t], a["padding"][t],
                    a["dilation"][t])
    return pool(time, a["kernel_size"][t], a["stride"][t], a["padding"][t], a["ceil_mode"])
