"""Generated models against the PyTorch modules they replace, with the same weights.

- fused backend against `nn.LSTM` / `nn.GRU` / `nn.RNN`;
- explicit backend against `nn.LSTM` and against a hand-written premultiplied Python loop,
  plus the accelerations tried on it (TorchScript of the loop, torch.compile of the step).

GFLOP/s use the usual count: 8·H·(I+H) per step, batch item, layer and direction for an
LSTM (GRU 6, RNN 2); forward+backward counts three times the forward.
"""

import time
import warnings

from .harness import interleaved, interleaved_samples, median, noise

GATE_FLOPS = {"lstm": 8, "gru": 6, "rnn": 2}

# (name, T, inputs, H, layers): PyTorch's fastrnns benchmark and the classic tutorial network.
SIZES = [("fastrnns", 100, 512, 512, 1), ("tutorial", 100, 20, 50, 2)]
BATCHES = (64, 1)


def flops(cell: str, T: int, B: int, inputs: int, H: int, layers: int) -> float:
    total, width = 0, inputs
    for _ in range(layers):
        total += GATE_FLOPS[cell] * H * (width + H)
        width = H
    return total * T * B


def build(cell: str, inputs: int, H: int, layers: int, backend: str):
    """The generated stack (as rnnspec.load would give it) and the torch module, same weights."""
    import torch

    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source, load_source

    text = (f"stack Bench {{\n    input_size = {inputs}\n"
            f"    {cell}(hidden_size = {H}, num_layers = {layers})\n}}\n")
    module = load_source(generate_source(check_source(text, "bench.rnn"), backend), "bench.rnn")
    generated = module.Bench()
    reference = getattr(torch.nn, {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cell])(
        inputs, H, num_layers=layers)
    generated.load_state_dict({f"{cell}0.{k}": v for k, v in reference.state_dict().items()})
    return generated, reference


def _forward(model, x):
    import torch

    def run():
        with torch.no_grad():
            model(x)
    return run


def _forward_backward(model, x):
    def run():
        output, _ = model(x)
        output.sum().backward()
    return run


MODES = {"forward": (_forward, 1), "forward+backward": (_forward_backward, 3)}


def fused(rounds: int, sizes=SIZES, batches=BATCHES, cells=("lstm", "gru", "rnn"),
          min_seconds: float = 0.0) -> list:
    import torch

    torch.manual_seed(0)
    rows = []
    for name, T, inputs, H, layers in sizes:
        for cell in cells:
            generated, reference = build(cell, inputs, H, layers, "fused")
            for B in batches:
                x = torch.randn(T, B, inputs)
                for mode, (make, factor) in MODES.items():
                    contenders = {"rnnspec": make(generated, x), "torch": make(reference, x)}
                    for run in contenders.values():
                        run()  # warm-up: allocator, oneDNN primitives
                    samples = interleaved_samples(contenders, rounds, min_seconds)
                    times = {who: median(values) for who, values in samples.items()}
                    work = flops(cell, T, B, inputs, H, layers) * factor
                    rows.append({
                        "size": name, "cell": cell, "B": B, "mode": mode,
                        "torch_ms": times["torch"] * 1e3, "rnnspec_ms": times["rnnspec"] * 1e3,
                        "ratio": times["rnnspec"] / times["torch"],
                        "noise": noise(samples["torch"]), "rounds": len(samples["torch"]),
                        "gflops": work / times["rnnspec"] / 1e9,
                    })
    return rows


