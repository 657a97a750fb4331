"""Fuzz rnnspec, one surface at a time (`--surface`, default `spec`):

- `spec`: random bytes, token soups and mutations of valid specs through `check`, the JSON
  report and `generate`. The only acceptable outcomes are a clean check, located
  diagnostics, or a not-UTF-8 report.
- `lsp`: byte streams of LSP sessions through the language server (scripts/fuzz_lsp.py):
  every readable request answered, no traceback, no hang.
- `checkpoint`: safetensors files with mutated headers (scripts/fuzz_checkpoint.py)
  through the reader, `check --weights`' comparison and `infer`: a result or a
  CheckpointError within 5 s.
- `output`: a writing command (generate, export, infer, draw, fmt) x a target (missing, its
  own output, a foreign file, a FIFO, a device, a folder, its own input, links to each) x
  --force (scripts/fuzz_output.py): exit 0 or 2 (1 for a spec with errors), no traceback,
  a refused target unchanged in bytes and type, a written one holding the whole output.

Anything else (an exception, an AssertionError of the surface's oracle, a hang) is saved
under `--out` as `crash-<hash><suffix>` or `hang-<hash><suffix>`, the suffix naming the
surface (`.rnn`, `.lsp`, `.safetensors`, `.output`), with a `.txt` beside it saying what went wrong.

    python scripts/fuzz.py --minutes 20                  # the long run
    python scripts/fuzz.py --surface lsp --minutes 10    # the language server
    python scripts/fuzz.py --minutes 1 --out crashes/    # where crashing inputs go
    python scripts/fuzz.py --replay crashes/             # run saved inputs again

`--replay` runs each saved input through the surface its suffix names (only `--surface`'s
files when it is given). A surface is a `make(rng) -> bytes` and an `exercise(data)` that
raises AssertionError (or OracleFailure) on a defect (`SURFACES`). The spec generators
and oracle are shared with tests/test_robustness.py, which drives them from hypothesis.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rnnspec.check.checker import check_text  # noqa: E402
from rnnspec.check.report import json_report, text_report  # noqa: E402
from rnnspec.language.diagnostics import Style, render  # noqa: E402
from rnnspec.language.source import SourceError, decode_source  # noqa: E402

TOKENS = [
    "let", "stack", "expect", "{", "}", "(", ")", "[", "]", "=", ",", "+", "-", "*", "//",
    "/", "_", "true", "false", "True", "lstm", "gru", "rnn", "lstn", "hidden_size",
    "num_layers", "input_size", "batch_first", "bidirectional", "dropout", "proj_size",
    "nonlinearity", "bias", "tanh", "relu", "input", "output", "h0", "c0", "h_n", "c_n",
    "0", "1", "2", "3", "20", "50", "0.5", "1.5", "1e999", "nan", "inf", "-1",
    "99999999999999999999999999999999", "1_000", "A", "Net", "H", "forward", "print",
    "torch", "__init__", "self", "class", "#c\n", "\n", "\t", " ", "\x00", "é", "м",
    "\ufeff", "\r", "\r\n", '"', "'", ";", ":", ".", "[0]", "[encoder]",
]


def _seeds() -> list[str]:
    folders = [ROOT / "examples", ROOT / "tests" / "cases", ROOT.parent / "shared" / "examples"]
    texts = []
    for folder in folders:
        for path in sorted(folder.glob("*.rnn")):
            try:
                texts.append(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                continue
    return texts


SEEDS = _seeds()


def random_bytes(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(200)))


def token_soup(rng: random.Random) -> bytes:
    count = rng.randrange(1, 80)
    glue = rng.choice([" ", "", "\n"])
    return glue.join(rng.choice(TOKENS) for _ in range(count)).encode("utf-8", "surrogatepass")


def mutate(rng: random.Random, text: str | None = None) -> bytes:
    """A valid spec with spans deleted, duplicated, swapped, inserted or numbers changed."""
    text = text if text is not None else rng.choice(SEEDS)
    for _ in range(rng.randrange(1, 5)):
        if not text:
            text = rng.choice(TOKENS)
        n = len(text)
        a, b = sorted(rng.randrange(n + 1) for _ in range(2))
        operation = rng.randrange(6)
        if operation == 0:
            text = text[:a] + text[b:]
        elif operation == 1:
            text = text[:b] + text[a:b] + text[b:]
        elif operation == 2:
            c, d = sorted(rng.randrange(n + 1) for _ in range(2))
            if b <= c:
                text = text[:a] + text[c:d] + text[b:c] + text[a:b] + text[d:]
        elif operation == 3:
            text = text[:a] + rng.choice(TOKENS) + text[a:]
        elif operation == 4:
            digits = [i for i, ch in enumerate(text) if ch.isdigit()]
            if digits:
                i = rng.choice(digits)
                text = text[:i] + rng.choice(["0", "-", "9" * rng.randrange(1, 600), "1e999",
                                              "0.5", "(", "1//0"]) + text[i + 1:]
        else:
            text = text[:a] + chr(rng.randrange(0x110000 if rng.random() < 0.2 else 128)) + text[a:]
    return text.encode("utf-8", "surrogatepass")


GENERATORS = {"bytes": random_bytes, "soup": token_soup, "mutation": mutate}


class OracleFailure(AssertionError):
    pass


def exercise(data: bytes, compile_generated: bool = True) -> str:
    """Run one input through every path; returns the outcome, raises on a defect."""
    from rnnspec import backends

    path = "fuzz.rnn"
    try:
        text = decode_source(data, path)
    except SourceError as exc:
        if exc.diagnostic.code != "E005" or exc.diagnostic.span is None:
            raise OracleFailure(f"bad not-UTF-8 report: {exc.diagnostic}") from None
        return "not-utf8"
    result = check_text(text, path)
    lines = text.split("\n")
    for diagnostic in result.diagnostics:
        span = diagnostic.span
        if span is None or not (1 <= span.line <= len(lines) and span.column >= 1):
            raise OracleFailure(f"diagnostic without a valid location: {diagnostic}")
        if (span.end_line, span.end_column) < (span.line, span.column):
            raise OracleFailure(f"span ends before it starts: {diagnostic}")
        render(diagnostic, {path: lines}, Style(True))
    json.loads(json_report([result]))
    text_report([result], Style(False))
    if not result.ok:
        return "errors"
    if compile_generated and result.stacks:
        for backend in backends.backends(backends.MODULE):
            source = backend.generate(result)
            compile(source, "<generated>", "exec")
    return "ok"


def make_spec(rng: random.Random) -> bytes:
    """One input of the `spec` surface, from a generator chosen at random."""
    return GENERATORS[rng.choice(list(GENERATORS))](rng)


def _from(module: str, name: str) -> Callable:
    """`name` of scripts/<module>.py, imported when first called (pygls, torch)."""

    def call(*args):
        import importlib

        scripts = str(Path(__file__).resolve().parent)
        if scripts not in sys.path:
            sys.path.insert(0, scripts)
        return getattr(importlib.import_module(module), name)(*args)

    call.__name__ = name
    return call


class Surface(NamedTuple):
    make: Callable[[random.Random], bytes]
    exercise: Callable[[bytes], object]  # raises on a defect; may return an outcome
    suffix: str  # of the saved inputs
    timeout: int  # seconds one input may take


SURFACES = {
    "spec": Surface(make_spec, exercise, ".rnn", 10),
    "lsp": Surface(_from("fuzz_lsp", "make"), _from("fuzz_lsp", "exercise"), ".lsp", 90),
    "checkpoint": Surface(_from("fuzz_checkpoint", "make"),
                          _from("fuzz_checkpoint", "exercise"), ".safetensors", 5),
    # 60 s: the first export of a run imports torch and onnx
    "output": Surface(_from("fuzz_output", "make"), _from("fuzz_output", "exercise"),
                      ".output", 60),
}


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def save(folder: Path, data: bytes, kind: str, detail: str, suffix: str = ".rnn") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:16]
    target = folder / f"{kind}-{digest}{suffix}"
    target.write_bytes(data)
    (folder / f"{kind}-{digest}.txt").write_text(detail, encoding="utf-8")
    return target


def run(minutes: float, out: Path, seed: int, surface: str = "spec") -> dict:
    chosen = SURFACES[surface]
    rng = random.Random(seed)
    deadline = time.monotonic() + minutes * 60
    counts = ({"inputs": 0, "ok": 0, "errors": 0, "not-utf8": 0} if surface == "spec"
              else {"inputs": 0, "ok": 0})
    counts.update(crashes=0, hangs=0)
    signal.signal(signal.SIGALRM, _alarm)
    while time.monotonic() < deadline:
        data = chosen.make(rng)
        counts["inputs"] += 1
        signal.alarm(chosen.timeout)
        try:
            outcome = chosen.exercise(data) or "ok"
            counts[outcome] = counts.get(outcome, 0) + 1
        except _Timeout:
            counts["hangs"] += 1
            target = save(out, data, "hang", "no answer in time", chosen.suffix)
            print(f"hang: saved {target}", flush=True)
        except Exception:  # noqa: BLE001 - every defect is a finding
            counts["crashes"] += 1
            target = save(out, data, "crash", traceback.format_exc(), chosen.suffix)
            print(f"crash: saved {target}", flush=True)
        finally:
            signal.alarm(0)
    return counts


def replay(folder: Path, surface: str | None = None) -> int:
    """Run the inputs saved in `folder` again, each through the surface of its suffix."""
    by_suffix = {s.suffix: s for name, s in SURFACES.items() if surface in (None, name)}
    failures = 0
    for path in sorted(p for p in folder.glob("*") if p.suffix in by_suffix):
        try:
            outcome = by_suffix[path.suffix].exercise(path.read_bytes()) or "ok"
            print(f"{path.name}: {outcome}")
        except Exception:  # noqa: BLE001
            failures += 1
            print(f"{path.name}: STILL FAILS\n{traceback.format_exc()}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=ROOT / "fuzz-crashes")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--replay", type=Path)
    parser.add_argument("--surface", choices=sorted(SURFACES),
                        help="what to fuzz (default: spec; with --replay: every surface)")
    args = parser.parse_args()
    if args.replay:
        return 1 if replay(args.replay, args.surface) else 0
    surface = args.surface or "spec"
    started = time.monotonic()
    counts = run(args.minutes, args.out, args.seed, surface)
    elapsed = time.monotonic() - started
    print(json.dumps({"surface": surface, "seed": args.seed, "seconds": round(elapsed), **counts,
                      "inputs_per_second": round(counts["inputs"] / elapsed, 1)}))
    return 1 if counts["crashes"] or counts["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
