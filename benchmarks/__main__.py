"""Run every benchmark, print the tables and write benchmarks/RESULTS.md.

    python -m benchmarks            # the full run (a few minutes on two cores)
    python -m benchmarks --quick    # tiny sizes, one round: a smoke test, figures meaningless
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import (
    cells,
    compiled,
    compiled_cells,
    editor,
    layers,
    lengths,
    models,
    onnx_rows,
    processes,
    scaling,
)
from .harness import machine

HERE = Path(__file__).resolve().parent


def _table(headers: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _verdict(value: float, target: float) -> str:
    return f"{value:.3f} ({'meets' if value <= target else 'misses'} <= {target})"


def run(quick: bool) -> str:
    rounds = 1 if quick else 15
    model_rounds = 1 if quick else 5
    out = ["# rnnspec benchmarks", ""]
    started = time.time()
    info = machine()
    out += ["Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()), ""]
    if quick:
        out += ["**Quick run (smoke test): tiny sizes, one round; the figures mean nothing.**",
                ""]

    print("1. CLI start-up ...", flush=True)
    start = processes.startup(rounds)
    out += ["## 1. CLI start-up (whole processes, interleaved, median of "
            f"{rounds} rounds)", ""]
    out += _table(["command", "median ms"],
                  [[name, f"{seconds * 1e3:.1f}"] for name, seconds in start["times"].items()])
    out += ["", f"check / import lark = {_verdict(start['ratio_check_to_lark'], 1.25)}; "
            f"`-X importtime` shows torch or jinja2: "
            f"{', '.join(start['imports_torch_or_jinja2']) or 'neither'}", ""]

    print("2. scaling ...", flush=True)
    sizes = (10, 100) if quick else (10, 100, 1_000, 10_000)
    scale = scaling.scaling(sizes, repeats=1 if quick else 3)
    out += ["## 2. Scaling (parse + check in one process, best of repeats)", ""]
    out += _table(["stacks", "lines", "seconds", "µs per stack", "lines per second"],
                  [[r["stacks"], r["lines"], f"{r['seconds']:.3f}", f"{r['per_stack_us']:.0f}",
                    f"{r['lines_per_second']:,.0f}"] for r in scale["rows"]])
    if scale["ratio_10000_to_1000"] is not None:
        out += ["", "per-stack time 10,000 / 1,000 = "
                + _verdict(scale["ratio_10000_to_1000"], 1.2)]
    big = scaling.big_file(0.05 if quick else 10.0)
    out += ["", f"A {big['megabytes']:.1f} MB spec ({big['stacks']:,} stacks): "
            f"{big['seconds']:.1f} s, {big['megabytes_per_second']:.2f} MB/s.", ""]

    print("3. generation ...", flush=True)
    gen = processes.generation(rounds)
    out += ["## 3. Generation (whole processes, interleaved)", ""]
    out += _table(["command", "median ms"],
                  [[name, f"{s * 1e3:.1f}"] for name, s in gen["times"].items()])
    out += ["", "generate / check = " + _verdict(gen["ratio_generate_to_check"], 1.5), ""]

    model_sizes = [("tiny", 5, 8, 8, 1)] if quick else models.SIZES
    print("4. fused models ...", flush=True)
    settle = 0.0 if quick else 6.0
    fused = models.fused(model_rounds, sizes=model_sizes, min_seconds=settle)
    out += ["## 4. Generated models, fused backend, against torch.nn (same weights; median "
            f"of at least {model_rounds} interleaved rounds and {settle:g} s per row)", ""]
    out += _table(["size", "cell", "B", "mode", "rounds", "torch ms", "rnnspec ms", "ratio",
                   "A/A noise", "GFLOP/s"],
                  [[r["size"], r["cell"], r["B"], r["mode"], r["rounds"], f"{r['torch_ms']:.2f}",
                    f"{r['rnnspec_ms']:.2f}", f"{r['ratio']:.3f}", f"{r['noise']:.3f}",
                    f"{r['gflops']:.2f}"] for r in fused])
    ratios = sorted(r["ratio"] for r in fused)
    out += ["", f"median ratio over all rows = {_verdict(ratios[len(ratios) // 2], 1.02)}; "
            f"worst = {ratios[-1]:.3f}, against a worst A/A noise of "
            f"{max(max(r['noise'], 1 / r['noise']) for r in fused):.3f} (the reference "
            "timed against itself: even rounds over odd rounds)", ""]

    print("5. explicit models ...", flush=True)
    explicit = models.explicit(model_rounds, sizes=model_sizes, try_compile=not quick,
                               min_seconds=settle)
    out += ["## 5. Generated models, explicit backend (LSTM)", ""]
    out += _table(["size", "B", "mode", "nn.LSTM ms", "hand loop ms", "explicit ms",
                   "vs loop", "vs nn.LSTM", "GFLOP/s"],
                  [[r["size"], r["B"], r["mode"], f"{r['torch_ms']:.2f}", f"{r['loop_ms']:.2f}",
                    f"{r['explicit_ms']:.2f}", f"{r['vs_loop']:.3f}", f"{r['vs_torch']:.3f}",
                    f"{r['gflops']:.2f}"] for r in explicit["rows"]])
    worst = max(r["vs_loop"] for r in explicit["rows"])
    out += ["", "worst explicit / hand-written loop = " + _verdict(worst, 1.05), ""]
    if explicit["accelerations"]:
        out += ["Accelerations tried (forward, tutorial size):", ""]
        out += _table(["B", "how", "forward ms", "vs nn.LSTM", "compile s"],
                      [[a["B"], a["how"], f"{a['forward_ms']:.2f}" if "forward_ms" in a else "-",
                        f"{a['vs_torch']:.2f}" if "vs_torch" in a else a.get("error", ""),
                        f"{a['compile_s']:.1f}" if "compile_s" in a else "-"]
                       for a in explicit["accelerations"]])
        out.append("")
    if onnx_rows.available():
        print("6. ONNX export ...", flush=True)
        onnx_sizes = [("tiny", 5, 8, 8, 1, 0), ("tiny projected", 5, 8, 8, 1, 4)] \
            if quick else onnx_rows.SIZES
        exported = onnx_rows.rows(model_rounds, sizes=onnx_sizes, min_seconds=settle)
        out += ["## 6. Exported ONNX (onnxruntime, CPU) against the fused module (LSTM, "
                "forward, same weights and threads; no target)", ""]
        out += _table(["size", "B", "graph", "rounds", "torch ms", "onnxruntime ms",
                       "onnxruntime / torch", "A/A noise"],
                      [[r["size"], r["B"], r["graph"], r["rounds"], f"{r['torch_ms']:.2f}",
                        f"{r['onnx_ms']:.2f}", f"{r['ratio']:.3f}", f"{r['noise']:.3f}"]
                       for r in exported])
        out.append("")
    print("7. editor commands ...", flush=True)
    fmt = editor.formatting(rounds)
    out += ["## 7. Editor commands", "", "Whole processes, interleaved, on the "
            f"{fmt['files']} examples that parse:", ""]
    out += _table(["command", "median ms"],
                  [[name, f"{s * 1e3:.1f}"] for name, s in fmt["times"].items()])
    out += ["", "fmt --check / check = " + _verdict(fmt["ratio_fmt_to_check"], 1.3), ""]
    lsp = editor.lsp_round_trip(3 if quick else 40, lines=200 if quick else 2_000)
    if lsp is None:
        out += ["`rnnspec lsp`: not measured (pygls and lsprotocol are not installed)", ""]
    else:
        out += [f"`rnnspec lsp`, a {lsp['lines']:,}-line spec, one character changed: "
                f"diagnostics round trip {lsp['server_ms']:.1f} ms, in-process check "
                f"{lsp['check_ms']:.1f} ms; round trip / check = "
                + _verdict(lsp["ratio"], 1.3), ""]
    lsp_sizes = editor.lsp_scaling(1 if quick else 5, (0.02, 0.1) if quick else (1.0, 5.0))
    if lsp_sizes is not None:
        small, large = lsp_sizes["rows"][0], lsp_sizes["rows"][-1]
        out += [f"`rnnspec lsp` on {small['bytes'] / 1e6:.2f} MB and {large['bytes'] / 1e6:.2f} "
                "MB documents (round trips once the analysis is done; linear: a time ratio "
                f"near the size ratio {lsp_sizes['size_ratio']:.2f}, target <= 6):", ""]
        kinds = ["analysis", *editor.LSP_KINDS, "completion_first"]

        def cell(row, kind):
            return f"{row['analysis_s'] * 1e3:.0f}" if kind == "analysis" \
                else f"{row[kind + '_ms']:.1f}"

        out += _table(["request", "small ms", "large ms", "large / small"],
                      [[k.replace("_first", " (first of a version)"), cell(small, k),
                        cell(large, k), _verdict(lsp_sizes["ratios"][k], 6.0)] for k in kinds])
        out.append("")
    print("8. check --weights ...", flush=True)
    checked = processes.weights(rounds)
    out += ["## 8. `check --weights` on a safetensors checkpoint (whole processes, "
            f"interleaved; {checked['bytes'] / 2**30:.1f} GiB claimed, header read only)", ""]
    out += _table(["command", "median ms"],
                  [[name, f"{s * 1e3:.1f}"] for name, s in checked["times"].items()])
    out += ["", "check --weights / check = "
            + _verdict(checked["ratio_weights_to_check"], 1.3), ""]
    print("9. padded batches ...", flush=True)
    padded = lengths.rows(model_rounds, sizes=[("tiny", 5, 8, 8, 1)] if quick else lengths.SIZES,
                          batch=4 if quick else lengths.BATCH, min_seconds=settle)
    padded += lengths.reverse_rows(model_rounds, sizes=[("tiny", 5, 8, 8, 1)] if quick
                                   else lengths.SIZES, batch=4 if quick else lengths.BATCH,
                                   min_seconds=settle)
    out += ["## 9. Padded batches (`lengths`, LSTM, forward, B = "
            f"{4 if quick else lengths.BATCH})", ""]
    out += _table(["size", "ratio of", "reference ms", "rnnspec ms", "ratio", "A/A noise"],
                  [[r["size"], r["what"], f"{r['reference_ms']:.2f}", f"{r['rnnspec_ms']:.2f}",
                    _verdict(r["ratio"], r["target"]), f"{r['noise']:.3f}"] for r in padded])
    out.append("")
    print("10. cells declared by their equations ...", flush=True)
    declared = cells.user_lstm(model_rounds, sizes=[("tiny", 5, 2, 8, 8, 1)] if quick
                               else cells.SIZES, min_seconds=settle)
    out += ["## 10. The LSTM declared as a user cell (`TorchLSTM`) / the built-in `lstm`, "
            "explicit backend, same weights", ""]
    out += _table(["size", "B", "mode", "rounds", "built-in ms", "user cell ms",
                   "user / built-in", "A/A noise"],
                  [[r["size"], r["B"], r["mode"], r["rounds"], f"{r['builtin_ms']:.2f}",
                    f"{r['declared_ms']:.2f}", _verdict(r["ratio"], 1.05),
                    f"{r['noise']:.3f}"] for r in declared])
    checked = cells.check_cells(rounds)
    out += ["", "`rnnspec check` of ten user cells and twenty stacks / the same stacks with "
            f"built-in cells (whole processes): {checked['times']['declared'] * 1e3:.1f} ms / "
            f"{checked['times']['builtin'] * 1e3:.1f} ms = "
            + _verdict(checked["ratio"], 1.5), ""]
    print("11. layers ...", flush=True)
    built = layers.check_and_generate(rounds)
    out += ["## 11. Layers (section 10)", "",
            "check + generate of a 20-entry network (16 layers, 4 GRUs) / a 20-block stack "
            f"(one process): {built['times']['network'] * 1e3:.1f} ms / "
            f"{built['times']['blocks'] * 1e3:.1f} ms = " + _verdict(built["ratio"], 1.2)
            + f" (A/A noise {built['noise']:.3f})", ""]
    speech = layers.deepspeech(model_rounds, steps=8 if quick else 100,
                               min_seconds=0.0 if quick else 20.0)
    out += [f"DeepSpeech2 example (fused, eval, T = {speech['steps']}, B = {speech['batch']}) / "
            "the plain-PyTorch model: "
            f"{speech['times']['rnnspec'] * 1e3:.1f} ms / "
            f"{speech['times']['reference'] * 1e3:.1f} ms = " + _verdict(speech["ratio"], 1.02)
            + f" (A/A noise {speech['noise']:.3f})", ""]
    print("12. torch.compile ...", flush=True)
    out += ["## 12. torch.compile(fullgraph=True, dynamic=True) / eager, explicit backend",
            "", compiled.DESCRIPTION, ""]
    if quick:
        out += ["Quick run: torch.compile's `aot_eager` backend (no inductor code generation).",
                ""]
        out += _table(compiled.HEADERS, compiled.rows(1, (5, 7, 9), backend="aot_eager"))
    else:
        out += _table(compiled.HEADERS, compiled.rows(model_rounds, compiled.STEPS))
    out.append("")
    if not quick:  # a compiled backward: a minute more
        out += [compiled.TRAIN_DESCRIPTION, ""]
        out += _table(compiled.HEADERS, compiled.rows(model_rounds, compiled.STEPS, grad=True))
        out.append("")
    print("13. the compiled backend ...", flush=True)
    out += ["## 13. The compiled backend (user cells as C++ loops) / torch.nn and TorchScript",
            "", compiled_cells.__doc__.split("\n\n", 1)[1].strip(), ""]
    if quick:  # two cold C++ builds: tests/test_compiled_backend.py builds and checks them
        out += ["Quick run: not measured (its cold builds take a minute).", ""]
    elif compiled_cells.has_compiler():
        found = compiled_cells.rows(model_rounds, quick, min_seconds=settle)
        out += _table(compiled_cells.HEADERS, compiled_cells.table(found))
        out += ["", compiled_cells.first_call_line(found), ""]
    else:
        out += ["No C++ compiler here: not measured.", ""]
    out += [f"Total time: {time.time() - started:.0f} s.", ""]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the Markdown (default: benchmarks/RESULTS.md, "
                             "not written for --quick)")
    args = parser.parse_args(argv)
    report = run(args.quick)
    print(report)
    target = args.out or (None if args.quick else HERE / "RESULTS.md")
    if target:
        target.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