def explicit(rounds: int, sizes=SIZES, batches=BATCHES, try_compile: bool = True,
             min_seconds: float = 0.0) -> dict:
    import torch

    torch.manual_seed(0)
    rows, accelerations = [], []
    for name, T, inputs, H, layers in sizes:
        generated, reference = build("lstm", inputs, H, layers, "explicit")
        weights = [tuple(getattr(reference, f"{role}_l{k}") for role in
                         ("weight_ih", "weight_hh", "bias_ih", "bias_hh")) for k in range(layers)]
        for B in batches:
            x = torch.randn(T, B, inputs)
            zeros = (torch.zeros(layers, B, H), torch.zeros(layers, B, H))

            loop = HandwrittenLSTM(weights, zeros)
            for mode, (make, factor) in MODES.items():
                contenders = {"explicit": make(generated, x), "loop": make(loop, x),
                              "nn.LSTM": make(reference, x)}
                for run in contenders.values():
                    run()
                times = interleaved(contenders, rounds, min_seconds)
                rows.append({
                    "size": name, "B": B, "mode": mode,
                    "explicit_ms": times["explicit"] * 1e3, "loop_ms": times["loop"] * 1e3,
                    "torch_ms": times["nn.LSTM"] * 1e3,
                    "vs_loop": times["explicit"] / times["loop"],
                    "vs_torch": times["explicit"] / times["nn.LSTM"],
                    "gflops": flops("lstm", T, B, inputs, H, layers) * factor
                    / times["explicit"] / 1e9,
                })
    if try_compile:
        accelerations = _accelerations(rounds, sizes[-1:], batches, min_seconds)
    return {"rows": rows, "accelerations": accelerations}


def _accelerations(rounds: int, sizes, batches, min_seconds: float = 0.0) -> list:
    """What was tried to bring the explicit LSTM closer to nn.LSTM, each timed the same way."""
    import torch

    results = []
    for name, T, inputs, H, layers in sizes:
        generated, reference = build("lstm", inputs, H, layers, "explicit")
        for B in batches:
            x = torch.randn(T, B, inputs)
            candidates = {}
            started = time.perf_counter()
            try:
                compiled = build("lstm", inputs, H, layers, "explicit")[0]
                compiled.load_state_dict(generated.state_dict())
                block = compiled.lstm0
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    block.step = torch.compile(block.step, dynamic=False, fullgraph=True)
                    _forward(compiled, x)()
                candidates["torch.compile(step)"] = (compiled, time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - report why, keep benchmarking
                results.append({"size": name, "B": B, "how": "torch.compile(step)",
                                "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
            weights = [tuple(getattr(reference, f"{role}_l{k}") for role in
                             ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                       for k in range(layers)]
            zeros = (torch.zeros(layers, B, H), torch.zeros(layers, B, H))
            started = time.perf_counter()
            try:
                scripted = HandwrittenLSTM(weights, zeros, torch.jit.script(handwritten_loop()))
                scripted(x)
                candidates["torch.jit.script(loop)"] = (scripted, time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001
                results.append({"size": name, "B": B, "how": "torch.jit.script(loop)",
                                "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
            contenders = {"eager explicit": _forward(generated, x),
                          "nn.LSTM": _forward(reference, x)}
            contenders.update({how: _forward(model, x) for how, (model, _) in candidates.items()})
            for run in contenders.values():
                run()
            times = interleaved(contenders, rounds, min_seconds)
            for how in ["eager explicit", *candidates]:
                results.append({
                    "size": name, "B": B, "how": how, "forward_ms": times[how] * 1e3,
                    "vs_torch": times[how] / times["nn.LSTM"],
                    "compile_s": candidates[how][1] if how in candidates else 0.0,
                })
    return results


class HandwrittenLSTM:
    """Calls the hand-written loop (or its TorchScript) like a module: `(output, state)`."""

    def __init__(self, weights, zeros, loop=None):
        self.weights, self.zeros = weights, zeros
        self.loop = loop or handwritten_loop()

    def __call__(self, x):
        return self.loop(x, self.zeros[0], self.zeros[1], self.weights), None


def handwritten_loop():
    """The loop people write by hand: the input projection of every step first (one
    matmul), then the cell step by step. Typed, so that TorchScript can compile it too."""
    import torch
    import torch.nn.functional as F
    from torch import Tensor

    def loop(x: Tensor, h0: Tensor, c0: Tensor,
             weights: list[tuple[Tensor, Tensor, Tensor, Tensor]]) -> Tensor:
        layer = 0
        for w_ih, w_hh, b_ih, b_hh in weights:
            projected = F.linear(x, w_ih, b_ih)
            h, c = h0[layer], c0[layer]
            outputs: list[Tensor] = []
            for t in range(x.shape[0]):
                gates = projected[t] + F.linear(h, w_hh, b_hh)
                i, f, g, o = gates.chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                outputs.append(h)
            x = torch.stack(outputs)
            layer += 1
        return x

    return loop
