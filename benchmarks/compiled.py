"""torch.compile(dynamic=True, fullgraph=True) of a written-out block against eager, at
several T with one compile for all (inference: under torch.compile without gradients the
time loop runs as torch's `scan`, so T stays symbolic).

    python -m benchmarks.compiled
"""

from __future__ import annotations

import sys
import time

from .harness import interleaved, machine

SPEC = "stack Net {\n    input_size = 32\n    lstm(hidden_size = 64)\n}\n"
STEPS = (50, 100, 400)
BATCH = 8
HEADERS = ["T", "first call s", "eager ms", "compiled ms"]
DESCRIPTION = (f"lstm 32 -> 64, B = {BATCH}, no grad (the loop as torch's `scan`); one compile "
               "for every T (error_on_recompile); 'first call' at the first T is the compile")


def build():
    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source, load_source

    result = check_source(SPEC, "compiled.rnn")
    module = load_source(generate_source(result, backend="explicit"), "compiled.rnn")
    sys.modules[module.__name__] = module  # torch's tracing imports the module by name
    return module.Net().eval()


def rows(rounds: int = 5, steps_list=STEPS) -> list[list]:
    import torch

    torch.manual_seed(0)
    net = build()
    compiled = torch.compile(net, fullgraph=True, dynamic=True)
    out = []
    with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=True):
        for steps in steps_list:
            x = torch.randn(steps, BATCH, 32)
            began = time.perf_counter()
            compiled(x)  # the first T compiles; the others must not (error_on_recompile)
            first = time.perf_counter() - began
            torch.testing.assert_close(compiled(x)[0], net(x)[0])
            times = interleaved({"eager": lambda x=x: net(x), "compiled": lambda x=x: compiled(x)},
                                rounds)
            out.append([steps, f"{first:.1f}", f"{times['eager'] * 1e3:.2f}",
                        f"{times['compiled'] * 1e3:.2f}"])
    return out


def main() -> int:
    print("Machine: " + "; ".join(f"{k}: {v}" for k, v in machine().items()))
    print(DESCRIPTION)
    print("| " + " | ".join(HEADERS) + " |\n" + "|---" * len(HEADERS) + "|")
    for row in rows():
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
