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
    write first removes the temporary files of dead writers to the same target.

    Only a regular file (or a new name) is replaced: a folder, FIFO, device or socket is
    refused (OutputError) without being opened, and a symbolic link is followed, so the
    file it names is replaced and the link stays."""
    path = output_target(path)
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


_HEAD = 4096  # bytes of an existing target that `is_ours` is shown


def write_output(path: str, data: str | bytes, *, is_ours: Callable[[bytes], bool],
                 force: bool = False, who: str = "rnnspec", verb: str = "write",
                 inputs: tuple[str, ...] = ()) -> None:
    """`replace_atomically`, once the target is known to be a place for an output.

    Refused, whatever `force` says: a folder, a missing folder, anything not a regular file
    (a FIFO, a device, a socket: found with `stat` alone, never opened), a symbolic link to
    nothing, and one of the command's own `inputs`. A regular file whose first bytes
    `is_ours` does not recognise (one `who` did not `verb`) is refused unless `force`. A
    symbolic link is followed: the file it names is checked, and replaced, as if named."""
    target = check_output(path, is_ours=is_ours, force=force, who=who, verb=verb,
                          inputs=inputs)
    replace_atomically(target, data)


def check_output(path: str, *, is_ours: Callable[[bytes], bool], force: bool = False,
                 who: str = "rnnspec", verb: str = "write",
                 inputs: tuple[str, ...] = ()) -> str:
    """`write_output`'s refusals (OutputError) without writing, for a command to run
    before its work; the file a write would replace."""
    target = output_target(path, inputs)
    if os.path.lexists(target) and not force and not is_ours(_head(path, target)):
        raise OutputError(f"refusing to overwrite `{path}`: it is a file {who} did not "
                          f"{verb} (use --force to replace it)")
    return target


def output_target(path: str, inputs: tuple[str, ...] = ()) -> str:
    """The file that writing to `path` replaces (`path`, or where its symbolic links lead),
    after refusing (OutputError) every target that is not a regular file or a new name in
    an existing folder, and the files in `inputs`."""
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        status = os.stat(target)
    except FileNotFoundError:
        status = None
    except OSError as exc:
        raise OutputError(f"cannot write `{path}`: {exc.strerror or exc}") from None
    if status is None:
        if os.path.islink(path):
            raise OutputError(f"refusing to write `{path}`: it is a symbolic link to "
                              f"`{target}`, which does not exist")
        folder = os.path.dirname(os.path.abspath(target))
        if not os.path.isdir(folder):
            raise OutputError(f"cannot write `{path}`: the folder `{folder}` does not exist")
        return target
    link = f"a symbolic link to `{target}`, which is " if target != path else ""
    if stat.S_ISDIR(status.st_mode):
        raise OutputError(f"cannot write `{path}`: it is {link}a folder")
    kind = special_kind(path, status)
    if kind:  # never opened: reading a FIFO blocks, and replacing a device is never meant
        raise OutputError(f"refusing to write `{path}`: it is {link}{kind}, not a regular "
                          "file (outputs are regular files; --force does not change that)")
    for source in inputs:
        try:
            same = os.path.samestat(status, os.stat(source))
        except OSError:
            continue
        if same:
            raise OutputError(f"refusing to write `{path}`: it is this command's own input "
                              f"`{source}` (--force does not change that)")
    return target


def _head(path: str, target: str) -> bytes:
    """The first bytes of the regular file `target`, opened so that nothing can block (a
    FIFO swapped in after the `stat`: O_NONBLOCK, and the opened file must be regular)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        handle = os.open(target, flags)
    except OSError as exc:
        raise OutputError(f"cannot read `{path}` to see what it is: "
                          f"{exc.strerror or exc}") from None
    try:
        kind = special_kind(path, os.fstat(handle))
        if kind:
            raise OutputError(f"refusing to write `{path}`: it is {kind}, not a regular file")
        return os.read(handle, _HEAD)
    except OSError as exc:
        raise OutputError(f"cannot read `{path}` to see what it is: "
                          f"{exc.strerror or exc}") from None
    finally:
        os.close(handle)


def special_kind(path: str, status: os.stat_result | None = None) -> str | None:
    """What `path` is when it exists and is not a regular file or folder ("a FIFO", "a
    device", ...), found with `stat` alone (or from `status`), so nothing is opened; None
    otherwise."""
    if status is None:
        try:
            status = os.stat(path)
        except OSError:
            return None
    mode = status.st_mode
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "not a regular file"
    return None


def starts_with(mark: str) -> Callable[[bytes], bool]:
    """An `is_ours` for text files whose first bytes are `mark`."""
    return lambda head: head.startswith(mark.encode())
