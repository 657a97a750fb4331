"""The editor commands: `rnnspec fmt --check` against `rnnspec check` (whole processes), and
the language server's diagnostics round trip after a one-character change against an
in-process check of the same text."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from .harness import ROOT, compile_package, interleaved, median, process_environment, run_process
from .processes import rnnspec_command


def _examples() -> list[str]:
    """Every example that parses (fmt refuses the others before doing any work)."""
    from rnnspec.language.parse import parse

    paths = sorted((ROOT / "examples").glob("*.rnn")) + sorted(
        (ROOT.parent / "shared" / "examples").glob("*.rnn"))
    return [str(p) for p in paths if parse(p.read_text(encoding="utf-8"), p.name)[0]]


def formatting(rounds: int) -> dict:
    compile_package()
    base, files = rnnspec_command(), _examples()
    commands = {"rnnspec check (all examples)": base + ["check", *files],
                "rnnspec fmt --check (all examples)": base + ["fmt", "--check", *files]}
    for command in commands.values():
        run_process(command)
    times = interleaved({n: (lambda c=c: run_process(c)) for n, c in commands.items()}, rounds)
    return {"times": times, "files": len(files),
            "ratio_fmt_to_check": times["rnnspec fmt --check (all examples)"]
            / times["rnnspec check (all examples)"]}


def spec_of_lines(lines: int) -> str:
    """A spec of about `lines` lines: one constant and five-line stacks that use it."""
    out = ["let H = 50", ""]
    index = 0
    while len(out) < lines:
        out += [f"stack S{index} {{", "    input_size = 20",
                "    lstm(hidden_size = H, num_layers = 2)", "}", ""]
        index += 1
    return "\n".join(out)


class _Client:
    """The least LSP client: Content-Length framed JSON-RPC over the server's pipes."""

    def __init__(self, command: list[str]):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env=process_environment())
        self.next_id = 0

    def send(self, method: str, params, request: bool = False) -> int | None:
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            self.next_id += 1
            message["id"] = self.next_id
        body = json.dumps(message).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()
        return message.get("id")

    def receive(self) -> dict:
        length = 0
        while True:
            line = self.process.stdout.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return json.loads(self.process.stdout.read(length))

    def wait_for(self, predicate) -> dict:
        while True:
            message = self.receive()
            if predicate(message):
                return message

    def close(self) -> None:
        self.send("shutdown", None, request=True)
        self.send("exit", None)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def lsp_round_trip(rounds: int, lines: int = 2_000) -> dict | None:
    """None when pygls is not installed (the `lsp` extra)."""
    import importlib.util

    from rnnspec.check.checker import check_text

    if importlib.util.find_spec("pygls") is None or importlib.util.find_spec(
            "lsprotocol") is None:
        return None

    text = spec_of_lines(lines)
    uri = "file:///benchmark/spec.rnn"
    client = _Client([sys.executable, "-m", "rnnspec", "lsp"])
    try:
        ident = client.send("initialize", {"processId": None, "rootUri": None,
                                           "capabilities": {}}, request=True)
        client.wait_for(lambda m: m.get("id") == ident)
        client.send("initialized", {})
        client.send("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "rnnspec", "version": 1, "text": text}})

        def published(message):
            return (message.get("method") == "textDocument/publishDiagnostics"
                    and message["params"]["uri"] == uri)

        client.wait_for(published)
        server, local = [], []
        for version in range(2, rounds + 2):
            digit = "1" if version % 2 == 0 else "0"  # `let H = 50` <-> `let H = 51`
            began = time.perf_counter()
            client.send("textDocument/didChange", {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"range": {"start": {"line": 0, "character": 9},
                                              "end": {"line": 0, "character": 10}},
                                    "text": digit}]})
            client.wait_for(published)
            server.append(time.perf_counter() - began)
            changed = text[:9] + digit + text[10:]
            began = time.perf_counter()
            check_text(changed, "spec.rnn")
            local.append(time.perf_counter() - began)
    finally:
        client.close()
    return {"lines": len(text.splitlines()), "server_ms": median(server) * 1e3,
            "check_ms": median(local) * 1e3, "ratio": median(server) / median(local)}


LSP_KINDS = ("documentSymbol", "hover", "definition", "completion")


def _request_params(kind: str, uri: str, text: str) -> dict:
    """A request of `kind` about the document's last stack (the worst place for any pass
    that walks the document): hover on its block, definition of `H`, completion inside
    its call."""
    lines = text.split("\n")
    last = max(i for i, line in enumerate(lines) if "lstm(" in line)
    params = {"textDocument": {"uri": uri}}
    if kind != "documentSymbol":
        column = {"hover": lines[last].index("lstm") + 1,
                  "definition": lines[last].index("= H") + 2,
                  "completion": lines[last].index("hidden_size") + 3}[kind]
        params["position"] = {"line": last, "character": column}
    return params


def lsp_scaling(rounds: int = 3, sizes_mb: tuple[float, ...] = (1.0, 5.0)) -> dict | None:
    """`rnnspec lsp` on documents of `sizes_mb` megabytes: the analysis (didOpen to its
    diagnostics), then each request kind's median round trip once the analysis is done
    (`rounds` requests each; completion's first, which lexes the version, apart), and each
    kind's ratio of the largest size's time to the smallest's (linear: the size ratio).
    None when pygls is not installed."""
    import importlib.util

    if importlib.util.find_spec("pygls") is None or importlib.util.find_spec(
            "lsprotocol") is None:
        return None
    rows = []
    for megabytes in sizes_mb:
        text = spec_of_lines(int(megabytes * 1e6 / 16.2))
        uri = "file:///benchmark/big.rnn"
        client = _Client([sys.executable, "-m", "rnnspec", "lsp"])
        try:
            ident = client.send("initialize", {"processId": None, "rootUri": None,
                                               "capabilities": {}}, request=True)
            client.wait_for(lambda m, i=ident: m.get("id") == i)
            client.send("initialized", {})
            began = time.perf_counter()
            client.send("textDocument/didOpen", {"textDocument": {
                "uri": uri, "languageId": "rnnspec", "version": 1, "text": text}})
            client.wait_for(lambda m: m.get("method") == "textDocument/publishDiagnostics")
            row = {"bytes": len(text), "analysis_s": time.perf_counter() - began}
            for kind in LSP_KINDS:
                params = _request_params(kind, uri, text)
                times = []
                for _ in range(rounds + (kind == "completion")):
                    began = time.perf_counter()
                    ident = client.send(f"textDocument/{kind}", params, request=True)
                    answer = client.wait_for(lambda m, i=ident: m.get("id") == i)
                    times.append(time.perf_counter() - began)
                    if answer.get("error") or not answer.get("result"):
                        raise RuntimeError(f"{kind} on {megabytes} MB: {answer}")
                if kind == "completion":
                    row["completion_first_ms"] = times.pop(0) * 1e3
                row[f"{kind}_ms"] = median(times) * 1e3
            rows.append(row)
        finally:
            client.close()
    small, large = rows[0], rows[-1]
    size_ratio = large["bytes"] / small["bytes"]
    ratios = {kind: large[f"{kind}_ms"] / small[f"{kind}_ms"] for kind in LSP_KINDS}
    ratios["analysis"] = large["analysis_s"] / small["analysis_s"]
    ratios["completion_first"] = large["completion_first_ms"] / small["completion_first_ms"]
    return {"rows": rows, "size_ratio": size_ratio, "ratios": ratios}
