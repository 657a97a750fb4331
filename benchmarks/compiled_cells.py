"""The compiled backend (user cells as generated C++ loops) against torch.nn and TorchScript.

One thread, same weights, interleaved rounds, medians; every ratio is measured in one run.

- the LSTM declared by its equations (`TorchLSTM` of examples/cells.rnn) on the compiled
  backend / nn.LSTM: B = 1, T = 100, H = 256, forward and forward+backward; B = 64, H = 512,
  forward;
- the layer-norm LSTM (custom_lstms' LayerNormLSTMCell, `LayerNormLSTM` of the library) /
  its hand-written TorchScript loop, B = 1;
- the GRU and RNN cells declared by their equations / nn.GRU and nn.RNN, B = 1 and 64,
  forward and forward+backward, and the same with `lengths` (the references on
  pack_padded_sequence);
- the first call of a new module (its build, from an empty cache) and a later process's
  first call (the library from the cache), each timed in a new process (the process's
  start and its import of torch not counted).

`forward` runs under torch.no_grad() (the CPU fast path: fused elementwise loops);
`forward+backward` runs the generated backward (one autograd.Function per layer: the
fused step saving per step, then the generated C++ reverse loop).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from .harness import ROOT, interleaved_samples, median, noise

LIBRARY = ROOT / "examples" / "cells.rnn"
CELLS = ("TorchLSTM", "TorchGRU", "TorchRNN", "LayerNormLSTM")
HEADERS = ["measure", "B", "H", "mode", "reference ms", "compiled ms", "ratio", "A/A noise"]
TARGETS = {
    ("lstm", 1, "forward"): 1.3,
    ("lstm", 1, "forward+backward"): 1.6,
    ("lstm", 64, "forward"): 1.1,
    ("layer-norm lstm", 1, "forward"): 0.7,
    ("layer-norm lstm", 1, "forward+backward"): 0.7,
}


def has_compiler() -> bool:
    import shutil

    return shutil.which(os.environ.get("CXX") or "c++") is not None


def _cell_text(name: str) -> str:
    text = LIBRARY.read_text(encoding="utf-8")
    start = text.index(f"cell {name}")
    return text[start : text.index("\n}\n", start) + 3]


def spec(sizes) -> str:
    """The benchmark's spec: the four cells, a stack per (cell, H)."""
    text = "\n".join(_cell_text(name) for name in CELLS)
    for cell, H in sizes:
        text += (
            f"stack {cell}{H} {{\n    input_size = {H}\n    core = {cell}(hidden_size = {H})\n}}\n"
        )
    return text


def _sizes(quick: bool):
    if quick:
        return {"lstm": [(1, 8)], "big": [(2, 8)], "other": [(1, 8)], "T": 5}
    return {"lstm": [(1, 256)], "big": [(64, 512)], "other": [(1, 256), (64, 256)], "T": 100}


def _stack_sizes(plan) -> list:
    H = {h for _, h in plan["lstm"] + plan["big"] + plan["other"]}
    return sorted(
        {("TorchLSTM", h) for h in H}
        | {("TorchGRU", h) for _, h in plan["other"]}
        | {("TorchRNN", h) for _, h in plan["other"]}
        | {("LayerNormLSTM", h) for _, h in plan["lstm"]}
    )


_FIRST_CALL = """
import sys, time
import torch
from rnnspec import check_source
from rnnspec.backends.torch.codegen import generate_source, load_source
torch.set_num_threads(1)
module = load_source(generate_source(check_source(sys.argv[1], "bench.rnn"), "compiled"),
                     "bench.rnn")
model = getattr(module, sys.argv[2])()
x = torch.randn(3, 1, model.input_size)
began = time.perf_counter()
with torch.no_grad():
    model(x)
print(time.perf_counter() - began)
assert module._compiled_library() is not None, "the library was not built"
"""


