"""Cells declared by their equations against the hand-tuned built-in template.

- the LSTM re-expressed as a user cell (`TorchLSTM` of examples/cells.rnn) against the
  explicit backend's built-in `lstm`, same weights, forward and forward+backward;
- `rnnspec check` of ten user cells and twenty stacks against the same twenty stacks
  written with built-in cells (whole processes).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .harness import ROOT, compile_package, interleaved_samples, median, noise, run_process
from .processes import rnnspec_command

# (name, T, B, inputs, H, layers): the seed tutorial network, and PyTorch's fastrnns size
SIZES = [("seed", 100, 32, 20, 50, 2), ("fastrnns", 100, 64, 512, 512, 1)]
LIBRARY = ROOT / "examples" / "cells.rnn"


def _cell_text(name: str) -> str:
    """One `cell` item of the library, as written there."""
    text = LIBRARY.read_text(encoding="utf-8")
    start = text.index(f"cell {name}")
    return text[start:text.index("\n}\n", start) + 3]


def _models(inputs: int, H: int, layers: int):
    import torch

    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source, load_source

    text = _cell_text("TorchLSTM") + (
        f"stack Builtin {{\n    input_size = {inputs}\n"
        f"    core = lstm(hidden_size = {H}, num_layers = {layers})\n}}\n"
        f"stack Declared {{\n    input_size = {inputs}\n"
        f"    core = TorchLSTM(hidden_size = {H}, num_layers = {layers})\n}}\n")
    result = check_source(text, "bench.rnn")
    module = load_source(generate_source(result, "explicit"), "bench.rnn")
    builtin, declared = module.Builtin(), module.Declared()
    declared.load_state_dict(builtin.state_dict())
    return builtin, declared, torch


def user_lstm(rounds: int, sizes=SIZES, min_seconds: float = 0.0) -> list:
    from .models import MODES

    rows = []
    for name, T, B, inputs, H, layers in sizes:
        builtin, declared, torch = _models(inputs, H, layers)
        torch.manual_seed(0)
        x = torch.randn(T, B, inputs)
        for mode, (make, _) in MODES.items():
            contenders = {"declared": make(declared, x), "builtin": make(builtin, x)}
            for run in contenders.values():
                run()
            samples = interleaved_samples(contenders, rounds, min_seconds)
            times = {who: median(values) for who, values in samples.items()}
            rows.append({"size": name, "B": B, "mode": mode,
                         "builtin_ms": times["builtin"] * 1e3,
                         "declared_ms": times["declared"] * 1e3,
                         "ratio": times["declared"] / times["builtin"],
                         "noise": noise(samples["builtin"]),
                         "rounds": len(samples["builtin"])})
    return rows


LIBRARY_CELLS = ("TorchLSTM", "TorchGRU", "TorchRNN", "PeepholeLSTM", "CoupledLSTM",
                 "OriginalGRU", "IndRNN", "MinGRU", "MinLSTM", "LayerNormLSTM")
BUILTIN_TWINS = ("lstm", "gru", "rnn", "lstm", "lstm", "gru", "rnn", "gru", "lstm", "lstm")


def _specs() -> tuple[str, str]:
    """Ten cells and twenty stacks using them; the same stacks with built-in cells."""
    cells = "\n".join(_cell_text(name) for name in LIBRARY_CELLS)
    declared, builtin = [cells], []
    for index in range(20):
        cell, twin = LIBRARY_CELLS[index % 10], BUILTIN_TWINS[index % 10]
        for target, used in ((declared, cell), (builtin, twin)):
            target.append(f"stack Net{index} {{\n    input_size = {16 + index}\n"
                          f"    encoder = {used}(hidden_size = 64, num_layers = 2, "
                          "bidirectional = true)\n"
                          f"    decoder = {used}(hidden_size = 32)\n}}\n")
    return "\n".join(declared), "\n".join(builtin)


def check_cells(rounds: int) -> dict:
    compile_package()
    base = rnnspec_command()
    declared, builtin = _specs()
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for name, text in (("declared", declared), ("builtin", builtin)):
            paths[name] = Path(folder) / f"{name}.rnn"
            paths[name].write_text(text, encoding="utf-8")
        commands = {name: base + ["check", str(path)] for name, path in paths.items()}
        for command in commands.values():
            run_process(command)
        samples = interleaved_samples(
            {n: (lambda c=c: run_process(c)) for n, c in commands.items()}, rounds)
    times = {who: median(values) for who, values in samples.items()}
    return {"times": times, "ratio": times["declared"] / times["builtin"],
            "noise": noise(samples["builtin"])}
