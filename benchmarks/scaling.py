"""Parse + check time of synthetic specs of 10 to 10,000 stacks: per stack, it must stay flat."""

from __future__ import annotations

import time

STACK = """stack Net{i} {{
    input_size = FEATURES
    encoder = lstm(hidden_size = WIDTH, num_layers = 2, bidirectional = true, dropout = 0.1)
    head = gru(hidden_size = WIDTH // 2)
}}
expect Net{i} {{
    input = [100, 8, FEATURES]
    h0[encoder] = [4, 8, WIDTH]
    output = [100, 8, WIDTH // 2]
}}
"""


def synthetic(count: int) -> str:
    return "let FEATURES = 40\nlet WIDTH = 128\n" + "".join(STACK.format(i=i)
                                                           for i in range(count))


def scaling(sizes=(10, 100, 1_000, 10_000), repeats: int = 3) -> dict:
    from rnnspec import check_source

    check_source(synthetic(5), "warm.rnn")  # build the parser once, as every run does
    rows = []
    for count in sizes:
        text = synthetic(count)
        samples = []
        for _ in range(repeats if count < 10_000 else max(1, repeats - 1)):
            started = time.perf_counter()
            result = check_source(text, "synthetic.rnn")
            samples.append(time.perf_counter() - started)
            assert result.ok and len(result.stacks) == count
        seconds = min(samples)
        lines = text.count("\n")
        rows.append({"stacks": count, "lines": lines, "bytes": len(text), "seconds": seconds,
                     "per_stack_us": seconds / count * 1e6, "lines_per_second": lines / seconds})
    by_count = {row["stacks"]: row for row in rows}
    ratio = None
    if 1_000 in by_count and 10_000 in by_count:
        ratio = by_count[10_000]["per_stack_us"] / by_count[1_000]["per_stack_us"]
    return {"rows": rows, "ratio_10000_to_1000": ratio}


def big_file(megabytes: float = 10.0) -> dict:
    """One spec of at least `megabytes` MB: parse + check time and throughput."""
    from rnnspec import check_source

    per_stack = len(STACK.format(i=10_000))
    count = int(megabytes * 1e6 / per_stack) + 1
    text = synthetic(count)
    started = time.perf_counter()
    result = check_source(text, "big.rnn")
    seconds = time.perf_counter() - started
    assert result.ok and len(result.stacks) == count
    return {"stacks": count, "megabytes": len(text.encode()) / 1e6, "seconds": seconds,
            "megabytes_per_second": len(text.encode()) / 1e6 / seconds}
