"""Reading a spec file: its bytes from a regular file only, and its text as UTF-8."""

from __future__ import annotations

import errno
import os
from stat import S_ISDIR, S_ISREG

from rnnspec.language.diagnostics import Diagnostic, Span, error


class SourceError(Exception):
    """A file that cannot be turned into text (exit status 2)."""

    def __init__(self, diagnostic: Diagnostic, text: str = ""):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic
        self.text = text  # what could be decoded, for showing the offending line


def decode_source(data: bytes, path: str) -> str:
    """UTF-8 text with a leading byte-order mark dropped and every line ending made `\\n`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        span = Span(path, line, column, line, column + 1)
        raise SourceError(
            error(
                "E005",
                f"file is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}",
                span,
                help="save the file as UTF-8",
            ),
            data.decode("utf-8", "replace"),
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _only_a_regular_file(path: str, status: os.stat_result) -> None:
    if S_ISDIR(status.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
    if not S_ISREG(status.st_mode):
        from rnnspec.tools.files import special_kind

        kind = special_kind(path, status) or "not a regular file"
        raise SourceError(error(
            "E006", f"cannot read `{path}`: it is {kind}, not a regular file", None))


def read_source(path: str) -> str:
    """The text of the spec at `path`; raises `SourceError` for anything unreadable.

    Only a regular file is read: a FIFO with no writer would block a plain open forever,
    and a device (`/dev/zero`) never ends. Both are refused from `stat` alone, before any
    open; the open itself does not block, and what it opened is checked again (the path
    may have changed in between)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        _only_a_regular_file(path, os.stat(path))
        descriptor = os.open(path, flags)
        with open(descriptor, "rb", closefd=True) as handle:
            _only_a_regular_file(path, os.fstat(descriptor))
            data = handle.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SourceError(error("E006", f"cannot read `{path}`: {reason}", None)) from None
    return decode_source(data, path)
