"""The bytes of `rnnspec lsp`'s input split into JSON-RPC messages, robust to a client that
writes a bad frame (plain data: no pygls here; `language_server` reads stdin through it).

LSP frames each message as header lines (`Content-Length: N`, optionally `Content-Type`),
an empty line, then N bytes of JSON. pygls' own reader, given a header it cannot read
(`Content-Length: abc`), loses that message and then every later one: it waits for a body
it never starts. `Framer` resynchronises instead: a bad header, a body that is not JSON or
bytes between messages are skipped up to the next well-formed `Content-Length` header, and
each skip is one `Problem` (what was wrong, and the id of a request it may have lost, so
that the server can still answer it). A `Content-Length` that is too large for the body
that follows is noticed when the next message's header arrives after a complete JSON
value; one over `MAX_BODY` is refused as a bad header, never allocated.
"""

from __future__ import annotations

import json
import re

from rnnspec.records import Record

MAX_BODY = 64 * 1024 * 1024  # bytes of one message's JSON
MAX_HEADER = 8 * 1024  # bytes of one message's header lines
_HEADER_END = b"\r\n\r\n"
_NEXT_HEADER = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
_LINE = re.compile(rb"([!-9;-~]+)[ \t]*:[ \t]*([ -~]*?)[ \t]*")  # `Name: value`, ASCII
# the beginning of a header: whole `Name: value` lines, then part of one
_PARTIAL = re.compile(rb"(?:[!-9;-~]+[ \t]*:[ -~]*\r\n)*(?:[!-9;-~]+(?:[ \t]*:[ -~]*)?)?\r?")
_REQUEST_ID = re.compile(rb'"id"\s*:\s*(-?\d{1,15}|"(?:[^"\\]|\\.){0,200}")')


class Problem(Record):
    """Bytes the framer skipped: why, how many, and the id of a request among them (an
    int or str read from the bytes, or None) that the server answers with an error."""

    reason: str
    skipped: int
    request_id: int | str | None = None


def _shown(data: bytes, limit: int = 60) -> str:
    text = data[:limit].decode("ascii", "backslashreplace")
    return text + ("..." if len(data) > limit else "")


def _request_id(data: bytes) -> int | str | None:
    """The id of a request whose JSON is `data` (whole or cut): only when it names a
    method (a response of the client's has an id too, but nothing waits for an answer)."""
    if b'"method"' not in data:
        return None
    found = _REQUEST_ID.search(data)
    if found is None:
        return None
    try:
        return json.loads(found.group(1))
    except ValueError:
        return None


def _content_length(header: bytes) -> tuple[int | None, str]:
    """The body's length from a message's header lines, or None and what is wrong."""
    length = None
    for line in header.split(b"\r\n"):
        match = _LINE.fullmatch(line)
        if match is None:
            return None, f"a header line is not `Name: value`: `{_shown(line)}`"
        name, value = match.group(1).lower(), match.group(2)
        if name != b"content-length":
            continue  # Content-Type, and headers LSP may add
        if length is not None:
            return None, "two `Content-Length` headers"
        if not value.isdigit():
            return None, f"`Content-Length: {_shown(value)}` is not a number of bytes"
        if len(value) > 12 or int(value) > MAX_BODY:
            return None, (f"`Content-Length: {_shown(value)}` is over the limit of "
                          f"{MAX_BODY:,} bytes")
        length = int(value)
    if length is None:
        return None, "the header has no `Content-Length`"
    return length, ""


TOO_LARGE = Problem("its `Content-Length` is larger than its body", 0)


def _value_before_header(data, start: int, search_from: int):
    """(a JSON value, where the next `Content-Length` header begins) when `data[start:]`
    holds a whole JSON value followed by such a header, searched for from `search_from`;
    else None."""
    at = _NEXT_HEADER.search(data, search_from)
    if at is None:
        return None
    try:
        return json.loads(bytes(data[start:at.start()])), at.start()
    except (ValueError, RecursionError):
        return None