def first_calls(text: str, stack: str, cache: str) -> dict:
    """Seconds of the first call in a new process: from an empty cache, then from the cache."""
    env = {**os.environ, "RNNSPEC_COMPILED_CACHE": cache, "PYTHONPATH": str(ROOT)}
    times = {}
    for what in ("build", "cached"):
        done = subprocess.run(
            [sys.executable, "-c", _FIRST_CALL, text, stack],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        )
        times[what] = float(done.stdout.split()[-1])
    return times


def _run(model, x, lengths, mode, torch):
    arguments = {} if lengths is None else {"lengths": lengths}
    if mode == "forward":

        def run():
            with torch.no_grad():
                model(x, **arguments)
    else:

        def run():
            output = model(x, **arguments)[0]
            output.sum().backward()

    return run


def _packed(reference, lengths, torch):
    """An nn.RNNBase on a padded batch, as the fused backend runs one."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    def call(x, lengths=None):
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        output, finals = reference(packed)
        return pad_packed_sequence(output, total_length=x.shape[0])[0], finals

    return call


def _scripted_layer_norm_lstm(torch):
    """custom_lstms' LayerNormLSTMCell and LSTMLayer, as one TorchScript loop."""
    from torch import Tensor
    from torch.nn import functional as F

    def loop(
        x: Tensor,
        h: Tensor,
        c: Tensor,
        w_ih: Tensor,
        w_hh: Tensor,
        li_w: Tensor,
        li_b: Tensor,
        lh_w: Tensor,
        lh_b: Tensor,
        lc_w: Tensor,
        lc_b: Tensor,
    ):
        outputs = []
        gates_size = [w_ih.size(0)]
        hidden_size = [h.size(1)]
        for x_t in x.unbind(0):
            igates = F.layer_norm(torch.mm(x_t, w_ih.t()), gates_size, li_w, li_b, 1e-5)
            hgates = F.layer_norm(torch.mm(h, w_hh.t()), gates_size, lh_w, lh_b, 1e-5)
            i, f, g, o = (igates + hgates).chunk(4, 1)
            c = F.layer_norm(
                torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g),
                hidden_size,
                lc_w,
                lc_b,
                1e-5,
            )
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs), h, c

    scripted = torch.jit.script(loop)

    def make(model):
        core = model.core
        names = (
            "weight_ih",
            "weight_hh",
            "layernorm_i_weight",
            "layernorm_i_bias",
            "layernorm_h_weight",
            "layernorm_h_bias",
            "layernorm_c_weight",
            "layernorm_c_bias",
        )
        weights = [getattr(core, f"{name}_l0") for name in names]

        def call(x, lengths=None):
            zeros = x.new_zeros(x.shape[1], core.hidden_size)
            output, h, c = scripted(x, zeros, zeros, *weights)
            return output, (h, c)

        return call

    return make


