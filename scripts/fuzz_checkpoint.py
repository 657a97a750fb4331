"""Fuzz checkpoint reading: safetensors files whose header is mutated (its JSON, its length,
offsets, shapes, dtypes, names such as `weight_ih_l<huge>`) through the reader and the
entry points of `rnnspec check --weights` and `rnnspec infer`. Acceptable: a result or a
`CheckpointError`, within the surface's time limit (`scripts/fuzz.py` sets it); anything
else raises.

`make(rng)` and `exercise(data)` are the surface `scripts/fuzz.py --surface checkpoint`
drives. The valid file mutated is written by the safetensors package for a small LSTM's
state dict (torch and safetensors are needed).
"""

from __future__ import annotations

import functools
import json
import os
import random
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SPEC = ("stack Net {\n    input_size = 3\n    lstm(hidden_size = 4, num_layers = 2)\n"
        "    gru(hidden_size = 5)\n}\n")
DTYPES = ["F32", "F16", "BF16", "I64", "BOOL", "F99", "FLOAT32", "", 5, None, "C64", "F4"]
NUMBERS = [0, 1, -1, 3, 4, 16, 2**31, 2**63, 10**20, 10**400, 1.5, "4", None, True]
NAMES = ["weight_ih_l1000000", "weight_ih_l" + "9" * 40, "weight_hh_l0_reverse",
         "lstm.weight_ih_l0", "a.b.weight_ih_l0", "", "é", "weight_ih_l-1", "__metadata__",
         "weight_hr_l0", "bias_ih_l7", "0.weight_ih_l0"]


@functools.lru_cache(maxsize=1)
def valid() -> bytes:
    """A safetensors file of an LSTM (2 layers) and a GRU, written by safetensors."""
    import torch
    from safetensors.torch import save

    torch.manual_seed(0)
    state = {f"lstm.{k}": v for k, v in torch.nn.LSTM(3, 4, num_layers=2).state_dict().items()}
    state.update({f"gru.{k}": v for k, v in torch.nn.GRU(4, 5).state_dict().items()})
    return save(state)


def _split(data: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]


def _join(header, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def _mutate_entry(rng: random.Random, header: dict) -> None:
    names = [n for n in header if n != "__metadata__"]
    if not names:
        return
    name = rng.choice(names)
    entry = header[name]
    if not isinstance(entry, dict) or not isinstance(entry.get("data_offsets"), list) or \
            len(entry["data_offsets"]) != 2 or not isinstance(entry.get("shape"), list):
        header[name] = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
        return
    field = rng.choice(["dtype", "shape", "data_offsets", "name", "drop", "value"])
    if field == "dtype":
        entry["dtype"] = rng.choice(DTYPES)
    elif field == "shape":
        entry["shape"] = rng.choice([[], [rng.choice(NUMBERS)], entry["shape"] * 2,
                                     [rng.choice(NUMBERS) for _ in range(rng.randrange(4))],
                                     "x", None])
    elif field == "data_offsets":
        start, end = entry["data_offsets"]
        entry["data_offsets"] = rng.choice([[end, start], [start, rng.choice(NUMBERS)],
                                            [rng.choice(NUMBERS), end], [0, end], [start],
                                            [start, end, end], None])
    elif field == "name":
        new = rng.choice(NAMES)
        header[name.rsplit(".", 1)[0] + "." + new if rng.random() < 0.5 else new] = \
            header.pop(name)
    elif field == "drop":
        del header[name]
    else:
        header[name] = rng.choice([None, 5, "x", [], {}, {"dtype": "F32"}])


def _bytes(rng: random.Random, data: bytes) -> bytes:
    (length,) = struct.unpack("<Q", data[:8])
    choice = rng.randrange(5)
    if choice == 0:  # the length field
        new = rng.choice([0, 1, length - 1, length + 1, len(data), 2**40, 2**64 - 1])
        return struct.pack("<Q", new) + data[8:]
    if choice == 1:
        return data[:rng.randrange(len(data) + 1)]  # truncated
    if choice == 2:  # bytes of the header flipped
        out = bytearray(data)
        for _ in range(rng.randrange(1, 6)):
            out[8 + rng.randrange(length)] = rng.randrange(256)
        return bytes(out)
    if choice == 3:  # deeply nested JSON as the header
        text = b"[" * rng.choice([100, 5000, 200000]) + b"]" * rng.randrange(2)
        return struct.pack("<Q", len(text)) + text
    return data + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))


def make(rng: random.Random) -> bytes:
    """One mutated checkpoint: a few changes to the header's JSON, then maybe its bytes."""
    header, body = _split(valid())
    for _ in range(rng.randrange(1, 4)):
        roll = rng.random()
        if roll < 0.8:
            _mutate_entry(rng, header)
        elif roll < 0.9:
            header["__metadata__"] = rng.choice([{"format": "pt"}, {"a": 5}, [], "x", None])
        else:
            name = f"lstm.{rng.choice(NAMES)}"
            header[name] = {"dtype": rng.choice(DTYPES), "shape": [rng.choice(NUMBERS)],
                            "data_offsets": [0, rng.choice(NUMBERS)]}
    data = _join(header, body)
    return _bytes(rng, data) if rng.random() < 0.3 else data


def exercise(data: bytes) -> str:
    """Read `data` as a checkpoint, compare it with a spec (`check --weights`) and infer a
    spec from it (`infer`): "refused" (a CheckpointError) or "ok"; anything else raises."""
    from rnnspec.check.checker import check_text
    from rnnspec.tools.checkpoints.compare import attach, stack_for
    from rnnspec.tools.checkpoints.infer import infer_stacks, modules_of, render_spec
    from rnnspec.tools.checkpoints.read import CheckpointError, read_checkpoint

    handle, path = tempfile.mkstemp(suffix=".safetensors")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        try:
            tensors = read_checkpoint(path)
        except CheckpointError:
            return "refused"
        result = check_text(SPEC, "net.rnn")  # new each time: `attach` adds to it
        stack, _ = stack_for(result, None)
        comparison = attach(result, stack, tensors, path, None)
        comparison.text()
        json.dumps(comparison.to_json())
        stacks, _, _ = infer_stacks(tensors, [])
        modules = modules_of(stacks)
        if modules:
            render_spec(modules, path, [], stacks)
        return "ok"
    finally:
        os.unlink(path)

