"""One output-path guard for every command that writes (issue 19): `generate -o`, `export
-o`, `infer -o`, `draw -o` and `fmt` in place. Regular files only: a FIFO, a device, a
folder, a symbolic link to nothing and the command's own input are refused with exit 2 and
a one-line message naming the path and what it is, `--force` or not; a regular file
rnnspec did not write is refused unless `--force`; a symbolic link is followed (the link
stays, the file it names is checked and replaced). Every run is a child process
(`cli_process`) with a timeout, so a command that opens a FIFO fails the test instead of
hanging it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cli_process
import pytest
from checkpoint_files import write_safetensors_header

SPEC = "stack s {\n    input_size = 4\n    lstm(hidden_size = 8)\n}\n"
FOREIGN = b"hand-written notes\n\x00\xff not rnnspec's\n"
TIMEOUT = 120  # seconds: a hang fails the test
CHECKPOINT = {"lstm.weight_ih_l0": (32, 4), "lstm.weight_hh_l0": (32, 8),
              "lstm.bias_ih_l0": (32,), "lstm.bias_hh_l0": (32,)}


def rnnspec(*args, timeout=TIMEOUT):
    return cli_process.run(*args, timeout=timeout)


def inputs(folder: Path) -> dict[str, Path]:
    """The spec and the checkpoint the commands read, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    spec, checkpoint = folder / "s.rnn", folder / "lstm.safetensors"
    spec.write_text(SPEC)
    write_safetensors_header(str(checkpoint), CHECKPOINT)
    return {"spec": spec, "checkpoint": checkpoint}


# the writing commands: their arguments for an output `out`, and the input they read
COMMANDS = {
    "generate": (lambda i, out: ["generate", i["spec"], "-o", out], "spec"),
    "export": (lambda i, out: ["export", i["spec"], "-o", out], "spec"),
    "infer": (lambda i, out: ["infer", i["checkpoint"], "-o", out], "checkpoint"),
    "draw": (lambda i, out: ["draw", i["spec"], "-o", out], "spec"),
}


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> dict[str, bytes]:
    """Each command's complete output, written to a new file."""
    folder = tmp_path_factory.mktemp("expected")
    given = inputs(folder)
    outputs = {}
    for name, (argv, _) in COMMANDS.items():
        out = folder / f"first.{name}"
        done = rnnspec(*argv(given, out))
        assert done.returncode == 0, (name, done.stderr)
        outputs[name] = out.read_bytes()
    return outputs


def kind(path: Path) -> str:
    """What `path` is, without following a final symbolic link."""
    mode = os.lstat(path).st_mode
    for test, name in [(stat.S_ISLNK, "link"), (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "char"),
                       (stat.S_ISBLK, "block"), (stat.S_ISDIR, "folder"),
                       (stat.S_ISREG, "file"), (stat.S_ISSOCK, "socket")]:
        if test(mode):
            return name
    return "other"


def device_copy(path: Path) -> Path:
    """A character device like /dev/null at `path` (mknod: root only, else a skip)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot mknod here: {exc}")
    return path


# A process that may write /dev (root) would replace the machine's /dev/null itself should
# the guard regress: there the tests use a copy made with mknod instead.
DEV_WRITABLE = os.access("/dev", os.W_OK)


def null_device(folder: Path) -> Path:
    """/dev/null, or where replacing it is possible, a copy of it in `folder`."""
    return device_copy(folder / "null") if DEV_WRITABLE else Path("/dev/null")


def refused(done, path, *words):
    """Exit 2, no traceback, one error line naming `path` and saying what it is."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, done.stderr
    assert f"`{path}`" in errors[0], errors[0]
    for word in words:
        assert word in errors[0], errors[0]


# ----------------------------------------------------------------------------- every command


@pytest.fixture(params=sorted(COMMANDS))
def command(request, tmp_path):
    argv, own = COMMANDS[request.param]
    given = inputs(tmp_path)
    return request.param, (lambda out, *extra: rnnspec(*argv(given, out), *extra)), given[own]


def test_a_new_file_gets_the_whole_output(command, tmp_path, expected):
    name, run, _ = command
    out = tmp_path / "new.out"
    done = run(out)
    assert done.returncode == 0, done.stderr
    assert kind(out) == "file" and out.read_bytes() == expected[name]


