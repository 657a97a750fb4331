"""`rnnspec lsp`'s read loop, in place of pygls' stdio reader: bytes through `stream.Framer`,
then each message checked before pygls' protocol sees it, so that every request is
answered. A frame that cannot be read is skipped (its request, when its id can be read,
gets an error); a message that is not JSON-RPC 2.0, a request before `initialize` or after
`shutdown`, and params that do not fit the method's types (a position of -1 or over
2**31 - 1) get an error response naming what is wrong, never a traceback. Imports pygls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading

import cattrs
from lsprotocol import types
from pygls.protocol import default_converter
from pygls.protocol.json_rpc import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
)

from rnnspec.tools.lsp.stream import Framer, Problem

PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602
INTERNAL_ERROR, SERVER_NOT_INITIALIZED = -32603, -32002
CHUNK = 1 << 16


def _valid_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _params_problem(exc: Exception) -> str:
    """What is wrong with a message's params, in cattrs' words (`$.params.position.line`)."""
    try:
        found = cattrs.transform_error(exc, path="$")
    except Exception:  # noqa: BLE001 - the summary is best effort
        found = []
    return "; ".join(found[:3]) or f"{type(exc).__name__}: {exc}"


def frame(message: dict) -> bytes:
    body = json.dumps(message).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Reader:
    """Reads `stdin` on a daemon thread (a blocked read never holds up the exit) and hands
    each message to the server's protocol."""

    def __init__(self, server, stdin):
        self.server = server
        self.stdin = stdin
        self.converter = default_converter()
        self.initialized = False
        self.shut_down = False

    async def run(self, stop: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue = asyncio.Queue()
        read = getattr(self.stdin, "read1", None) or self.stdin.read

        def pump():
            while True:
                try:
                    data = read(CHUNK)
                except (OSError, ValueError):
                    data = b""
                try:
                    loop.call_soon_threadsafe(chunks.put_nowait, data)
                except RuntimeError:  # the loop has ended
                    return
                if not data:
                    return

        threading.Thread(target=pump, name="rnnspec-lsp-stdin", daemon=True).start()
        framer = Framer()
        while not stop.is_set():
            data = await chunks.get()
            for item in framer.feed(data) if data else framer.close():
                if isinstance(item, dict) and item.get("method") in (types.SHUTDOWN,
                                                                     types.EXIT):
                    await self.server.drain()  # the requests before them answer first
                self.take(item)
                if stop.is_set():
                    return
            if not data:
                break
        await self.server.drain()

    # ----------------------------------------------------------------- messages

    def take(self, item) -> None:
        if isinstance(item, Problem):
            self.server.report_problem(
                f"rnnspec lsp: skipped {item.skipped} bytes of input: {item.reason}; "
                "reading on from the next `Content-Length` header")
            if item.request_id is not None:
                self.reply_error(item.request_id, PARSE_ERROR,
                                 f"the request could not be read: {item.reason}")
            return
        if not isinstance(item, dict) or item.get("jsonrpc") != "2.0":
            self.refuse(item, "not a JSON-RPC 2.0 message (an object with "
                              "`\"jsonrpc\": \"2.0\"`)")
            return
        method = item.get("method")
        if method is None:
            self.response(item)
        elif not isinstance(method, str):
            self.refuse(item, "`method` is not a string")
        elif "id" in item:
            self.request(item, method)
        else:
            self.notification(item, method)

    def refuse(self, item, why: str) -> None:
        message_id = item.get("id") if isinstance(item, dict) else None
        if _valid_id(message_id):
            self.reply_error(message_id, INVALID_REQUEST, why)
        else:
            self.server.report_problem(f"rnnspec lsp: ignored a message: {why}")

    def request(self, item: dict, method: str) -> None:
        message_id = item["id"]
        if not _valid_id(message_id):
            self.server.report_problem(
                f"rnnspec lsp: ignored a `{method}` request: its id is not a number or "
                "a string")
            return
        if not self.initialized and method != types.INITIALIZE:
            self.reply_error(message_id, SERVER_NOT_INITIALIZED,
                             f"`{method}` before `initialize`")
            return
        if self.shut_down:
            self.reply_error(message_id, INVALID_REQUEST, f"`{method}` after `shutdown`")
            return
        kind = self.server.protocol.get_message_type(method) or JsonRPCRequestMessage
        try:
            message = self.converter.structure(item, kind)
        except Exception as exc:  # noqa: BLE001 - any mismatch: InvalidParams
            self.reply_error(message_id, INVALID_PARAMS,
                             f"`{method}`: invalid params: {_params_problem(exc)}")
            return
        if method == types.INITIALIZE:
            self.initialized = True
        elif method == types.SHUTDOWN:
            self.shut_down = True
        self.handle(message, message_id)

    def notification(self, item: dict, method: str) -> None:
        if method != types.EXIT and (not self.initialized or self.shut_down):
            return  # LSP: dropped before `initialize` and after `shutdown`
        kind = self.server.protocol.get_message_type(method) or JsonRPCNotification
        try:
            message = self.converter.structure(item, kind)
        except Exception as exc:  # noqa: BLE001
            self.server.report_problem(f"rnnspec lsp: ignored a `{method}` notification: "
                                       f"invalid params: {_params_problem(exc)}")
            return
        self.handle(message, None)

    def response(self, item: dict) -> None:
        kind = types.ResponseErrorMessage if "error" in item else JsonRPCResponseMessage
        try:
            message = self.converter.structure(item, kind)
        except Exception:  # noqa: BLE001
            self.server.report_problem("rnnspec lsp: ignored a message with no method that "
                                       "is not a response")
            return
        self.handle(message, None)

    def handle(self, message, message_id) -> None:
        try:
            self.server.protocol.handle_message(message)
        except Exception:  # noqa: BLE001 - a bug in the server: answered, and reported
            import traceback

            self.server.report_failure("rnnspec lsp: handling a message failed\n"
                                       + traceback.format_exc())
            if message_id is not None:
                self.reply_error(message_id, INTERNAL_ERROR, "the server failed on this "
                                 "request (the traceback is on its stderr)")

    def reply_error(self, message_id, code: int, text: str) -> None:
        writer = self.server.protocol.writer
        if writer is not None:
            writer.write(frame({"jsonrpc": "2.0", "id": message_id,
                                "error": {"code": code, "message": text}}))


class OneLine(logging.Handler):
    """pygls' own log records, on the server's stderr: a request rnnspec already answered
    and reported (`Reported`) is not logged again."""

    def __init__(self, stream, skip: type):
        super().__init__(logging.WARNING)
        self.stream = stream
        self.skip = skip

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and isinstance(record.exc_info[1], self.skip):
            return
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.stream.write(f"rnnspec lsp: pygls: {text}\n")
        self.stream.flush()
