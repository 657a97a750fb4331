"""Writing output files: atomically (a temporary file in the same folder renamed into
place, so a reader never sees half a file and a failure leaves the old one), and never
over a file that rnnspec did not write unless asked to."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable


class OutputError(Exception):
    """An output cannot be written where asked (exit status 2)."""


def replace_atomically(path: str, data: str | bytes, *, keep_mode: bool = False) -> None:
    """Write `data` to `path` through a temporary file renamed into place. The new file
    gets the umask's permissions, or the replaced file's with `keep_mode`."""
    folder = os.path.dirname(os.path.abspath(path))
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask
    if keep_mode:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            pass
    suffix = os.path.splitext(path)[1] + ".tmp"
    try:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".rnnspec-", suffix=suffix)
    except OSError as exc:
        raise OutputError(f"cannot write in `{folder}`: {exc.strerror}") from None
    try:
        if isinstance(data, bytes):
            out = os.fdopen(handle, "wb")
        else:
            out = os.fdopen(handle, "w", encoding="utf-8", newline="\n")
        with out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write `{path}`: {exc.strerror}") from None
        raise


def write_output(path: str, data: str | bytes, *, is_ours: Callable[[str], bool],
                 force: bool = False, who: str = "rnnspec", verb: str = "write") -> None:
    """`replace_atomically`, after refusing a folder, a missing folder, and (unless
    `force`) a file for which `is_ours(path)` is false: one `who` did not `verb`."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OutputError(f"cannot write `{path}`: it is a folder")
    if not os.path.isdir(folder):
        raise OutputError(f"cannot write `{path}`: the folder `{folder}` does not exist")
    kind = special_kind(path)
    if kind:  # never opened: reading a FIFO blocks, and replacing a device is never meant
        raise OutputError(f"refusing to write `{path}`: it is {kind}, not a regular file "
                          "(outputs are regular files; --force does not change that)")
    if os.path.exists(path) and not force:
        try:
            ours = is_ours(path)
        except OSError as exc:
            raise OutputError(f"cannot read `{path}` to see what it is: {exc.strerror}") from None
        if not ours:
            raise OutputError(f"refusing to overwrite `{path}`: {who} did not {verb} it "
                              "(use --force to replace it)")
    replace_atomically(path, data)


def special_kind(path: str) -> str | None:
    """What `path` is when it exists and is not a regular file or folder ("a FIFO", "a
    device", ...), found with `stat` alone, so nothing is opened; None otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def starts_with(mark: str) -> Callable[[str], bool]:
    """An `is_ours` for text files whose first bytes are `mark`."""
    def check(path: str) -> bool:
        with open(path, "rb") as handle:
            return handle.read(len(mark)) == mark.encode()
    return check