def test_its_own_earlier_output_is_replaced(command, tmp_path, expected):
    name, run, _ = command
    out = tmp_path / "again.out"
    out.write_bytes(expected[name])
    inode = out.stat().st_ino
    done = run(out)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == expected[name]
    assert out.stat().st_ino != inode  # a new file renamed into place, not rewritten


def test_a_foreign_file_is_refused_then_replaced_with_force(command, tmp_path, expected):
    name, run, _ = command
    out = tmp_path / "notes.out"
    out.write_bytes(FOREIGN)
    refused(run(out), out, "refusing to overwrite", "--force")
    assert out.read_bytes() == FOREIGN
    done = run(out, "--force")
    assert done.returncode == 0, done.stderr
    assert kind(out) == "file" and out.read_bytes() == expected[name]


def test_a_fifo_is_refused_without_being_opened(command, tmp_path):
    _, run, _ = command
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for extra in ([], ["--force"]):
        refused(run(fifo, *extra), fifo, "FIFO")
        assert kind(fifo) == "fifo"


@pytest.mark.skipif(DEV_WRITABLE, reason="this process may write /dev: a regression would "
                    "replace the machine's /dev/null; the mknod copy's test covers it")
def test_dev_null_itself_is_refused_and_stays_a_device(command):
    _, run, _ = command
    for extra in ([], ["--force"]):
        refused(run("/dev/null", *extra), "/dev/null", "character device")
        assert kind(Path("/dev/null")) == "char"


def test_a_copy_of_a_device_is_refused_and_stays_a_device(command, tmp_path):
    _, run, _ = command
    node = device_copy(tmp_path / "null")
    for extra in ([], ["--force"]):
        refused(run(node, *extra), node, "character device")
        assert kind(node) == "char"


def test_a_folder_is_refused(command, tmp_path):
    _, run, _ = command
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "inside").write_bytes(FOREIGN)
    for extra in ([], ["--force"]):
        refused(run(folder, *extra), folder, "folder")
        assert kind(folder) == "folder" and os.listdir(folder) == ["inside"]


def test_its_own_input_is_refused_even_with_force(command):
    _, run, own = command
    before = own.read_bytes()
    for extra in ([], ["--force"]):
        refused(run(own, *extra), own, "own input")
        assert own.read_bytes() == before and kind(own) == "file"


def test_a_missing_folder_is_refused(command, tmp_path):
    _, run, _ = command
    out = tmp_path / "no" / "such" / "out"
    refused(run(out), out, "does not exist")
    assert not (tmp_path / "no").exists()


# ----------------------------------------------------------------------------- symbolic links


def test_a_link_to_a_fifo_or_a_device_is_refused(command, tmp_path):
    _, run, _ = command
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target, what, was in [(fifo, "FIFO", "fifo"),
                              (null_device(tmp_path), "character device", "char")]:
        link = tmp_path / f"link-{was}"
        link.symlink_to(target)
        for extra in ([], ["--force"]):
            refused(run(link, *extra), link, "symbolic link", what)
            assert kind(link) == "link" and kind(target) == was


def test_a_link_to_a_foreign_file_is_followed_only_with_force(command, tmp_path, expected):
    name, run, _ = command
    target, link = tmp_path / "notes.txt", tmp_path / "link.out"
    target.write_bytes(FOREIGN)
    link.symlink_to(target)
    refused(run(link), link, "refusing to overwrite")
    assert target.read_bytes() == FOREIGN and kind(link) == "link"
    done = run(link, "--force")
    assert done.returncode == 0, done.stderr
    assert kind(link) == "link" and target.read_bytes() == expected[name]


def test_a_link_to_its_own_output_replaces_the_file_it_names(command, tmp_path, expected):
    name, run, _ = command
    target, link = tmp_path / "real.out", tmp_path / "link.out"
    target.write_bytes(expected[name])
    link.symlink_to(target)
    done = run(link)
    assert done.returncode == 0, done.stderr
    assert kind(link) == "link" and os.readlink(link) == str(target)
    assert target.read_bytes() == expected[name]


