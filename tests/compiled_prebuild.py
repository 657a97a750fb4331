"""The compiled backend's one test library, built in the background from the start of the
session.

Building the C++ of the tests' spec (examples/cells.rnn, the built-in cells and the random
cells: tests/test_compiled_backend.py's `modules`) takes half a minute of one core, and the
suite runs on the other meanwhile. conftest.py's collection hook calls `start` when a
selected test needs the library; two processes then build the same library at once into a
fresh cache folder, which is also the test that two processes building at once both
succeed (`test_two_processes_build_at_once_and_a_third_reads_the_cache`). `finish` waits
for them; the tests then load the library from that cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILDERS = 2

# One builder: the spec's compiled module, its library built (or read from the cache),
# what it warned, how long the library took, and how many Python steps a forward of the
# stack named by argv[2] ran (0: the C++ loop ran).
PROGRAM = """
import sys, time, warnings
from pathlib import Path
import torch
from rnnspec import check_source
from rnnspec.backends.torch.codegen import generate_source, load_source

text = Path(sys.argv[1]).read_text(encoding="utf-8")
module = load_source(generate_source(check_source(text, "all.rnn"), "compiled"), "all.rnn")
steps = []
advance = module._Recurrent.advance
module._Recurrent.advance = lambda self, *a, **k: steps.append(1) or advance(self, *a, **k)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    began = time.perf_counter()
    library = module._compiled_library()
    seconds = time.perf_counter() - began
    model = getattr(module, sys.argv[2])()
    with torch.no_grad():
        model(torch.randn(5, 2, model.input_size))
for warning in caught:
    print("WARNING", warning.message)
print("LIBRARY", library is not None, "STEPS", len(steps), "SECONDS", round(seconds, 3))
"""
STACK = "TorchStack"  # of examples/cells.rnn, in every spec the tests build here


class Build:
    """The background builders of one spec, and the cache folder they write."""

    def __init__(self, text: str):
        self.folder = Path(tempfile.mkdtemp(prefix="rnnspec-compiled-tests-"))
        self.cache = self.folder / "cache"
        self.spec = self.folder / "all.rnn"
        self.spec.write_text(text, encoding="utf-8")
        self.processes = [self.run() for _ in range(BUILDERS)]
        self.outputs: list[str] | None = None

    def run(self, **env) -> subprocess.Popen:
        """A builder process (started, not waited for); `env` adds to its environment."""
        environment = {**os.environ, "RNNSPEC_COMPILED_CACHE": str(self.cache),
                       "PYTHONPATH": str(ROOT), **env}
        return subprocess.Popen([sys.executable, "-c", PROGRAM, str(self.spec), STACK],
                                env=environment, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT)

    def finish(self) -> list[str]:
        """Every builder's output, once all are done (each must exit 0)."""
        if self.outputs is None:
            outputs = []
            for process in self.processes:
                out, err = process.communicate(timeout=900)
                assert process.returncode == 0, err[-3000:]
                outputs.append(out)
            self.outputs = outputs
        return self.outputs

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


BUILD: list[Build] = []  # the session's, once started


def start(text: str) -> Build:
    if not BUILD:
        BUILD.append(Build(text))
    return BUILD[0]


def stop() -> None:
    for build in BUILD:
        build.stop()
    BUILD.clear()
