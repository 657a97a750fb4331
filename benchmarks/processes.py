"""Whole-process timings: CLI start-up against the interpreter, and generate against check."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .harness import ROOT, compile_package, interleaved, process_environment, run_process

EXAMPLE = ROOT / "examples" / "seed.rnn"
CLI = "from rnnspec.cli import entry; entry()"


def rnnspec_command() -> list[str]:
    """The console script when it is a Python script (a pip-installed entry point), else the
    same line it runs; a shell shim in front of it (pyenv) would only add its own cost."""
    script = shutil.which("rnnspec")
    if script:
        first = Path(script).read_bytes()[:200]
        if first.startswith(b"#!") and b"python" in first.split(b"\n")[0]:
            return [sys.executable, script]
    return [sys.executable, "-c", CLI]


def startup(rounds: int) -> dict:
    compile_package()
    base = rnnspec_command()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import lark"': [sys.executable, "-c", "import lark"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        "rnnspec check examples/seed.rnn": base + ["check", str(EXAMPLE)],
    }
    for command in commands.values():  # warm the OS cache and rnnspec's parser cache
        run_process(command)
    times = interleaved({name: (lambda c=c: run_process(c)) for name, c in commands.items()},
                        rounds)
    importtime = subprocess.run(base[:1] + ["-X", "importtime"] + base[1:] + ["check",
                                str(EXAMPLE)], env=process_environment(), capture_output=True,
                                text=True)
    modules = {line.rsplit("|", 1)[-1].strip().split(".")[0]
               for line in importtime.stderr.splitlines() if "|" in line}
    return {
        "times": times,
        "ratio_check_to_lark": times["rnnspec check examples/seed.rnn"]
        / times['python -c "import lark"'],
        "imports_torch_or_jinja2": sorted(modules & {"torch", "jinja2"}),
    }


def generation(rounds: int, spec: Path = ROOT / "examples" / "tagger.rnn") -> dict:
    compile_package()
    base = rnnspec_command()
    with tempfile.TemporaryDirectory() as folder:
        target = str(Path(folder) / "model.py")
        commands = {
            "check": base + ["check", str(spec)],
            "generate": base + ["generate", str(spec), "-o", target],
        }
        for command in commands.values():
            run_process(command)
        times = interleaved({n: (lambda c=c: run_process(c)) for n, c in commands.items()},
                            rounds)
    return {"times": times, "ratio_generate_to_check": times["generate"] / times["check"]}


WEIGHTS_SPEC = """stack Speech {
    input_size = 80
    encoder = lstm(hidden_size = 2048, num_layers = 4, bidirectional = true)
}
"""


def weights(rounds: int) -> dict:
    """`check --weights` on a safetensors checkpoint (1.4 GiB of tensors claimed on a sparse
    file: only its header is read) against `check` alone."""
    compile_package()
    base = rnnspec_command()
    sys.path.insert(0, str(ROOT))
    from rnnspec.check.checker import check_text
    sys.path.insert(0, str(ROOT / "tests"))
    from checkpoint_files import write_safetensors_header

    (stack,) = check_text(WEIGHTS_SPEC, "speech.rnn").stacks
    shapes = {f"model.encoder.{p.name}": p.shape for p in stack.blocks[0].parameters}
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "speech.rnn"
        spec.write_text(WEIGHTS_SPEC, encoding="utf-8")
        checkpoint = Path(folder) / "speech.safetensors"
        write_safetensors_header(str(checkpoint), shapes)
        commands = {
            "check": base + ["check", str(spec)],
            "check --weights": base + ["check", str(spec), "--weights", str(checkpoint)],
        }
        for command in commands.values():  # both must succeed: an error path is no figure
            subprocess.run(command, env=process_environment(), check=True,
                           stdout=subprocess.DEVNULL)
        times = interleaved({n: (lambda c=c: run_process(c)) for n, c in commands.items()},
                            rounds)
        size = checkpoint.stat().st_size
    return {"times": times, "bytes": size,
            "ratio_weights_to_check": times["check --weights"] / times["check"]}