def test_a_link_to_a_folder_nothing_or_its_input_is_refused(command, tmp_path):
    _, run, own = command
    folder = tmp_path / "folder"
    folder.mkdir()
    before = own.read_bytes()
    for target, what in [(folder, "folder"), (tmp_path / "nowhere", "does not exist"),
                         (own, "own input")]:
        link = tmp_path / f"link-{target.name}"
        link.symlink_to(target)
        for extra in ([], ["--force"]):
            refused(run(link, *extra), link, what)
            assert kind(link) == "link"
    assert not (tmp_path / "nowhere").exists() and own.read_bytes() == before


def test_export_refuses_its_weights_and_infer_its_cells(tmp_path):
    given = inputs(tmp_path)
    torch = pytest.importorskip("torch")
    weights = tmp_path / "w.pt"
    torch.save(torch.nn.LSTM(4, 8).state_dict(), weights)
    before = weights.read_bytes()
    done = rnnspec("export", given["spec"], "--weights", weights, "-o", weights, "--force")
    refused(done, weights, "own input")
    assert weights.read_bytes() == before
    cells = tmp_path / "cells.rnn"
    cells.write_text("# no cells\n")
    done = rnnspec("infer", given["checkpoint"], "--cells", cells, "-o", cells, "--force")
    refused(done, cells, "own input")
    assert cells.read_text() == "# no cells\n"


# ----------------------------------------------------------------------------- fmt in place

UNFORMATTED = "stack s {\ninput_size=4\n    lstm(hidden_size=8)\n}\n"


def test_fmt_refuses_a_fifo_and_a_device_without_reading_them(tmp_path):
    fifo = tmp_path / "pipe.rnn"
    os.mkfifo(fifo)
    refused(rnnspec("fmt", fifo), fifo, "FIFO")
    null = null_device(tmp_path)
    refused(rnnspec("fmt", null), null, "character device")
    assert kind(fifo) == "fifo" and kind(null) == "char"
    link = tmp_path / "link.rnn"
    link.symlink_to(fifo)
    refused(rnnspec("fmt", link), link, "FIFO")
    assert kind(link) == "link" and kind(fifo) == "fifo"


def test_fmt_refuses_a_copy_of_a_device(tmp_path):
    node = device_copy(tmp_path / "null.rnn")
    refused(rnnspec("fmt", node), node, "character device")
    assert kind(node) == "char"


def test_fmt_through_a_link_rewrites_the_file_and_keeps_the_link(tmp_path):
    target, link = tmp_path / "real.rnn", tmp_path / "link.rnn"
    target.write_text(UNFORMATTED)
    target.chmod(0o640)
    link.symlink_to(target)
    done = rnnspec("fmt", link)
    assert done.returncode == 0, done.stderr
    assert kind(link) == "link" and os.readlink(link) == str(target)
    assert target.read_text() == SPEC and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_fmt_of_a_folder_is_an_error(tmp_path):
    folder = tmp_path / "specs.rnn"
    folder.mkdir()
    done = rnnspec("fmt", folder)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"`{folder}`" in done.stderr and kind(folder) == "folder"


# ----------------------------------------------------------------------------- spec inputs
# Every command that reads a spec reads a regular file only: a FIFO with no writer would
# block the open forever and a device never ends, so both are refused before any open.

SPEC_READERS = {
    "check": lambda spec, files: ["check", spec],
    "generate": lambda spec, files: ["generate", spec],
    "draw": lambda spec, files: ["draw", spec],
    "fmt": lambda spec, files: ["fmt", "--check", spec],
    "export": lambda spec, files: ["export", spec, "-o", files["spec"].parent / "o.onnx"],
    "infer --cells": lambda spec, files: ["infer", files["checkpoint"], "--cells", spec],
}


@pytest.mark.parametrize("command", sorted(SPEC_READERS))
@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_spec_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path, command,
                                                                       kind):
    files = inputs(tmp_path / "in")
    if kind == "fifo":
        spec = tmp_path / "pipe.rnn"
        os.mkfifo(spec)
        named = "FIFO"
    elif kind == "device":
        spec, named = Path("/dev/zero"), "device"
    else:
        spec, named = tmp_path / "folder.rnn", "directory"
        spec.mkdir()
    run = rnnspec(*SPEC_READERS[command](spec, files), timeout=60)
    output = run.stdout + run.stderr
    assert run.returncode == 2, output
    assert str(spec) in output and named in output, output
    assert "Traceback" not in output
    if kind == "fifo":
        assert stat.S_ISFIFO(os.stat(spec).st_mode)
