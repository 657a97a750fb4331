"""The tests' fast CLI runner (`cli_process.run`) behaves as `python -m rnnspec` in a
subprocess does: the same status, stdout and stderr, and a hang is killed at the timeout."""

from __future__ import annotations

import os
import subprocess
import sys

import cli_process
import pytest
from conftest import ROOT

SEED = ROOT / "examples" / "seed.rnn"


def real(*args, input=None):
    return subprocess.run([sys.executable, "-m", "rnnspec", *map(str, args)], input=input,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"})


@pytest.mark.parametrize("args", [("check", SEED), ("check", "--json", SEED),
                                  ("check", "no-such-file.rnn"), ("check",), ("--version",),
                                  ("generate", SEED, "--backend", "nope")])
def test_the_same_status_and_output_as_a_subprocess(args):
    fast, slow = cli_process.run(*args, env={"NO_COLOR": "1"}), real(*args)
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        slow.returncode, slow.stdout, slow.stderr)


def test_stdin_cwd_and_environment_reach_the_child(tmp_path):
    (tmp_path / "s.rnn").write_text(SEED.read_text())
    done = cli_process.run("fmt", "-", input=SEED.read_text(), cwd=tmp_path)
    assert done.returncode == real("fmt", "-", input=SEED.read_text()).returncode
    assert cli_process.run("check", "s.rnn", cwd=tmp_path).returncode == 0
    bad = tmp_path / "bad.rnn"
    bad.write_text("stack A {\n    input_size = 3\n    lstm(hidden_size = 0)\n}\n")
    always = cli_process.run("check", bad, "--color", "always").stdout
    assert "\x1b[" in always  # the control: colour does show in the captured output
    told = cli_process.run("check", bad, "--color", "auto", env={"NO_COLOR": "1"})
    assert told.returncode == 1 and "\x1b[" not in told.stdout + told.stderr


def test_a_child_that_hangs_is_killed_at_the_timeout(tmp_path):
    fifo = tmp_path / "stdin"
    os.mkfifo(fifo)  # opening it for reading blocks: nobody writes
    with pytest.raises(subprocess.TimeoutExpired):
        cli_process.run("fmt", "-", stdin=fifo, timeout=1)
    assert cli_process.run("check", SEED).returncode == 0  # the server goes on
