"""Files in and out, safely: every output written whole or not at all, every output place probed before the
work, every input a regular file of bounded size.

* :func:`probe_writable` — create and remove a temporary file where an output will go, *before* any work:
  a read-only file system, a missing permission or a full disk is found in a second, not after an hour;
* :func:`atomic_write` — write to a temporary file beside the target, flush and ``fsync``, then rename it
  over the target: a reader sees the old file or the new one, never a partial one, and a failure (``ENOSPC``,
  ``EROFS``, ``EFBIG``, Ctrl-C) leaves no temporary behind;
* :func:`atomic_folder` — the same for a folder of files (a manifold): written into a temporary sibling
  folder, then swapped in by renames, the old folder kept until the new one is complete;
* :func:`open_regular` — open an input for reading only when it is a regular file (never a FIFO, a device
  or a link to ``/dev/zero``) no larger than a byte cap.

Every failure is an :class:`OutputError` or :class:`InputFileError`: one line naming the path, what went
wrong and what to do (the CLI prints it and exits 2).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import sys
import tempfile
import uuid
from typing import IO, Iterator, Optional, Union

__all__ = [
    "OutputError",
    "InputFileError",
    "probe_writable",
    "atomic_write",
    "atomic_folder",
    "open_regular",
    "check_regular",
    "describe_os_error",
    "is_stream",
]

PathLike = Union[str, "os.PathLike[str]"]

_FIXES = {
    errno.ENOSPC: "the disk is full: free space or choose another place",
    errno.EDQUOT: "the disk quota is exhausted: free space or choose another place",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f): raise the limit or choose another place",
    errno.EROFS: "the file system is read-only: choose a writable place",
    errno.EACCES: "permission denied: choose a place you may write to",
    errno.EPERM: "operation not permitted: choose a place you may write to",
    errno.ENOENT: "a folder on the way does not exist: create it first",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file is where a folder is needed: move it or choose another place",
    errno.EISDIR: "it is a folder: give a file name",
    errno.ELOOP: "too many levels of symbolic links (a symlink loop): fix the link",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ENXIO: "no process reads it (a FIFO without a reader)",
}


_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


class OutputError(OSError):
    """An output could not be written (or its place cannot be written to); the message is one line."""


class InputFileError(ValueError):
    """An input file is not a regular file, or is larger than allowed; the message is one line."""


def describe_os_error(exc: BaseException) -> str:
    """What went wrong with a file, in words, and what to do about it (one line)."""
    code = getattr(exc, "errno", None)
    if code in _FIXES:
        return _FIXES[code]
    text = " ".join(str(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).split())
    if code is None and _SHORT_WRITE.search(text):  # numpy's tofile: a short fwrite, the errno lost
        return (
            f"only part of it could be written ({text}): the disk is full or a file size limit (ulimit -f) was "
            f"reached; free space or choose another place"
        )
    return text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def probe_writable(path: PathLike, what: str, folder: bool = False) -> None:
    """Check that an output can be written at ``path`` (``folder=True``: inside the folder ``path``) by
    creating and removing a small temporary file there. Missing folders are created (as the write itself
    would). Raises :class:`OutputError` naming ``what`` and ``path`` otherwise."""
    target = os.fspath(path)
    if not folder and is_stream(target):  # written straight to (see atomic_write): opening a FIFO would end it
        if not os.access(target, os.W_OK):
            code = errno.EACCES if os.path.exists(target) else errno.ENOENT
            raise OutputError(f"{what}: cannot write to {target}: {describe_os_error(OSError(code, ''))}")
        return
    place = target if folder else (os.path.dirname(os.path.abspath(target)) or ".")
    if not folder and os.path.isdir(target):
        raise OutputError(f"{what}: {target} is a folder; give a file name")
    if folder and os.path.exists(target) and not os.path.isdir(target):
        raise OutputError(f"{what}: {target} exists and is not a folder; give a folder")
    try:
        if os.path.islink(place):  # a link to nothing or a loop: say so (makedirs would say "a file is there")
            os.stat(place)
        os.makedirs(place, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=place, prefix=".eprmetrics-probe-")
        try:
            block = memoryview(b"\0" * 4096)  # a full disk refuses data, not always the empty file
            while block:  # a size limit or a nearly full disk writes part of it first, then refuses the rest
                block = block[os.write(fd, block) :]
            os.fsync(fd)
        finally:
            os.close(fd)
            os.remove(tmp)
    except OSError as exc:
        raise OutputError(f"{what}: cannot write to {place}: {describe_os_error(exc)}") from exc


def is_stream(path: PathLike) -> bool:
    """Whether ``path`` is written as a stream, not replaced: a FIFO, a device or a socket (links followed), or
    a path under ``/dev/`` or ``/proc/`` (``/dev/stdout``, ``/proc/self/fd/1``, ``>(jq .)``'s ``/dev/fd/63``).
    Renaming a file over such a path would replace the link or node itself (as root, ``/dev/stdout``)."""
    target = os.path.abspath(os.fspath(path))
    if target.startswith(("/dev/", "/proc/")):
        return True
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _standard_fd(target: str) -> Optional[int]:
    """1 or 2 when ``target`` is the file this process's stdout or stderr writes to, else None."""
    st = os.stat(target)
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            other = os.fstat(fd)
            if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                return fd
    return None


@contextlib.contextmanager
def _write_stream(target: str, what: str, mode: str) -> Iterator[IO]:
    """Write straight to the stream ``target``; a FIFO nobody reads is an error, not a hang (``O_NONBLOCK``).
    When it is this process's stdout or stderr (``/dev/stdout`` redirected to a file), it is written through
    that descriptor, after what was printed: a new open would start at offset 0, over the report."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        std = _standard_fd(target)
        fd = os.dup(std) if std is not None else os.open(target, os.O_WRONLY | getattr(os, "O_NONBLOCK", 0))
        os.set_blocking(fd, True)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
    except OSError as exc:
        raise OutputError(f"{what}: could not write {target}: {describe_os_error(exc)}") from exc


@contextlib.contextmanager
def atomic_write(path: PathLike, what: str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit flush, ``fsync`` and rename it
    over ``path``. On any error the temporary file is removed and ``path`` keeps its old content (or stays
    absent); an :class:`OSError` becomes an :class:`OutputError` naming ``what`` and ``path``. A symlink at
    ``path`` is replaced, never written through — except to a stream (:func:`is_stream`: ``/dev/stdout``, a
    FIFO, a device), which is written straight to, as nothing partial can be left there."""
    target = os.fspath(path)
    if is_stream(target):
        with _write_stream(target, what, mode) as fh:
            yield fh
        return
    folder = os.path.dirname(os.path.abspath(target)) or "."
    tmp: Optional[str] = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(target) + ".", suffix=".tmp")
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: the user's usual permissions
        os.replace(tmp, target)
        tmp = None
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"{what}: could not write {target}: {describe_os_error(exc)}") from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(tmp)


