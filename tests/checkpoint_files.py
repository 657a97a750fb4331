"""Checkpoint files for tests and benchmarks (moved out of the package: nothing there
writes a checkpoint)."""

import json
import struct

from rnnspec.tools.checkpoints.read import SAFETENSORS_DTYPES


def write_safetensors_header(path: str, shapes: dict[str, tuple[int, ...]],
                             dtype: str = "F32") -> None:
    """A safetensors file whose tensors are all zeros, written sparse (the data is a hole).

    For tests and benchmarks: a checkpoint of any claimed size costs a few
    kilobytes of disk where the file system supports sparse files.
    """
    width = SAFETENSORS_DTYPES[dtype][1]
    header, offset = {}, 0
    for name, shape in shapes.items():
        count = 1
        for dim in shape:
            count *= dim
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + count * width]}
        offset += count * width
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors aligns the data to 8 bytes
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        out.truncate(8 + len(raw) + offset)
