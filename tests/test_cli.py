"""The command line as a user runs it: exit statuses, output forms, colour, speed rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SHARED_EXAMPLES

EXAMPLE = ROOT / "examples" / "seed.rnn"


def rnnspec(*args, cwd=None, env=None, input=None):
    environment = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "rnnspec", *map(str, args)], cwd=cwd,
                          env=environment, capture_output=True, text=True, input=input,
                          timeout=120)


def test_check_ok_exits_0():
    run = rnnspec("check", EXAMPLE)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SeedLSTM" in run.stdout and "34,800" in run.stdout
    assert "KiB in float32" in run.stdout


def check_text(tmp_path, text: str):
    """Write `text` to a spec file and run `rnnspec check` on it: (file, finished process)."""
    spec = tmp_path / "spec.rnn"
    spec.write_text(text)
    return spec, rnnspec("check", spec)


def test_check_errors_exit_1(tmp_path):
    spec, run = check_text(tmp_path, "stack A {\n    input_size = 3\n"
                                     "    lstm(hidden_size = 0)\n}\n")
    assert run.returncode == 1
    assert f"{spec}:3:24: error[E021]" in run.stdout
    assert "^" in run.stdout


def test_warnings_alone_exit_0(tmp_path):
    _, run = check_text(tmp_path, "stack A {\n    input_size = 3\n"
                                  "    lstm(hidden_size = 4, dropout = 0.2)\n}\n")
    assert run.returncode == 0
    assert "warning[W001]" in run.stdout


@pytest.mark.parametrize("content", [None, b"stack \xff {}"])
def test_io_problems_exit_2(tmp_path, content):
    spec = tmp_path / "x.rnn"
    if content is not None:
        spec.write_bytes(content)
    run = rnnspec("check", spec)
    assert run.returncode == 2
    assert "Traceback" not in run.stdout + run.stderr
    assert ("E005" if content else "E006") in run.stdout


def test_non_utf8_names_the_byte_offset(tmp_path):
    spec = tmp_path / "x.rnn"
    spec.write_bytes(b"let A = 1\nlet B = \xfe\n")
    run = rnnspec("check", "--json", spec)
    assert run.returncode == 2
    (diagnostic,) = json.loads(run.stdout)["diagnostics"]
    assert diagnostic["code"] == "E005" and "offset 18" in diagnostic["message"]
    assert (diagnostic["line"], diagnostic["column"]) == (2, 9)


def test_usage_problems_exit_2():
    assert rnnspec().returncode == 2
    assert rnnspec("check").returncode == 2
    assert rnnspec("frobnicate", EXAMPLE).returncode == 2
    assert rnnspec("check", "--backend", "x", EXAMPLE).returncode == 2


def test_several_files_worst_status_wins(tmp_path):
    bad = tmp_path / "bad.rnn"
    bad.write_text("stack A { }")
    assert rnnspec("check", EXAMPLE, bad).returncode == 1
    assert rnnspec("check", EXAMPLE, bad, tmp_path / "missing.rnn").returncode == 2


def test_json_document_shape(tmp_path):
    run = rnnspec("check", "--json", EXAMPLE)
    assert run.returncode == 0
    document = json.loads(run.stdout)
    assert set(document) == {"ok", "diagnostics", "stacks", "expectations"}
    assert document["ok"] is True
    stack = next(s for s in document["stacks"] if s["name"] == "SeedLSTM")
    assert stack["parameter_count"] == 34800 and stack["blocks"][0]["name"] == "lstm0"


def test_json_on_errors_is_still_one_document(tmp_path):
    spec = tmp_path / "bad.rnn"
    spec.write_text("stack A {\n  input_size = 3\n  lstm(hidden_size = 4)\n}\n"
                    "expect A {\n  input = [5, 2, 4]\n}\n")
    run = rnnspec("check", "--json", spec)
    assert run.returncode == 1
    document = json.loads(run.stdout)
    assert document["ok"] is False
    (diagnostic,) = document["diagnostics"]
    assert diagnostic["code"] == "E044" and diagnostic["line"] == 6
    assert document["expectations"] == [
        {"stack": "A", "path": str(spec), "line": 5, "ok": False, "bindings": {}}]


def test_colour_only_when_asked_or_on_a_terminal(tmp_path):
    spec = tmp_path / "bad.rnn"
    spec.write_text("stack A { }")
    assert "\x1b[" not in rnnspec("check", spec).stdout  # not a terminal
    assert "\x1b[" in rnnspec("check", "--color", "always", spec).stdout
    assert "\x1b[" not in rnnspec("check", "--color", "never", spec).stdout


def test_no_color_is_honoured_on_a_terminal(tmp_path):
    """Under a pseudo-terminal colour is on by default, and off when NO_COLOR is set."""
    pytest.importorskip("pty")
    spec = tmp_path / "bad.rnn"
    spec.write_text("stack A { }")

    def on_terminal(no_color: bool) -> str:
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        env["TERM"] = "xterm"
        if no_color:
            env["NO_COLOR"] = "1"
        script = ("import pty, sys; pty.spawn([sys.executable, '-m', 'rnnspec', "
                  f"'check', {str(spec)!r}])")
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env,
                             timeout=60)
        return run.stdout.decode(errors="replace")

    assert "\x1b[" in on_terminal(no_color=False)
    assert "\x1b[" not in on_terminal(no_color=True)


WATCH_IMPORTS = """
import sys
from rnnspec.cli import main
main(["check", "--json", sys.argv[1]])
main(["check", sys.argv[1]])
loaded = [m for m in ("torch", "jinja2") if m in sys.modules]
sys.stderr.write("LOADED:" + ",".join(loaded))
"""


def test_check_path_never_imports_torch_or_jinja():
    run = subprocess.run([sys.executable, "-c", WATCH_IMPORTS, str(EXAMPLE)],
                         capture_output=True, text=True, timeout=60)
    assert run.stderr.strip().endswith("LOADED:"), run.stderr


def test_importtime_shows_neither_torch_nor_jinja():
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "rnnspec", "check", EXAMPLE],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    modules = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if "|" in line}
    assert "lark" in modules
    assert not any(m.split(".")[0] in ("torch", "jinja2") for m in modules)


def test_seed_mistake_is_reported_at_line_10():
    path = SHARED_EXAMPLES / "seed_mistake.rnn"
    if not path.exists():
        pytest.skip("../shared/examples missing")
    run = rnnspec("check", path.name, cwd=path.parent)
    assert run.returncode == 1
    assert "seed_mistake.rnn:10:" in run.stdout
    line = next(x for x in run.stdout.splitlines() if "seed_mistake.rnn:10:" in x)
    assert "30" in line and "20" in line


def test_version():
    run = rnnspec("--version")
    assert run.returncode == 0 and run.stdout.startswith("rnnspec ")


@pytest.mark.parametrize("cache", ["unwritable", "corrupt"])
def test_parser_cache_problems_never_break_a_check(tmp_path, cache):
    """The parser cache lives in the user's cache folder; when it cannot be written, or
    holds garbage, the parser is simply built again."""
    if cache == "unwritable":
        home = tmp_path / "a-file"
        home.write_text("not a folder")
    else:
        home = tmp_path / "cache"
        assert rnnspec("check", EXAMPLE, env={"XDG_CACHE_HOME": str(home)}).returncode == 0
        written = list((home / "rnnspec").glob("parser-*.lark.cache"))
        assert len(written) == 1, written
        written[0].write_bytes(b"\x80\x04garbage")
    run = rnnspec("check", EXAMPLE, env={"XDG_CACHE_HOME": str(home)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SeedLSTM" in run.stdout


def test_a_folder_given_as_spec_is_an_io_problem(tmp_path):
    run = rnnspec("check", tmp_path)
    assert run.returncode == 2 and "E006" in run.stdout


NO_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'")
sys.meta_path.insert(0, _NoTorch())
from rnnspec.cli import entry
sys.argv = ["rnnspec", "check", "--verify", sys.argv[1]]
entry()
"""


def test_check_verify_without_torch_is_a_usage_hint():
    """Without torch `check --verify` answers like `export`: one line and exit 2, not a
    ModuleNotFoundError traceback with exit 1 (which means "the spec has errors")."""
    run = subprocess.run([sys.executable, "-c", NO_TORCH, str(ROOT / "examples" / "tagger.rnn")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == "error: --verify needs torch: pip install 'rnnspec[torch]'"


@pytest.mark.parametrize("argv", [["check", "a.rnn"], ["check", "a.rnn", "dir/b.rnn"]])
def test_plain_check_reads_as_argparse_does(argv):
    """The fast path of `rnnspec check FILE...` (no argparse) gives the namespace the
    check subcommand's parser gives, so an option added to one cannot be missed by it."""
    from rnnspec import cli

    fast = cli._plain_check(argv)
    assert fast is not None
    assert vars(fast) == vars(cli._parser().parse_args(argv))


@pytest.mark.parametrize("argv", [["check"], ["check", "--json", "a.rnn"], ["check", "-h"],
                                  ["generate", "a.rnn"], ["check", "a.rnn", "--color=never"]])
def test_plain_check_leaves_options_to_argparse(argv):
    from rnnspec import cli

    assert cli._plain_check(argv) is None
