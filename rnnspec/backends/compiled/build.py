"""Building and caching the compiled backend's C++ (imported by generated modules).

One shared library per generated module, built by the C++ compiler (`$CXX`, else `c++`)
against the headers and libraries of the torch that runs it, and kept in the user's cache
folder (`$RNNSPEC_COMPILED_CACHE`, else `<cache>/rnnspec/compiled-<version>`) under a key:
the sha256 of the source, rnnspec's and torch's versions and the compiler's flags. A
build runs in a temporary folder beside the cache entry and is renamed into place, so a
reader never sees a half-written library and two processes building at once both succeed
(the second rename loses, and that process loads the winner's). A later process loads the
library from the cache without running the compiler.

Where the library cannot be built or loaded (no compiler, a failing build, a cache folder
that cannot be written) `load_library` warns once, naming what failed, and returns None:
the module runs the explicit backend's Python loop.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings

from rnnspec.resources import VERSION

FLAGS = ("-O3", "-std=c++20", "-shared", "-fPIC", "-w", "-fno-math-errno", "-fno-trapping-math",
         "-fopenmp-simd")  # `omp simd` vectorises the one-row product's sums (no OpenMP runtime)
LIBRARY = "loops.so"
TIMEOUT = 600  # seconds a build may take

_LOADED: dict[str, object] = {}  # namespace -> torch.ops.<namespace> (None: failed)
_LOCK = threading.Lock()


class BuildError(Exception):
    """What failed, in a few words: `g++: not found`, the compiler's first error."""


def cache_root() -> str | None:
    """The folder of the built libraries (None: the user has no cache folder)."""
    folder = os.environ.get("RNNSPEC_COMPILED_CACHE")
    if folder:
        return folder
    from rnnspec.resources import cache_folder

    base = cache_folder()
    return None if base is None else os.path.join(base, f"compiled-{VERSION}")


_AVX512 = ("avx512f", "avx512dq", "avx512bw", "avx512vl")


def flags() -> tuple[str, ...]:
    """The compiler's flags: AVX2 and FMA where this CPU has them (the fused loops
    vectorise), and AVX-512 with 512-bit vectors where it has that too (measured on a Zen 5
    core: the LSTM's fused loops at B = 64, H = 512, 13 ms -> 10.5 ms per 100 steps). The
    cache key includes the flags, so a CPU without them never loads that library."""
    return FLAGS + _cpu_flags()


def _cpu_flags() -> tuple[str, ...]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            words = set(handle.read(200_000).split())
    except OSError:
        words = set()
    extra: tuple[str, ...] = ()
    if {"avx2", "fma"} <= words:
        extra = ("-mavx2", "-mfma")
        if set(_AVX512) <= words:
            extra += (*(f"-m{flag}" for flag in _AVX512), "-mprefer-vector-width=512")
    return extra


def compiler() -> str:
    return os.environ.get("CXX") or "c++"


def _command(cxx: str, source: str, output: str, options: tuple[str, ...]) -> list[str]:
    import torch
    from torch.utils import cpp_extension

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    includes = [f"-I{path}" for path in cpp_extension.include_paths()]
    libraries = cpp_extension.library_paths()
    return [
        cxx,
        *options,
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        *includes,
        source,
        "-o",
        output,
        *(f"-L{path}" for path in libraries),
        *(f"-Wl,-rpath,{path}" for path in libraries),
        "-lc10",
        "-ltorch_cpu",
    ]


def key(source: str) -> str:
    """The cache key of a source: it, rnnspec's and torch's versions and the compiler's
    flags (not the compiler's path: a library built once serves every later process)."""
    import torch

    text = "\0".join([source, VERSION, torch.__version__, *flags()])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def library_path(source: str) -> str:
    """The cached library of `source`, built now if the cache has none."""
    root = cache_root()
    if root is None:
        raise BuildError("no cache folder: set RNNSPEC_COMPILED_CACHE or XDG_CACHE_HOME")
    final = os.path.join(root, key(source))
    path = os.path.join(final, LIBRARY)
    if os.path.exists(path):
        return path
    cxx = compiler()
    found = shutil.which(cxx)
    if found is None:
        raise BuildError(f"{cxx}: not found")
    try:
        os.makedirs(root, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".build-", dir=root)
    except OSError as error:
        raise BuildError(f"cannot write the cache folder {root}: {error.strerror}") from None
    try:
        _compile(cxx, source, work)
        try:
            os.rename(work, final)  # atomic: the whole folder appears at once
        except OSError:
            if not os.path.exists(path):  # not another process's finished build
                raise
    except OSError as error:
        raise BuildError(f"cannot write the cache folder {root}: {error.strerror}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _compile(cxx: str, source: str, work: str) -> None:
    file = os.path.join(work, "loops.cpp")
    with open(file, "w", encoding="utf-8") as handle:
        handle.write(source)
    output = os.path.join(work, LIBRARY)
    done = _run(cxx, _command(cxx, file, output, flags()))
    text = done.stderr + done.stdout
    if done.returncode != 0 and any(flag in text for flag in _cpu_flags()):
        done = _run(cxx, _command(cxx, file, output, FLAGS))  # a compiler without them
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()] or lines
        first = errors[0].strip() if errors else f"exit status {done.returncode}"
        raise BuildError(f"{cxx} failed: {first[:300]}")


def _run(cxx: str, command: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{cxx}: no result after {TIMEOUT} s") from None
    except OSError as error:
        raise BuildError(f"{cxx}: {error.strerror}") from None


def load_library(source: str, namespace: str):
    """torch.ops.<namespace>, its library built or taken from the cache; None after one
    warning (per namespace and process) where that fails."""
    with _LOCK:
        if namespace in _LOADED:
            return _LOADED[namespace]
        import torch

        ops = None
        try:
            path = library_path(source)
            try:
                torch.ops.load_library(path)
            except (OSError, RuntimeError) as error:
                raise BuildError(f"cannot load {path}: {str(error).splitlines()[0]}") from None
            ops = getattr(torch.ops, namespace)
        except BuildError as error:
            warnings.warn(
                f"compiled backend: cannot build the C++ loops ({error}); running "
                "the explicit backend",
                RuntimeWarning,
                stacklevel=4,
            )
        _LOADED[namespace] = ops
        return ops
