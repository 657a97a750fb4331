"""Writing output files: atomically (a temporary file in the same folder renamed into
place, so a reader never sees half a file and a failure leaves the old one), and never
over a file that rnnspec did not write unless asked to."""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable


class OutputError(Exception):
    """An output cannot be written where asked (exit status 2)."""


def replace_atomically(path: str, data: str | bytes, *, keep_mode: bool = False) -> None:
    """Write `data` to `path` through a temporary file renamed into place. The new file
    gets the umask's permissions, or the replaced file's with `keep_mode`.

    On Linux the data goes to an unnamed file (`O_TMPFILE`) in the target's folder, given
    a name only once complete, just before the rename: a process killed while writing
    leaves nothing behind. Elsewhere (or where the file system has no `O_TMPFILE`) the
    temporary file is named from the start. Either name carries the writer's pid, and each
    write first removes the temporary files of dead writers to the same target."""
    folder = os.path.dirname(os.path.abspath(path))
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask
    if keep_mode:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            pass
    _remove_stale(folder, path)
    payload = data if isinstance(data, bytes) else data.encode("utf-8")
    temporary = None
    try:
        temporary = _write_unnamed(folder, path, payload, mode)
        if temporary is None:
            temporary = _write_named(folder, path, payload, mode)
        os.replace(temporary, path)
    except BaseException as exc:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write `{path}`: {exc.strerror or exc}") from None
        raise


# `.rnnspec-<target>.<pid>.<random>.tmp`: whose temporary file, for which target
_TEMPORARY = re.compile(r"\.rnnspec-(?P<target>.*)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp")
_TARGET_CHARS = 100  # of the target's name in a temporary name: within NAME_MAX


def _temporary_prefix(path: str) -> str:
    return f".rnnspec-{os.path.basename(path)[:_TARGET_CHARS]}.{os.getpid()}."


def _write_all(handle: int, payload: bytes, mode: int) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(handle, view):]
    os.fchmod(handle, mode)
    os.fsync(handle)


def _write_unnamed(folder: str, path: str, payload: bytes, mode: int) -> str | None:
    """The data in an `O_TMPFILE` file, then linked under a temporary name (returned);
    None where the platform or file system has no unnamed files."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        handle = os.open(folder, flag | os.O_WRONLY, mode)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None  # not supported here: a named temporary file instead
        raise
    try:
        _write_all(handle, payload, mode)
        name = os.path.join(folder, _temporary_prefix(path) + secrets.token_hex(6) + ".tmp")
        return name if _link(handle, name) else None
    finally:
        os.close(handle)


_AT_FDCWD, _AT_EMPTY_PATH = -100, 0x1000


def _link(handle: int, name: str) -> bool:
    """Give the unnamed file `handle` the name `name`: through /proc (any user), else
    linkat(AT_EMPTY_PATH) (where /proc cannot, and the process may); False when neither."""
    try:
        os.link(f"/proc/self/fd/{handle}", name, follow_symlinks=True)
        return True
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EXDEV, errno.EPERM, errno.EACCES):
            raise
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.linkat(handle, b"", _AT_FDCWD, os.fsencode(name), _AT_EMPTY_PATH) == 0
    except (OSError, AttributeError):
        return False


def _write_named(folder: str, path: str, payload: bytes, mode: int) -> str:
    handle, name = tempfile.mkstemp(dir=folder, prefix=_temporary_prefix(path), suffix=".tmp")
    try:
        _write_all(handle, payload, mode)
    except BaseException:
        os.close(handle)
        os.unlink(name)
        raise
    os.close(handle)
    return name


def _remove_stale(folder: str, path: str) -> None:
    """Remove the temporary files that killed writers left beside `path` (their pid is no
    longer running); files of running processes, or of other targets, are left alone."""
    target = os.path.basename(path)[:_TARGET_CHARS]
    try:
        entries = os.scandir(folder)
    except OSError:
        return  # the write itself reports the folder
    with entries:
        for entry in entries:
            found = _TEMPORARY.fullmatch(entry.name)
            if found and found["target"] == target and not _running(int(found["pid"])):
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or not a pid we can ask about: keep it
    return True


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