def rows(rounds: int, quick: bool = False, min_seconds: float = 0.0) -> list[dict]:
    """Each row's medians over at least `rounds` interleaved rounds, and over as many as
    fill `min_seconds` (the B = 1 rows, a few ms a call, get hundreds)."""
    import torch

    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source, load_source

    torch.set_num_threads(1)
    plan = _sizes(quick)
    text = spec(_stack_sizes(plan))
    results = []
    with tempfile.TemporaryDirectory(prefix="rnnspec-bench-") as cache:
        first = first_calls(text, f"TorchLSTM{plan['lstm'][0][1]}", cache)
        before = os.environ.get("RNNSPEC_COMPILED_CACHE")
        os.environ["RNNSPEC_COMPILED_CACHE"] = cache
        try:
            module = load_source(
                generate_source(check_source(text, "bench.rnn"), "compiled"), "bench.rnn"
            )
            module._compiled_library()
        finally:
            if before is None:
                os.environ.pop("RNNSPEC_COMPILED_CACHE")
            else:
                os.environ["RNNSPEC_COMPILED_CACHE"] = before
        T = plan["T"]
        script = _scripted_layer_norm_lstm(torch)
        cases = [
            ("lstm", B, H, mode, None)
            for B, H in plan["lstm"]
            for mode in ("forward", "forward+backward")
        ]
        cases += [("lstm", B, H, "forward", None) for B, H in plan["big"]]
        cases += [
            ("layer-norm lstm", B, H, mode, None)
            for B, H in plan["lstm"]
            for mode in ("forward", "forward+backward")
        ]
        cases += [
            (cell, B, H, mode, padded)
            for cell in ("gru", "rnn")
            for B, H in plan["other"]
            for mode in ("forward", "forward+backward")
            for padded in (None, "lengths")
        ]
        cases += [
            ("lstm", B, H, mode, "lengths")
            for B, H in plan["other"]
            for mode in ("forward", "forward+backward")
        ]
        for cell, B, H, mode, padded in cases:
            torch.manual_seed(0)
            name = {
                "lstm": "TorchLSTM",
                "gru": "TorchGRU",
                "rnn": "TorchRNN",
                "layer-norm lstm": "LayerNormLSTM",
            }[cell]
            model = getattr(module, f"{name}{H}")()
            if cell == "layer-norm lstm":
                reference = script(model)
            else:
                torch_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[
                    cell
                ]
                reference = torch_class(H, H)
                reference.load_state_dict(
                    {k.split(".", 1)[1]: v for k, v in model.state_dict().items()}
                )
            x = torch.randn(T, B, H)
            lengths = None
            if padded:
                lengths = torch.randint(T // 2, T + 1, (B,))
                lengths[0] = T
                if cell != "layer-norm lstm":
                    reference = _packed(reference, lengths, torch)
            contenders = {
                "reference": _run(reference, x, lengths, mode, torch),
                "compiled": _run(model, x, lengths, mode, torch),
            }
            for run in contenders.values():
                run()
            samples = interleaved_samples(contenders, rounds, min_seconds)
            times = {who: median(values) for who, values in samples.items()}
            results.append(
                {
                    "measure": cell + (" (lengths)" if padded else ""),
                    "B": B,
                    "H": H,
                    "mode": mode,
                    "reference_ms": times["reference"] * 1e3,
                    "compiled_ms": times["compiled"] * 1e3,
                    "ratio": times["compiled"] / times["reference"],
                    "target": None if padded else TARGETS.get((cell, B, mode)),
                    "noise": noise(samples["reference"]),
                }
            )
    results.append(
        {
            "measure": "first call: build (empty cache) / later process (cache)",
            "build_s": first["build"],
            "cached_s": first["cached"],
        }
    )
    return results


def table(found: list[dict]) -> list[list]:
    out = []
    for row in found:
        if "build_s" in row:
            continue
        ratio = f"{row['ratio']:.3f}"
        if row["target"] is not None:
            verdict = "meets" if row["ratio"] <= row["target"] else "misses"
            ratio += f" ({verdict} <= {row['target']})"
        out.append(
            [
                row["measure"],
                row["B"],
                row["H"],
                row["mode"],
                f"{row['reference_ms']:.2f}",
                f"{row['compiled_ms']:.2f}",
                ratio,
                f"{row['noise']:.3f}",
            ]
        )
    return out


def first_call_line(found: list[dict]) -> str:
    row = next(r for r in found if "build_s" in r)
    return (
        f"First call of a new module (C++ build, empty cache): {row['build_s']:.1f} s "
        f"({'meets' if row['build_s'] <= 60 else 'misses'} <= 60 s); a later process's "
        f"first call (library from the cache): {row['cached_s']:.2f} s "
        f"({'meets' if row['cached_s'] <= 2 else 'misses'} <= 2 s)."
    )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="least seconds of rounds a row (default 3)"
    )
    arguments = parser.parse_args()
    quick = arguments.quick
    found = rows(1 if quick else arguments.rounds, quick, 0.0 if quick else arguments.seconds)
    print("| " + " | ".join(HEADERS) + " |")
    print("|" + "---|" * len(HEADERS))
    for line in table(found):
        print("| " + " | ".join(str(cell) for cell in line) + " |")
    print()
    print(first_call_line(found))