class Framer:
    """Feed it bytes as they arrive; it returns the messages (decoded JSON values) and the
    problems (`Problem`) in the order they occurred."""

    def __init__(self):
        self.buffer = bytearray()
        self._length: int | None = None  # the body length of the header at the front
        self._scanned = 0  # how far the front body was searched for a next header

    def feed(self, data: bytes) -> list:
        self.buffer += data
        out: list = []
        while self._step(out):
            pass
        return out

    def close(self) -> list:
        """The end of input: what is left is a message cut short."""
        out: list = []
        if self.buffer.strip():
            reason = ("the input ended inside a message's body" if self._length is not None
                      else "the input ended inside a message's header")
            out.append(Problem(reason, len(self.buffer), _request_id(bytes(self.buffer))))
        self.buffer.clear()
        self._length = None
        return out

    # ----------------------------------------------------------------- one step

    def _step(self, out: list) -> bool:
        """Take one message or problem off the front; False when more bytes are needed."""
        if self._length is None:
            return self._header(out)
        start = self.buffer.index(_HEADER_END) + len(_HEADER_END)
        end = start + self._length
        if len(self.buffer) < end:
            return self._too_long(out, start)
        body = bytes(self.buffer[start:end])
        self._take(end)
        try:
            out.append(json.loads(body))
        except (ValueError, RecursionError):
            self._not_json(out, body)
        return True

    def _header(self, out: list) -> bool:
        buffer = self.buffer
        stripped = len(buffer) - len(buffer.lstrip(b"\r\n"))  # blank lines between messages
        if stripped:
            del buffer[:stripped]
        if not buffer:
            return False
        end = buffer.find(_HEADER_END, 0, MAX_HEADER + len(_HEADER_END))
        if end < 0:
            if len(buffer) <= MAX_HEADER and _PARTIAL.fullmatch(buffer):
                return False  # a header still arriving
            return self._skip(out, "bytes that are not a message header", 1)
        length, reason = _content_length(bytes(buffer[:end]))
        if length is None:
            return self._skip(out, reason, 1)
        self._length = length
        self._scanned = end + len(_HEADER_END)
        return True

    def _too_long(self, out: list, start: int) -> bool:
        """A body still arriving; but when a next header follows a complete JSON value in
        it, the header's `Content-Length` was too large: that value is the message."""
        found = _value_before_header(self.buffer, start, max(start, self._scanned - 16))
        self._scanned = len(self.buffer)
        if found is None:
            return False
        message, at = found
        self._take(at)
        out.extend((TOO_LARGE, message))
        return True

    def _not_json(self, out: list, body: bytes) -> None:
        """A body that does not decode: the message is lost (a request in it answered by
        id); a next header inside it (a `Content-Length` too large) is read again."""
        found = _value_before_header(body, 0, 1)
        if found is not None:
            message, at = found
            self.buffer[:0] = body[at:]
            out.extend((TOO_LARGE, message))
            return
        out.append(Problem(f"the body is not JSON: `{_shown(body)}`", len(body),
                           _request_id(body)))

    def _skip(self, out: list, reason: str, start: int) -> bool:
        """Skip to the next `Content-Length` header after `start` (or keep the last bytes
        when they may begin one); the skipped bytes' request, if any, is answered by id."""
        found = _NEXT_HEADER.search(self.buffer, start)
        if found is not None:
            end = found.start()
        else:
            end = len(self.buffer)
            while end > start and len(self.buffer) - end < 15 and _PARTIAL.fullmatch(
                    self.buffer, end - 1):
                end -= 1
        skipped = bytes(self.buffer[:end])
        out.append(Problem(reason, len(skipped), _request_id(skipped)))
        self._take(end)
        return found is not None

    def _take(self, end: int) -> None:
        del self.buffer[:end]
        self._length = None
        self._scanned = 0
