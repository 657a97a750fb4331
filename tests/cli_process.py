"""`rnnspec ARGS...` in a child process that starts in milliseconds.

A test that runs the command line in a subprocess (so that a hang fails the test instead
of stopping the suite) pays a new interpreter and, for most commands, torch's import: about
two seconds a run, which hundreds of hostile-input runs turn into minutes. `run` has each
child forked instead by a small server process that imported rnnspec, torch, onnx and
jinja2 once and does nothing else (no thread or OpenMP pool exists in it, so forking it is
safe).

The child is a separate process, as `python -m rnnspec` is: its own file descriptors 0, 1
and 2 (stdin from `input` or /dev/null, stdout and stderr into files that `run` reads),
its own working directory and environment, `rnnspec.cli.entry`'s exit (flush, then
`os._exit` with main's status), and for an exception nothing caught a traceback on stderr
and status 1, as the interpreter gives. The server kills a child still running at
`timeout`, and `run` then raises `subprocess.TimeoutExpired`, as `subprocess.run` does.

Tests about the interpreter itself (start-up time, what `rnnspec check` imports, the
console script) keep real subprocesses.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PRELOAD = ("rnnspec.cli", "rnnspec.backends.torch.codegen", "lark", "jinja2", "torch", "onnx",
           "safetensors")
_SERVER: list = []  # the server process, started on first use


# ----------------------------------------------------------------------------- the server


def serve() -> None:  # pragma: no cover (runs in the server process)
    """Read one request a line on stdin, fork its child, answer its status on stdout."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an extra that is not installed: its commands say so
            pass
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(**request)
        answers.write((json.dumps(_wait(pid, request["timeout"])) + "\n").encode())
        answers.flush()


def _wait(pid: int, timeout: float) -> dict:
    """The child's exit status, or `timed_out` once it was killed at `timeout` seconds."""
    if hasattr(os, "pidfd_open"):  # Linux: wait on the process itself
        handle = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([handle], [], [], timeout)
        finally:
            os.close(handle)
    else:  # elsewhere: poll
        import time

        deadline = time.monotonic() + timeout
        while not (done := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
            time.sleep(0.005)
        if done[0]:
            return {"status": os.waitstatus_to_exitcode(done[1])}
        ready = False
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return {"timed_out": True}
    _, status = os.waitpid(pid, 0)
    return {"status": os.waitstatus_to_exitcode(status)}


def _child(argv, cwd, env, stdin, stdout, stderr, timeout):  # pragma: no cover (the child)
    del timeout
    status = 1
    try:
        for fd, path, flags in ((0, stdin, os.O_RDONLY), (1, stdout, os.O_WRONLY),
                                (2, stderr, os.O_WRONLY)):
            opened = os.open(path, flags)
            os.dup2(opened, fd)
            os.close(opened)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        sys.argv = ["rnnspec", *argv]
        from rnnspec.cli import main

        status = main(argv)
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
        if isinstance(code, str):
            print(code, file=sys.stderr)
    except BaseException:  # what the interpreter prints for an uncaught exception
        import traceback

        traceback.print_exc()
        status = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass
        os._exit(status)


# ----------------------------------------------------------------------------- the tests' side


def _server() -> subprocess.Popen:
    if _SERVER and _SERVER[0].poll() is None:
        return _SERVER[0]
    log = tempfile.NamedTemporaryFile(prefix="rnnspec-cli-server-", suffix=".log", delete=False)
    path = os.pathsep.join([str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    server = subprocess.Popen(
        [sys.executable, "-c", "import cli_process; cli_process.serve()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
        env={**os.environ, "PYTHONPATH": path}, cwd=TESTS)
    server.log = log.name
    _SERVER[:] = [server]
    return server


@atexit.register
def _stop() -> None:
    for server in _SERVER:
        if server.poll() is None:
            server.stdin.close()
            server.wait(timeout=30)
        os.unlink(server.log)


def run(*args, cwd=None, env=None, input=None, timeout=120,
        stdin=None) -> subprocess.CompletedProcess:
    """`rnnspec *args` as `subprocess.run([...], capture_output=True, text=True)` runs it;
    `env` adds to (does not replace) this process's environment; `stdin` names a file to
    read instead of `input`."""
    argv = [str(a) for a in args]
    with tempfile.TemporaryDirectory(prefix="rnnspec-cli-") as folder:
        paths = {name: os.path.join(folder, name) for name in ("stdin", "stdout", "stderr")}
        for name, path in paths.items():
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(input if name == "stdin" and input is not None else "")
        request = {"argv": argv, "cwd": str(cwd or os.getcwd()),
                   "env": {**os.environ, **(env or {})}, "timeout": timeout, **paths}
        if stdin is not None:
            request["stdin"] = str(stdin)
        server = _server()
        server.stdin.write((json.dumps(request) + "\n").encode())
        server.stdin.flush()
        answer = server.stdout.readline()
        if not answer:
            raise RuntimeError("the CLI server stopped: " + Path(server.log).read_text())
        answer = json.loads(answer)
        if answer.get("timed_out"):
            raise subprocess.TimeoutExpired(["rnnspec", *argv], timeout)
        stdout, stderr = (Path(paths[name]).read_text(encoding="utf-8", errors="replace")
                          for name in ("stdout", "stderr"))
    return subprocess.CompletedProcess(["rnnspec", *argv], answer["status"], stdout, stderr)
