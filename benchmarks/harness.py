"""Timing helpers shared by the benchmarks: interleaved repeats, medians, the machine."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def median(values) -> float:
    return statistics.median(values)


def interleaved(functions: dict, rounds: int, min_seconds: float = 0.0) -> dict[str, float]:
    """Median seconds of each function (see `interleaved_samples`)."""
    samples = interleaved_samples(functions, rounds, min_seconds)
    return {name: median(values) for name, values in samples.items()}


def noise(samples: list[float]) -> float:
    """An A/A ratio: the median of the even rounds over the odd ones of one contender.

    It shows how far two medians of the very same computation drift apart on this
    machine, so a ratio between contenders can be read against it.
    """
    if len(samples) < 2:
        return 1.0
    return median(samples[0::2]) / median(samples[1::2])


def interleaved_samples(functions: dict, rounds: int, min_seconds: float = 0.0) -> dict:
    """Seconds of each call, calling the functions in turn for at least `rounds` rounds
    and, when `min_seconds` is given, for as many more as fill that time (fast contenders
    get hundreds of rounds, so their medians are stable on a noisy machine).

    Interleaving spreads any drift of the machine (another process, frequency changes)
    over every contender equally, so the ratios measured in one run are fair.
    """
    samples: dict[str, list[float]] = {name: [] for name in functions}
    order = list(functions.items())
    started = time.perf_counter()
    round_number = 0
    while round_number < rounds or time.perf_counter() - started < min_seconds:
        # ABBA order: whatever the previous call leaves behind (caches, allocator state)
        # falls on every contender alike
        for name, function in order if round_number % 2 == 0 else reversed(order):
            began = time.perf_counter()
            function()
            samples[name].append(time.perf_counter() - began)
        round_number += 1
    return samples


def process_environment() -> dict:
    """The environment for timed processes: bytecode caching on, as on a user's machine."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["NO_COLOR"] = "1"
    return env


def compile_package() -> None:
    """Write rnnspec's .pyc files (an installed wheel has them; a checkout may not)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "rnnspec")],
                   env=process_environment(), check=True, stdout=subprocess.DEVNULL)


def run_process(command: list[str], cwd=None) -> None:
    subprocess.run(command, cwd=cwd, env=process_environment(), check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch"] = "not installed"
    import lark

    info["lark"] = lark.__version__
    return info