@contextlib.contextmanager
def atomic_folder(path: PathLike, what: str, overwrite: bool = False) -> Iterator[str]:
    """Yield a new temporary folder beside ``path`` to write a folder's files into; on a clean exit it
    replaces ``path``: the old folder (if any, and only with ``overwrite=True``) is renamed aside, the new
    one renamed in, then the old one removed. A failure at any point leaves ``path`` as it was and removes
    the temporary folder. ``path`` existing without ``overwrite`` is an :class:`OutputError` raised before
    anything is written; so is ``path`` being a symlink (never written through)."""
    target = os.path.abspath(os.fspath(path))
    if os.path.islink(target):
        raise OutputError(f"{what}: {target} is a symbolic link; give a real folder (links are not written through)")
    if os.path.lexists(target) and not overwrite:
        raise OutputError(f"{what}: {target} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if os.path.lexists(target) and not os.path.isdir(target):
        raise OutputError(f"{what}: {target} exists and is not a folder")
    parent = os.path.dirname(target)
    tag = uuid.uuid4().hex[:8]
    new, old = f"{target}.tmp-{tag}", f"{target}.old-{tag}"
    try:
        os.makedirs(parent, exist_ok=True)
        os.mkdir(new)
    except OSError as exc:
        raise OutputError(f"{what}: could not create a folder beside {target}: {describe_os_error(exc)}") from exc
    try:
        yield new
        _fsync_folder(new)
        moved = False
        if os.path.lexists(target):
            os.rename(target, old)
            moved = True
        try:
            os.rename(new, target)
        except BaseException:
            if moved:
                os.rename(old, target)
            raise
        _fsync_folder(parent)
        shutil.rmtree(old, ignore_errors=True)
    except OutputError:
        shutil.rmtree(new, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(new, ignore_errors=True)
        raise OutputError(f"{what}: could not write {target}: {describe_os_error(exc)}") from exc
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise


def _fsync_folder(folder: str) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened or synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_regular(path: PathLike, what: str, max_bytes: Optional[int] = None) -> int:
    """The size of ``path`` when it is a regular file (links followed) no larger than ``max_bytes``;
    an :class:`InputFileError` naming ``what`` and ``path`` otherwise (a FIFO, a device, a folder, a link
    loop, missing). Nothing is opened, so a FIFO cannot block."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise InputFileError(f"{what}: cannot read {p}: {describe_os_error(exc)}") from exc
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
        )
        raise InputFileError(
            f"{what}: {p} is {kind} (a device, pipe or socket cannot be read as data); give a regular file"
        )
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputFileError(
            f"{what}: {p} is {st.st_size:,} bytes, over the limit of {max_bytes:,}; "
            f"raise the limit if the file is genuine"
        )
    return st.st_size


def open_regular(path: PathLike, what: str, max_bytes: Optional[int] = None) -> IO[bytes]:
    """Open ``path`` for binary reading only if it is a regular file within ``max_bytes``. The check is
    made on the opened descriptor too (``O_NONBLOCK``, so a FIFO swapped in after the check cannot block the
    open; ``fstat`` then refuses it)."""
    p = os.fspath(path)
    check_regular(p, what, max_bytes)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputFileError(f"{what}: cannot read {p}: {describe_os_error(exc)}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (max_bytes is not None and st.st_size > max_bytes):
        os.close(fd)
        raise InputFileError(
            f"{what}: {p} changed while it was opened and is no longer a regular file within the limit"
        )
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")
