"""Reading checkpoints: the one reader of `check --weights`, `infer` and `export`.

`read_checkpoint(path)` gives `{name: (shape, dtype)}`, never reading the tensors' data;
`load_tensors(path)` gives `{name: torch tensor}` (export) through the same checks, so the
three commands accept the same files and refuse the others with the same message. Both read

- a safetensors file: `read_checkpoint` reads only its header (an 8-byte little-endian
  length and that many bytes of JSON), with the standard library; neither torch nor the
  safetensors package is imported, so a checkpoint of any size costs a few kilobytes of
  reading (`load_tensors` then reads each tensor's bytes at its validated offsets);
- a file written by `torch.save`: loaded lazily with torch, `weights_only=True` (no code in
  the file runs) and, for the zip format of torch >= 1.6, memory-mapped, so the storages are
  never read. A state dict, or a dict holding one under a usual key (`state_dict`, `model`,
  ...; nested at most one level) is accepted.

Refused, by both: FIFOs and devices (by `stat`, never opened), non-string keys, a
non-tensor under a parameter's key, nested, meta, sparse, quantised and complex tensors.
Everything else raises `CheckpointError` with a message for people (exit status 2).
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Mapping

from rnnspec.tools.files import special_kind

Tensors = dict[str, tuple[tuple[int, ...], str]]

# safetensors' own limit on the header (its reader refuses larger ones)
MAX_HEADER_BYTES = 100_000_000
# The keys under which training scripts keep the model's state dict.
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "net", "module")

# safetensors dtype codes: (torch's name, bytes per element; 0 for sub-byte types)
SAFETENSORS_DTYPES = {
    "BOOL": ("bool", 1), "U8": ("uint8", 1), "I8": ("int8", 1), "F8_E5M2": ("float8_e5m2", 1),
    "F8_E4M3": ("float8_e4m3fn", 1), "I16": ("int16", 2), "U16": ("uint16", 2),
    "F16": ("float16", 2), "BF16": ("bfloat16", 2), "I32": ("int32", 4), "U32": ("uint32", 4),
    "F32": ("float32", 4), "F64": ("float64", 8), "I64": ("int64", 8), "U64": ("uint64", 8),
    "C64": ("complex64", 8), "F4": ("float4_e2m1fn_x2", 0), "F6_E2M3": ("float6_e2m3", 0),
    "F6_E3M2": ("float6_e3m2", 0), "E8M0": ("float8_e8m0fnu", 1),
}


class CheckpointError(Exception):
    """A checkpoint that cannot be read (exit status 2); the message is for people."""


def read_checkpoint(path: str) -> Tensors:
    """Every tensor's name, shape and dtype, in the file's order."""
    return _read(path, data=False)


def load_tensors(path: str) -> dict:
    """Every tensor of the checkpoint as a torch tensor (`{name: tensor}`, the file's
    order), read through the same checks as `read_checkpoint`, so every command that takes
    a checkpoint accepts and refuses the same files with the same messages."""
    return _read(path, data=True)


def _read(path: str, data: bool):
    refuse_special(path)
    tensors = _read_any(path, data)
    _bound_layers(path, tensors)
    if data or not tensors or isinstance(next(iter(tensors.values())), tuple):
        return tensors  # torch tensors, or a safetensors header's (shape, dtype)
    return {name: (tuple(int(d) for d in t.shape), str(t.dtype).removeprefix("torch."))
            for name, t in tensors.items()}


def refuse_special(path: str) -> None:
    """Raise CheckpointError when `path` is a FIFO, device or socket, found with `stat`
    alone: opening a FIFO blocks, and `/dev/zero` never ends."""
    kind = special_kind(path)
    if kind:
        raise CheckpointError(f"cannot read `{path}`: it is {kind}, not a regular file; "
                              "a checkpoint is a file on disk")


# The largest layer index (`weight_ih_l<N>`) a checkpoint may name: every later step does
# work per layer up to it, so a tiny header naming layer 10**20 must not reach them.
MAX_LAYER_INDEX = 10_000


def _bound_layers(path: str, tensors: Tensors) -> None:
    for name in tensors:
        for found in re.finditer(r"_l(\d+)", name):
            digits = found.group(1)
            if len(digits) > 6 or int(digits) > MAX_LAYER_INDEX:
                shown = digits if len(digits) <= 30 else digits[:12] + "..."
                raise CheckpointError(
                    f"`{path}`: tensor `{name[:80]}` names layer {shown}, more than the "
                    f"{MAX_LAYER_INDEX:,} layers rnnspec reads")


def _read_any(path: str, data: bool):
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            head = handle.read(9)
    except IsADirectoryError:
        raise CheckpointError(f"cannot read `{path}`: it is a folder") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read `{path}`: {exc.strerror or exc}") from None
    if os.path.isdir(path):
        raise CheckpointError(f"cannot read `{path}`: it is a folder")
    if path.endswith(".safetensors") or _looks_like_safetensors(head, size):
        return load_safetensors(path) if data else read_safetensors_header(path)
    if head.startswith(b"PK\x03\x04"):
        import zipfile

        if not zipfile.is_zipfile(path):  # reads only the end of the file
            raise CheckpointError(
                f"`{path}` is truncated or damaged: it starts like a `torch.save` zip "
                "archive but has no directory at its end")
        return _read_torch(path, zip_format=True)
    if head[:1] == b"\x80":  # a pickle (protocol 2+): torch.save's legacy format
        return _read_torch(path, zip_format=False)
    if size == 0:
        raise CheckpointError(f"`{path}` is empty: not a checkpoint")
    raise CheckpointError(
        f"`{path}` is not a checkpoint: neither a safetensors file nor a file written by "
        "`torch.save`")


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= size - 8 and head[8:9] == b"{"


# ----------------------------------------------------------------------------- safetensors


def read_safetensors_header(path: str) -> Tensors:
    """The header of a safetensors file, validated; no tensor data is read."""
    return _safetensors_header(path)[0]


def load_safetensors(path: str) -> dict:
    """A safetensors file's tensors (torch), after its header is validated."""
    tensors, header, start = _safetensors_header(path)
    import torch

    loaded = {}
    try:
        with open(path, "rb") as handle:
            for name, (shape, dtype) in tensors.items():
                begin, end = header[name]["data_offsets"]
                if not SAFETENSORS_DTYPES[header[name]["dtype"]][1]:
                    raise CheckpointError(f"`{path}`: tensor `{name}` has dtype "
                                          f"`{header[name]['dtype']}`, which rnnspec cannot "
                                          "load (sub-byte values)")
                handle.seek(start + begin)
                raw = bytearray(handle.read(end - begin))
                if len(raw) < end - begin:
                    raise CheckpointError(f"`{path}` is truncated inside tensor `{name}`")
                values = (torch.frombuffer(raw, dtype=getattr(torch, dtype)) if raw
                          else torch.empty(0, dtype=getattr(torch, dtype)))
                loaded[name] = values.reshape(shape)
    except OSError as exc:
        raise CheckpointError(f"cannot read `{path}`: {exc.strerror or exc}") from None
    return loaded


