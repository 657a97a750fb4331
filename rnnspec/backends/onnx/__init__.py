"""backends/onnx"""

from rnnspec.backends.base import ONNX, Backend

BACKENDS = (
    Backend("onnx", ONNX, "write an ONNX model of a stack",
            "rnnspec.backends.onnx.export:export"),
)
