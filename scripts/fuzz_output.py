"""Fuzz the output paths: a random writing command (`generate -o`, `export -o`, `infer -o`,
`draw -o`, `fmt` in place) x a random target (missing, its own earlier output, a foreign
file, a FIFO, /dev/null, a copy of a device, a folder, a missing folder, the command's own
input, a symbolic link to any of these or to nothing) x a random `--force`, run in process
through `rnnspec.cli.main`.

The oracle: an exit status in {0, 2}, or 1 where the spec has errors; no exception and no
traceback on stderr; a refusal says so in one error line naming the path; a target that
must not be written (a foreign file without --force, a FIFO, a device, a folder, the
input) keeps its bytes and its file type, and a symbolic link stays a link; an allowed
target holds the command's complete output (as written to a new file). The time limit is
`scripts/fuzz.py`'s (SIGALRM: a FIFO opened for reading would block, and the alarm ends
it as a hang).

`make(rng)` and `exercise(data)` are the surface `scripts/fuzz.py --surface output` drives;
an input is a small JSON document naming the command, the target, --force and the spec.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import random
import shutil
import stat
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SPECS = {
    "lstm": "stack s {\n    input_size = 4\n    lstm(hidden_size = 8)\n}\n",
    "unformatted": "stack s {\ninput_size=4\n    gru(hidden_size=8,num_layers=2)\n}\n",
    "error": "stack s {\n    input_size = 4\n    lstm(hiden_size = 8)\n}\n",
}
FOREIGN = b"hand-written\n\x00\xff\n"
CHECKPOINT = {"lstm.weight_ih_l0": (32, 4), "lstm.weight_hh_l0": (32, 8),
              "lstm.bias_ih_l0": (32,), "lstm.bias_hh_l0": (32,)}
COMMANDS = ["generate", "export", "infer", "draw", "fmt"]
# what the target is; `link-X`: a symbolic link to an X
TARGETS = ["missing", "own", "foreign", "fifo", "devnull", "device", "folder", "no-folder",
           "input", "link-own", "link-foreign", "link-fifo", "link-devnull", "link-folder",
           "link-input", "link-nothing"]
FMT_TARGETS = ["input", "fifo", "devnull", "device", "folder", "link-input", "link-fifo",
               "link-devnull", "link-nothing", "missing"]
# targets written whatever --force says, and those written only with it
ALLOWED = {"missing", "own", "link-own"}
ALLOWED_WITH_FORCE = {"foreign", "link-foreign"}


# /dev/null itself where this process cannot replace it; else (root) a copy made in the
# case's folder, so that a defect found is never the machine's /dev/null replaced
DEV_NULL = Path("/dev/null") if not os.access("/dev", os.W_OK) else None


class OracleFailure(AssertionError):
    pass


def make(rng: random.Random) -> bytes:
    command = rng.choice(COMMANDS)
    target = rng.choice(FMT_TARGETS if command == "fmt" else TARGETS)
    spec = rng.choices(list(SPECS), weights=[3, 2, 1])[0]
    return json.dumps({"command": command, "target": target, "force": rng.random() < 0.5,
                       "spec": spec}).encode()


def _argv(case: dict, out: str) -> list[str]:
    force = ["--force"] if case["force"] and case["command"] != "fmt" else []
    return {
        "generate": ["generate", "s.rnn", "-o", out],
        "export": ["export", "s.rnn", "-o", out],
        "infer": ["infer", "lstm.safetensors", "-o", out],
        "draw": ["draw", "s.rnn", "-o", out],
        "fmt": ["fmt", out],
    }[case["command"]] + force


def _input_name(command: str) -> str:
    return "lstm.safetensors" if command == "infer" else "s.rnn"


def _inputs(folder: Path, spec: str) -> None:
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    from checkpoint_files import write_safetensors_header

    (folder / "s.rnn").write_text(SPECS[spec])
    write_safetensors_header(str(folder / "lstm.safetensors"), CHECKPOINT)


def _main(argv: list[str]) -> tuple[int, str]:
    """`rnnspec ARGV` in process: its exit status and stderr (stdout is dropped)."""
    from rnnspec.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse
            status = exc.code if isinstance(exc.code, int) else 2
    return status, err.getvalue()


@contextlib.contextmanager
def _folder():
    """A fresh folder, the current directory while the command runs (names stay short and
    the outputs, which name their inputs, comparable)."""
    folder = Path(tempfile.mkdtemp(prefix="rnnspec-fuzz-output-"))
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(before)
        shutil.rmtree(folder, ignore_errors=True)


@functools.cache
def expected(command: str, spec: str) -> tuple[int, bytes | None]:
    """The exit status of `command` writing a new file, and the file it writes."""
    with _folder() as folder:
        _inputs(folder, spec)
        if command == "fmt":
            status, _ = _main(["fmt", "s.rnn"])
            return status, (folder / "s.rnn").read_bytes()
        status, _ = _main(_argv({"command": command, "force": False}, "new.out"))
        out = folder / "new.out"
        return status, out.read_bytes() if out.exists() else None


def _device(path: Path) -> bool:
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return True
    except OSError:
        return False


def _place(folder: Path, case: dict) -> tuple[str, Path]:
    """Build the target in `folder`: the path the command is given, and what it names."""
    command, target = case["command"], case["target"]
    what = target.removeprefix("link-")
    named = {
        "missing": folder / "new.out", "own": folder / "own.out",
        "foreign": folder / "notes.txt", "fifo": folder / "pipe",
        "devnull": DEV_NULL or folder / "null", "device": folder / "null",
        "folder": folder / "folder", "no-folder": folder / "no" / "out",
        "input": folder / _input_name(command), "nothing": folder / "nowhere",
    }[what]
    if what == "own":
        status, data = expected(command, case["spec"])
        if data is None:
            named.write_bytes(FOREIGN)  # the spec has errors: nothing of ours to have
        else:
            named.write_bytes(data)
    elif what == "foreign":
        named.write_bytes(FOREIGN)
    elif what == "fifo":
        os.mkfifo(named)
    elif what in ("device", "devnull") and named != DEV_NULL and not _device(named):
        os.mkfifo(named)  # mknod not allowed here: a FIFO instead
    elif what == "folder":
        named.mkdir()
        (named / "inside").write_bytes(FOREIGN)
    if target.startswith("link-"):
        link = folder / "link.out"
        link.symlink_to(named)
        return str(link), named
    return str(named), named


def _snapshot(path: Path):
    """The type and the contents (bytes, a folder's listing) of `path`; None if missing."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return ("file", path.read_bytes())
    if stat.S_ISDIR(mode):
        return ("folder", sorted(os.listdir(path)))
    if stat.S_ISLNK(mode):
        return ("link", os.readlink(path))
    return (stat.S_IFMT(mode), os.lstat(path).st_rdev)


def exercise(data: bytes) -> str:
    """Run one case; its outcome ("written", "refused", "errors"), or OracleFailure."""
    case = json.loads(data)
    command, target, force = case["command"], case["target"], case["force"]
    with _folder() as folder:
        _inputs(folder, case["spec"])
        given, named = _place(folder, case)
        before = {p: _snapshot(p) for p in (Path(given), named)}
        status, err = _main(_argv(case, given))
        if "Traceback" in err:
            raise OracleFailure(f"a traceback on stderr:\n{err}")
        spec_errors = expected(command, case["spec"])[0] == 1
        allowed_status = {0, 2, 1} if spec_errors else {0, 2}
        if status not in allowed_status:
            raise OracleFailure(f"exit status {status}:\n{err}")
        what = target.removeprefix("link-")
        if command == "fmt":
            allowed = what == "input"
        else:
            allowed = target in ALLOWED or (force and target in ALLOWED_WITH_FORCE)
        after = {p: _snapshot(p) for p in before}
        if target.startswith("link-") and after[Path(given)] != before[Path(given)]:
            raise OracleFailure(f"the link `{given}` changed: {after[Path(given)]}")
        if status == 0 and not allowed:
            raise OracleFailure(f"exit 0 writing `{given}` ({target}, force={force})")
        if status == 2 and allowed and not spec_errors:
            raise OracleFailure(f"refused an allowed target ({target}, force={force}):\n{err}")
        if status == 0:
            if command == "fmt":
                want = expected("fmt", case["spec"])[1]
            else:
                want = expected(command, case["spec"])[1]
            if after[named] != ("file", want):
                raise OracleFailure(f"`{named}` does not hold the whole output: "
                                    f"{str(after[named])[:200]}")
            return "written"
        if after[named] != before[named] and not (status == 0 and allowed):
            raise OracleFailure(f"`{named}` changed although exit {status}: "
                                f"{str(before[named])[:100]} -> {str(after[named])[:100]}")
        if status == 2:
            errors = [line for line in err.splitlines() if "error" in line]
            if not errors or not any(given in line for line in errors):
                raise OracleFailure(f"a refusal that does not name `{given}`:\n{err}")
            return "refused"
        return "errors"


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for _ in range(args.count):
        data = make(rng)
        print(data.decode(), exercise(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