def _safetensors_header(path: str) -> tuple[Tensors, dict, int]:
    """The validated header's tensors, the header itself, and where the data starts."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise CheckpointError(
                    f"`{path}` is truncated: a safetensors file starts with an 8-byte header "
                    f"length, the file has {len(prefix)} byte{'s' if len(prefix) != 1 else ''}")
            (length,) = struct.unpack("<Q", prefix)
            if length > size - 8:
                raise CheckpointError(
                    f"`{path}` is truncated or not safetensors: its header length is "
                    f"{length:,} bytes, but the file has only {size - 8:,} after it")
            if length > MAX_HEADER_BYTES:
                raise CheckpointError(
                    f"`{path}`: the safetensors header claims {length:,} bytes, more than "
                    f"the {MAX_HEADER_BYTES:,} any safetensors reader accepts")
            raw = handle.read(length)
    except OSError as exc:
        raise CheckpointError(f"cannot read `{path}`: {exc.strerror or exc}") from None
    if len(raw) < length:  # the file shrank while we read it
        raise CheckpointError(f"`{path}` is truncated inside its safetensors header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(
            f"`{path}`: the safetensors header is not valid JSON ({exc})") from None
    except RecursionError:
        raise CheckpointError(
            f"`{path}`: the safetensors header nests JSON too deeply to be a header of "
            "tensors") from None
    if not isinstance(header, dict):
        raise CheckpointError(
            f"`{path}`: the safetensors header is a JSON {type(header).__name__}, "
            "not an object of tensors")
    data_bytes = size - 8 - length
    tensors: Tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _safetensors_entry(path, name, entry, data_bytes)
    _contiguous(path, header, data_bytes)
    return tensors, header, 8 + length


def _contiguous(path: str, header: dict, data_bytes: int) -> None:
    """The tensors' data_offsets tile the data from 0 with no gap or overlap, as the
    safetensors library requires."""
    spans = sorted((entry["data_offsets"][0], entry["data_offsets"][1], name)
                   for name, entry in header.items() if name != "__metadata__")
    end = 0
    for begin, stop, name in spans:
        if begin != end:
            what = "overlaps the data of another tensor" if begin < end else \
                f"starts at byte {begin:,}, leaving a gap after byte {end:,}"
            raise CheckpointError(
                f"`{path}`: tensor `{name}` in the safetensors header {what}: the "
                "data_offsets must be contiguous")
        end = stop


def _safetensors_entry(path: str, name: str, entry, data_bytes: int):
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"`{path}`: tensor `{name}` in the safetensors header {what}")

    if not isinstance(entry, dict):
        raise bad("is not an object")
    shape, dtype, offsets = entry.get("shape"), entry.get("dtype"), entry.get("data_offsets")
    if not (isinstance(shape, list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise bad("has no `shape` (a list of sizes)")
    if not isinstance(dtype, str):
        raise bad("has no `dtype`")
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
            and offsets[0] <= offsets[1]):
        raise bad("has no valid `data_offsets` (`[begin, end]`)")
    if offsets[1] > data_bytes:
        raise bad(f"ends at byte {offsets[1]:,} of the data, but the file holds only "
                  f"{data_bytes:,} bytes of data: the file is truncated")
    if dtype not in SAFETENSORS_DTYPES:
        raise bad(f"has dtype `{dtype[:40]}`, which safetensors does not have (it has "
                  f"{', '.join(SAFETENSORS_DTYPES)})")
    torch_name, width = SAFETENSORS_DTYPES[dtype]
    if torch_name.startswith("complex"):
        raise CheckpointError(unusable(path, name, "a complex tensor"))
    if width:
        count = 1
        for dim in shape:
            count *= dim
        if count * width != offsets[1] - offsets[0]:
            raise bad(f"has {offsets[1] - offsets[0]:,} bytes of data, but shape {shape} of "
                      f"{dtype} needs {count * width:,}")
    return tuple(shape), torch_name


# ----------------------------------------------------------------------------- torch.save


def _read_torch(path: str, zip_format: bool) -> Tensors:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is an extra
        raise CheckpointError(
            f"`{path}` was written by `torch.save`: reading it needs torch "
            "(pip install 'rnnspec[torch]'), or convert it to safetensors") from None
    import warnings

    kwargs = {"map_location": "cpu", "weights_only": True}
    if zip_format:
        kwargs["mmap"] = True  # storages stay on disk: no memory for a multi-GB file
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.load(path, **kwargs)
    except Exception as exc:  # torch raises many types for bad files; all mean the same here
        raise CheckpointError(_torch_failure(path, exc)) from None
    state = _find_state_dict(loaded, torch.Tensor)
    if state is None:
        raise CheckpointError(
            f"`{path}` holds no state dict: a {type(loaded).__name__} without tensors "
            f"(looked at the top level and under {', '.join(f'`{k}`' for k in STATE_DICT_KEYS)})")
    for name, value in state.items():
        _refuse_unusable(path, name, value, torch)
    return {name: value for name, value in state.items() if isinstance(value, torch.Tensor)}


def unusable(path: str, name: str, what: str) -> str:
    """The message for a tensor no command can use: the same from every command."""
    return (f"`{path}`: `{name}` is {what}; rnnspec reads dense real tensors (save them "
            "as `tensor.to_dense().float()`)")


# a key that names a parameter: its value must be a tensor
_PARAMETER_KEY = re.compile(r"(^|\.)(weight|bias)|_l\d+")


def _refuse_unusable(path: str, key, value, torch) -> None:
    """Refuse what has no shape and data of real numbers: the same for every command."""
    if not isinstance(key, str):
        raise CheckpointError(f"`{path}` has a key {str(key)[:40]!r} that is not a string: "
                              "not a state dict")
    if not isinstance(value, torch.Tensor):
        if _PARAMETER_KEY.search(key):
            raise CheckpointError(f"`{path}`: `{key}` holds a {type(value).__name__}, "
                                  "not a tensor")
        return
    what = ("a nested tensor (no single shape)" if value.is_nested
            else "a meta tensor (no data)" if value.is_meta
            else "a sparse tensor" if value.layout != torch.strided
            else "a quantised tensor" if value.is_quantized
            else "a complex tensor" if value.is_complex() else None)
    if what:
        raise CheckpointError(unusable(path, key, what))


def _torch_failure(path: str, exc: Exception) -> str:
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    # before the weights-only test: a safe load of a cut file says both
    if isinstance(exc, EOFError) or "truncated" in text or "Ran out of input" in text:
        return f"`{path}` is truncated or damaged: its `torch.save` data ends early ({first})"
    if "Weights only load failed" in text or "weights_only" in text:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = f" (it needs `{found.group(1)}`)" if found else ""
        return (f"`{path}` holds pickled objects that a safe load refuses{what}; rnnspec never "
                "runs code from a checkpoint: save `model.state_dict()` instead of the model")
    return f"`{path}` is not a readable `torch.save` checkpoint (truncated or damaged?): {first}"


def _find_state_dict(loaded, tensor_type):
    """The state dict in what torch.load gave: itself, or under a usual key, one level deep."""
    candidates = []
    if isinstance(loaded, Mapping):
        for key in STATE_DICT_KEYS:
            inner = loaded.get(key)
            if isinstance(inner, Mapping):
                candidates.append(inner)
                candidates += [inner[k] for k in STATE_DICT_KEYS
                               if isinstance(inner.get(k), Mapping)]
        candidates.insert(0, loaded)
    for candidate in candidates[1:] + candidates[:1]:  # a usual key wins over the top level
        if any(isinstance(v, tensor_type) for v in candidate.values()):
            return candidate  # whole: its non-string keys and non-tensors are refused
    return None

