"""torch.compile(dynamic=True, fullgraph=True) of a written-out block against eager, at
several T with one compile for all (under torch.compile the time loop runs as torch's
`scan`, so T stays symbolic): inference, and a training step (forward and backward, whose
gradients are checked against eager's at every T).

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
TRAIN_DESCRIPTION = (f"lstm 32 -> 64, B = {BATCH}, a training step (forward, backward of the "
                     "outputs' sum; gradients equal eager's at every T); one compile for every "
                     "T; 'first call' at the first T compiles forward and backward")


def build():
    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source, load_source

    result = check_source(SPEC, "compiled.rnn")
    module = load_source(generate_source(result, backend="explicit"), "compiled.rnn")
    sys.modules[module.__name__] = module  # torch's tracing imports the module by name
    return module.Net().eval()


def rows(rounds: int = 5, steps_list=STEPS, grad: bool = False,
         backend: str = "inductor") -> list[list]:
    """`backend` is torch.compile's; the quick run takes `aot_eager` (the same graphs and
    the same one compile for every T, without inductor's code generation)."""
    import torch

    torch.manual_seed(0)
    net = build()
    if grad:
        net.train()  # no regulariser: the loop stays torch's `scan`
    compiled = torch.compile(net, fullgraph=True, dynamic=True, backend=backend)

    def run(model, x):
        if not grad:
            return model(x)
        net.zero_grad()
        model(x)[0].sum().backward()
        return [p.grad.clone() for p in net.parameters()]

    out = []
    context = torch.enable_grad() if grad else torch.no_grad()
    with context, torch._dynamo.config.patch(error_on_recompile=True):
        torch._dynamo.reset()
        for steps in steps_list:
            x = torch.randn(steps, BATCH, 32)
            began = time.perf_counter()
            run(compiled, x)  # the first T compiles; the others must not (error_on_recompile)
            first = time.perf_counter() - began
            got, want = run(compiled, x), run(net, x)
            torch.testing.assert_close(got if grad else got[0], want if grad else want[0],
                                       atol=1e-4, rtol=1e-4)
            times = interleaved({"eager": lambda x=x: run(net, x),
                                 "compiled": lambda x=x: run(compiled, x)}, rounds)
            out.append([steps, f"{first:.1f}", f"{times['eager'] * 1e3:.2f}",
                        f"{times['compiled'] * 1e3:.2f}"])
    return out


def main() -> int:
    print("Machine: " + "; ".join(f"{k}: {v}" for k, v in machine().items()))
    print(DESCRIPTION)
    print("| " + " | ".join(HEADERS) + " |\n" + "|---" * len(HEADERS) + "|")
    for row in rows():
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    print("\n" + TRAIN_DESCRIPTION)
    print("| " + " | ".join(HEADERS) + " |\n" + "|---" * len(HEADERS) + "|")
    for row in rows(grad=True):
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
