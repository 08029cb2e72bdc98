"""Opt-in feature cache: one ``.npy`` per (images, extractor, weights), written atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Optional

import numpy as np

__all__ = ["cache_path", "load_cached", "save_atomic"]


def cache_path(cache_dir: str, images_fp: str, extractor: str, weights_id: str) -> str:
    key = hashlib.blake2b(f"{images_fp}|{extractor}|{weights_id}".encode(), digest_size=16).hexdigest()
    return os.path.join(cache_dir, f"{extractor}-{key}.npy")


def load_cached(path: str) -> Optional[np.ndarray]:
    if not os.path.isfile(path):
        return None
    try:
        return np.load(path)
    except (OSError, ValueError):  # a foreign or damaged file: recompute and overwrite
        return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_atomic(path: str, features: np.ndarray) -> str:
    """Write ``features`` to ``path`` via a temporary file and a rename: never a partial file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp.npy")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, features)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the user's usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
