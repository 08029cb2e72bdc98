"""``.npy`` and ``.npz`` files read only as far as their headers are true.

``numpy.load`` trusts a file's header: an ``.npz`` member whose header claims 10¹² rows makes it allocate
terabytes (``MemoryError``) before a byte of data is read. Here every header is read first and its shape ×
item size compared with the bytes the file really holds; only then is an array allocated (at most the file's
size) and filled. Every failure is a :class:`NpyError` whose message says what is wrong, without the path
(the caller names the file).
"""

from __future__ import annotations

import math
import os
import zipfile
from typing import IO, Callable, NamedTuple, Optional

import numpy as np

__all__ = ["NpyError", "NpyHeader", "read_header", "npy_header", "read_npz"]

_CHUNK = 1 << 20  # bytes read at a time into an array (small: the buffer is reused, not faulted in anew)
_BAD_ZIP = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError)


class NpyError(ValueError):
    """A ``.npy``/``.npz`` file that is not what its header or its name says."""


class NpyHeader(NamedTuple):
    """One array's header: its shape, dtype, order, and where its data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int

    @property
    def nbytes(self) -> int:
        """The bytes of data the header claims."""
        return math.prod(self.shape) * self.dtype.itemsize


def read_header(fh: IO[bytes]) -> NpyHeader:
    """The header of the ``.npy`` array at the current position of ``fh`` (nothing else read)."""
    start = fh.tell()
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise NpyError(f"unknown .npy format version {version}")
    except NpyError:
        raise
    except (ValueError, EOFError, SyntaxError, TypeError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split(". ")[0].split()) or type(exc).__name__
        raise NpyError(f"not a .npy array ({reason})") from None
    if dtype.hasobject:
        raise NpyError(f"holds Python objects (dtype {dtype}), not a plain array")
    return NpyHeader(tuple(int(s) for s in shape), dtype, bool(fortran), fh.tell() - start)


def npy_header(fh: IO[bytes]) -> NpyHeader:
    """The header of the ``.npy`` file open as ``fh``, checked against the file's size."""
    header = read_header(fh)
    size = os.fstat(fh.fileno()).st_size
    _check_size(header, size - header.offset)
    return header


def _check_size(header: NpyHeader, held: int) -> None:
    if header.nbytes != held:
        dims = " × ".join(map(str, header.shape)) or "a scalar"
        raise NpyError(
            f"its header claims {dims} {header.dtype} values ({header.nbytes:,} bytes) but it holds {held:,} bytes "
            f"of data (truncated, appended to or damaged)"
        )


ShapeCheck = Callable[[str, NpyHeader], Optional[str]]


def read_npz(fh: IO[bytes], names: tuple[str, ...], check: ShapeCheck) -> dict[str, np.ndarray]:
    """The arrays ``names`` of the uncompressed ``.npz`` open as ``fh`` (as written by ``numpy.savez``).

    ``check(name, header)``: the problem with an array's declared shape and dtype, or None; asked before
    the array is allocated. The archive must hold exactly ``names``; each member's CRC is verified.
    """
    size = os.fstat(fh.fileno()).st_size
    try:
        with zipfile.ZipFile(fh) as zf:
            found = sorted(zf.namelist())
            expected = sorted(f"{name}.npy" for name in names)
            if found != expected:
                raise NpyError(f"holds {found}; expected the arrays {expected}")
            return {name: _member(zf, name, size, check) for name in names}
    except NpyError:
        raise
    except _BAD_ZIP as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise NpyError(f"not a complete .npz archive ({reason})") from None


def _member(zf: zipfile.ZipFile, name: str, size: int, check: ShapeCheck) -> np.ndarray:
    info = zf.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size or info.file_size > size:
        raise NpyError(
            f"member {name}.npy is compressed or claims {info.file_size:,} bytes in a file of {size:,}; expected the "
            f"uncompressed arrays numpy.savez writes"
        )
    with zf.open(info) as member:
        header = read_header(member)
        problem = check(name, header)
        if problem:
            raise NpyError(f"{name}.npy {problem}")
        _check_size(header, info.file_size - header.offset)
        array = np.empty(header.shape, header.dtype, order="F" if header.fortran else "C")
        view = array.reshape(-1, order="A").view(np.uint8)
        filled = 0
        while filled < header.nbytes:  # reading the last byte checks the member's CRC
            chunk = member.read(min(_CHUNK, header.nbytes - filled))
            if not chunk:
                raise NpyError(f"member {name}.npy ends after {filled:,} of {header.nbytes:,} bytes")
            view[filled : filled + len(chunk)] = np.frombuffer(chunk, np.uint8)
            filled += len(chunk)
    return array
