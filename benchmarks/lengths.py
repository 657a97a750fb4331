"""Padded batches (language section 9): what `lengths` costs.

- fused backend with `lengths` against the code a PyTorch user writes by hand:
  `pack_padded_sequence(enforce_sorted=False)`, the module, `pad_packed_sequence`;
- explicit backend with `lengths` against the same explicit stack without them (the masked
  time loop against the plain one; the longest length is T, so both compute every step,
  and the masks apply from the shortest length on);
- a reverse-only block (section 11, `reverse = true`) with `lengths`: the fused backend's
  flipped run (each sequence reversed within its length, packed nn.LSTM, reversed back)
  against the written-out loop of the explicit backend, same weights.
"""

import warnings

from .harness import interleaved_samples, median, noise
from .models import build

# (name, T, inputs, H, layers)
SIZES = [("tutorial", 100, 20, 50, 2), ("fastrnns", 100, 512, 512, 1)]
BATCH = 64


def _contenders(inputs: int, H: int, layers: int, T: int, batch: int) -> tuple[dict, dict]:
    import torch

    pack = torch.nn.utils.rnn.pack_padded_sequence
    unpack = torch.nn.utils.rnn.pad_packed_sequence
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused, reference = build("lstm", inputs, H, layers, "fused")
        explicit, _ = build("lstm", inputs, H, layers, "explicit")
    x = torch.randn(T, batch, inputs)
    lengths = torch.randint(1, T + 1, (batch,))
    lengths[0] = T

    def by_hand():
        with torch.no_grad():
            output, _ = reference(pack(x, lengths, enforce_sorted=False))
            unpack(output, total_length=T)

    def generated():
        with torch.no_grad():
            fused(x, lengths=lengths)

    def masked():
        with torch.no_grad():
            explicit(x, lengths=lengths)

    def plain():
        with torch.no_grad():
            explicit(x)

    return {"reference": by_hand, "rnnspec": generated}, {"reference": plain, "rnnspec": masked}


def rows(rounds: int, sizes=SIZES, batch: int = BATCH, min_seconds: float = 0.0) -> list:
    import torch

    torch.manual_seed(0)
    out = []
    for name, T, inputs, H, layers in sizes:
        packed, padded = _contenders(inputs, H, layers, T, batch)
        for what, contenders, target in (
                ("fused + lengths / pack + nn.LSTM + pad", packed, 1.05),
                ("explicit + lengths / explicit", padded, 1.15)):
            samples = interleaved_samples(contenders, rounds, min_seconds)
            reference, ours = median(samples["reference"]), median(samples["rnnspec"])
            out.append({"size": name, "what": what, "reference_ms": reference * 1e3,
                        "rnnspec_ms": ours * 1e3, "ratio": ours / reference,
                        "noise": noise(samples["reference"]), "target": target})
    return out


def _reverse_contenders(inputs: int, H: int, layers: int, T: int, batch: int) -> dict:
    import torch

    from rnnspec import check_source
    from rnnspec.backends.torch.codegen import generate_source, load_source

    text = (f"stack Back {{\n    input_size = {inputs}\n"
            f"    lstm(hidden_size = {H}, num_layers = {layers}, reverse = true)\n}}\n")
    result = check_source(text, "reverse.rnn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = load_source(generate_source(result, "fused"), "reverse.rnn").Back().eval()
        explicit = load_source(generate_source(result, "explicit"), "reverse.rnn").Back().eval()
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(T, batch, inputs)
    lengths = torch.randint(1, T + 1, (batch,))
    lengths[0] = T

    def flipped():
        with torch.no_grad():
            fused(x, lengths=lengths)

    def loop():
        with torch.no_grad():
            explicit(x, lengths=lengths)

    return {"reference": loop, "rnnspec": flipped}


def reverse_rows(rounds: int, sizes=SIZES, batch: int = BATCH, min_seconds: float = 0.0) -> list:
    """The fused reverse-only block / the written-out reverse loop, measured in one run."""
    import torch

    torch.manual_seed(0)
    out = []
    for name, T, inputs, H, layers in sizes:
        contenders = _reverse_contenders(inputs, H, layers, T, batch)
        samples = interleaved_samples(contenders, rounds, min_seconds)
        reference, ours = median(samples["reference"]), median(samples["rnnspec"])
        out.append({"size": name, "what": "fused reverse (flipped, packed) / explicit reverse",
                    "reference_ms": reference * 1e3, "rnnspec_ms": ours * 1e3,
                    "ratio": ours / reference, "noise": noise(samples["reference"]),
                    "target": 1.0})
    return out
