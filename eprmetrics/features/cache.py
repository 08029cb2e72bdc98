"""Opt-in feature cache: one ``.npy`` per (images, extractor, weights), written atomically, checked when read.

An entry is bound to what it claims: its key hashes the images' bytes (each length-prefixed), the
extractor's identity and its weights' content; a hit is used only when the file is a regular ``.npy`` of
float32 with one row per image, the extractor's width (when known) and only finite values. Anything else
is a miss — recomputed and overwritten, with a warning naming the entry. Runs that skipped images are
not cached (their rows would not match the images), so a hit always has one row per image.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Optional

import numpy as np

from ..fileio import InputFileError, atomic_write, open_regular
from ..npyfile import read_header

__all__ = ["cache_path", "load_cached", "save_atomic", "CACHE_VERSION"]

CACHE_VERSION = "v2"  # v1 keys concatenated image bytes without lengths and named weights by path and mtime


def cache_path(cache_dir: str, images_fp: str, extractor: str, weights_id: str) -> str:
    key = hashlib.blake2b(f"{CACHE_VERSION}|{images_fp}|{extractor}|{weights_id}".encode(), digest_size=16).hexdigest()
    return os.path.join(cache_dir, f"{extractor}-{key}.npy")


def _read_entry(path: str, rows: int, dim: Optional[int]) -> np.ndarray:
    """The features in ``path`` if it holds ``rows`` × ``dim`` finite float32 values; a ValueError saying what
    it holds otherwise. The header is checked before the data is read, and the file's size against it."""
    want = f"{rows}×{dim if dim is not None else 'D'} float32 features"
    with open_regular(path, "cache_dir") as fh:
        shape, dtype, fortran, _ = read_header(fh)
        if dtype != np.dtype(np.float32) or len(shape) != 2 or shape[0] != rows or dim not in (None, shape[1]):
            raise ValueError(f"holds a {'×'.join(map(str, shape))} {dtype} array, not {want}")
        nbytes = shape[0] * shape[1] * 4
        if os.fstat(fh.fileno()).st_size != fh.tell() + nbytes:
            raise ValueError("is truncated or has trailing data")
        data = fh.read(nbytes)
    arr = np.frombuffer(data, np.float32).reshape(shape, order="F" if fortran else "C")
    if not np.isfinite(arr).all():
        raise ValueError("holds NaN or infinite values")
    return np.ascontiguousarray(arr).copy()


def load_cached(path: str, rows: int, dim: Optional[int] = None) -> Optional[np.ndarray]:
    """The cached features at ``path`` (``rows`` × ``dim``, dim unchecked when None), or None: absent, or not
    what the key claims (a warning names the entry; the caller recomputes and overwrites it)."""
    if not os.path.lexists(path):
        return None
    try:
        return _read_entry(path, rows, dim)
    except (InputFileError, OSError, ValueError, EOFError) as exc:
        reason = str(exc).split(f"{path} ", 1)[-1] if isinstance(exc, InputFileError) else str(exc)
        warnings.warn(f"cache_dir: the entry {path} {reason}; recomputing it", stacklevel=3)
        return None


def save_atomic(path: str, features: np.ndarray, what: str = "features") -> str:
    """Write ``features`` to ``path`` via a temporary file, ``fsync`` and a rename: never a partial file."""
    with atomic_write(path, what) as fh:
        np.save(fh, features)
    return path
