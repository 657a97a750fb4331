"""Fuzz `rnnspec lsp`: byte streams of LSP messages (valid sessions with random edits, bad
headers, bad JSON, wrong params, huge and negative positions, requests on documents never
opened) through the server, in process. Acceptable: every request whose frame and id are
readable gets a reply, no traceback is logged, nothing hangs.

    python scripts/fuzz_lsp.py --minutes 3 --seed 1

`make(rng)` and `exercise(data)` are the surface `scripts/fuzz.py` drives.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TEXTS = ["let H = 4\nstack S {\n    input_size = 4\n    lstm(hidden_size = H)\n}\n",
         "stack T {\n    input_size = 3\n    a = gru(hiden_size = 2)\n"
         "    b = rnn(hidden_size = 2)\n}\n",
         "cell G {\n    state h[hidden_size]\n    param a[hidden_size] = zeros, b[hidden_size]\n"
         "    h = tanh(a + b + h)\n}\nstack U {\n    input_size = 2\n    G(hidden_size = 2)\n}\n",
         "", "stack {\n", "é𝔥 = ((("]
METHODS = ["textDocument/hover", "textDocument/definition", "textDocument/completion",
           "textDocument/documentSymbol", "textDocument/formatting"]
POSITIONS = [0, 1, 3, 5, 40, -1, 2**31 - 1, 2**31, 10**12]


def _frame(message) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def _request(rng, number: int, uri: str) -> dict:
    method = rng.choice(METHODS)
    params: dict = {"textDocument": {"uri": uri}}
    if method != "textDocument/documentSymbol":
        params["position"] = {"line": rng.choice(POSITIONS), "character": rng.choice(POSITIONS)}
    if method == "textDocument/formatting":
        params = {"textDocument": {"uri": uri}, "options": {"tabSize": 4, "insertSpaces": True}}
    if rng.random() < 0.1:
        params = rng.choice([{}, {"textDocument": 5}, None, [], {"position": "x"}])
    return {"jsonrpc": "2.0", "id": number, "method": method, "params": params}


def _edit(rng, uri: str, version: int) -> dict:
    text = rng.choice(TEXTS)
    if rng.random() < 0.5:
        change = {"text": text[:rng.randrange(len(text) + 1)]}
    else:
        line, character = rng.choice(POSITIONS[:5]), rng.choice(POSITIONS[:5])
        change = {"range": {"start": {"line": line, "character": character},
                            "end": {"line": line, "character": character + rng.randrange(3)}},
                  "text": rng.choice(["x", "(", "\n", "= 2", "é", ""])}
    return {"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
        "textDocument": {"uri": uri, "version": version}, "contentChanges": [change]}}


def _damaged(rng, message: bytes) -> bytes:
    body = message.split(b"\r\n\r\n", 1)[1]
    return rng.choice([
        b"Content-Length: abc\r\n\r\n" + body, b"Content-Length: -3\r\n\r\n" + body,
        b"Content-Length: 999999999999\r\n\r\n" + body, b"\r\n\r\n" + body,
        b"Content-Length: %d\r\n\r\n" % (len(body) + 7) + body,
        b"Content-Length: %d\r\n\r\n" % max(0, len(body) - 5) + body,
        b"Content-Length: %d\r\n\r\n" % len(body) + body[:-2] + b"]}",
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) + message])


def make(rng: random.Random) -> bytes:
    """One session: initialize, documents opened and edited, requests good and bad."""
    out = [_frame({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                   "params": {"capabilities": {}}}),
           _frame({"jsonrpc": "2.0", "method": "initialized", "params": {}})]
    uris = [f"file:///fuzz/{n}.rnn" for n in range(3)]
    versions = dict.fromkeys(uris, 0)
    for number in range(1, rng.randrange(5, 40)):
        uri = rng.choice(uris + ["file:///never.rnn"])
        roll = rng.random()
        if roll < 0.15:
            versions[uri] = 1
            message = {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
                "textDocument": {"uri": uri, "languageId": "rnnspec", "version": 1,
                                 "text": rng.choice(TEXTS)}}}
        elif roll < 0.35:
            versions[uri] = versions.get(uri, 0) + 1
            message = _edit(rng, uri, versions[uri])
        elif roll < 0.4:
            message = {"jsonrpc": "2.0", "method": "textDocument/didClose",
                       "params": {"textDocument": {"uri": uri}}}
        else:
            message = _request(rng, number, uri)
        data = _frame(message)
        out.append(_damaged(rng, data) if rng.random() < 0.08 else data)
    out += [_frame({"jsonrpc": "2.0", "id": 10**6, "method": "shutdown"}),
            _frame({"jsonrpc": "2.0", "method": "exit"})]
    return b"".join(out)


class _Output(io.BytesIO):
    def close(self):  # pygls closes its stdout on exit; keep what was written
        self.data = self.getvalue()


def exercise(data: bytes, timeout: float = 60.0) -> None:
    """Run the server on `data`; AssertionError when a readable request got no reply, a
    traceback was logged, or it did not finish within `timeout` seconds."""
    from rnnspec.tools.lsp.language_server import RnnspecServer
    from rnnspec.tools.lsp.stream import Framer

    errors = io.StringIO()
    server = RnnspecServer(stderr=errors)
    out = _Output()
    thread = threading.Thread(target=server.start_io, args=(io.BytesIO(data), out),
                              daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the server hung (over {timeout} s)"
    written = getattr(out, "data", None)
    written = out.getvalue() if written is None else written
    sent = [m for m in Framer().feed(data) if isinstance(m, dict)]
    asked = {m["id"] for m in sent if isinstance(m.get("id"), (int, str))
             and not isinstance(m.get("id"), bool) and isinstance(m.get("method"), str)}
    got = Framer().feed(written)
    answered = {m.get("id") for m in got if isinstance(m, dict) and "method" not in m}
    missing = asked - answered
    assert not missing, f"no reply to requests {sorted(missing, key=str)[:5]}"
    log = errors.getvalue()
    assert "Traceback" not in log, log[-3000:]
    internal = [m for m in got if isinstance(m, dict) and m.get("error", {}).get("code")
                == -32603]
    assert not internal, internal[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    end = time.monotonic() + 60 * args.minutes
    runs = failures = 0
    while time.monotonic() < end:
        data = make(rng)
        runs += 1
        try:
            exercise(data)
        except AssertionError as exc:
            failures += 1
            print(f"failure {failures} (run {runs}): {str(exc)[:500]}", file=sys.stderr)
    print(f"{runs} sessions, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
