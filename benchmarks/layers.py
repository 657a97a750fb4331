"""Section 10's costs: checking and generating a network of layers against a stack of
blocks of the same length, and the fused DeepSpeech2 example against the plain-PyTorch
model it equals (tests/reference_models.py), on the same weights."""

from __future__ import annotations

import sys

from .harness import ROOT, interleaved_samples, median, noise

KINDS = ("linear(32)", "layer_norm()", "relu()", "dropout(0.1)", "batch_norm()")


def network(entries: int) -> str:
    """A stack of `entries` entries: every fifth a GRU, the others layers."""
    lines = ["stack Net {", "    input_size = 32"]
    for index in range(entries):
        lines.append("    gru(hidden_size = 32)" if index % 5 == 4
                     else f"    {KINDS[index % len(KINDS)]}")
    return "\n".join(lines + ["}", ""])


def blocks(entries: int) -> str:
    lines = ["stack Net {", "    input_size = 32"]
    lines += ["    gru(hidden_size = 32)"] * entries
    return "\n".join(lines + ["}", ""])


def check_and_generate(rounds: int, entries: int = 20) -> dict:
    """Check + generate (fused) of a network of `entries` entries / of as many blocks."""
    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source

    texts = {"network": network(entries), "blocks": blocks(entries)}

    def job(text):
        def run():
            generate_source(check_source(text, "bench.rnn"))
        return run

    samples = interleaved_samples({name: job(text) for name, text in texts.items()}, rounds,
                                  min_seconds=2.0)
    times = {name: median(values) for name, values in samples.items()}
    return {"times": times, "ratio": times["network"] / times["blocks"],
            "noise": noise(samples["blocks"])}


def deepspeech(rounds: int, steps: int = 100, batch: int = 2, min_seconds: float = 0.0) -> dict:
    """Forward (eval, no grad) of the generated fused DeepSpeech2 / the reference."""
    import torch

    import rnnspec

    sys.path.insert(0, str(ROOT / "tests"))
    from reference_models import DeepSpeech2

    torch.manual_seed(0)
    reference = DeepSpeech2().eval()
    generated = rnnspec.load(ROOT / "examples" / "deepspeech2.rnn", "fused").DeepSpeech2().eval()
    generated.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(steps, batch, 161)

    def run(model):
        def call():
            with torch.no_grad():
                model(x)
        return call

    samples = interleaved_samples({"reference": run(reference), "rnnspec": run(generated)},
                                  rounds, min_seconds)
    times = {name: median(values) for name, values in samples.items()}
    return {"times": times, "ratio": times["rnnspec"] / times["reference"],
            "noise": noise(samples["reference"]), "steps": steps, "batch": batch}
