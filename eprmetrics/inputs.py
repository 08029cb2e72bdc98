"""Feature inputs: numpy / torch arrays and ``.npy`` / ``.npz`` paths → :class:`FeatureSet`.

A :class:`FeatureSet` keeps the caller's array as it is (a memory map stays a
memory map, float64 stays float64) and hands out row blocks on demand, so the
tiled engine never needs a second full copy and borderline decisions can be
re-made from the original values.
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch

__all__ = ["FeatureSet", "FeatureSubset", "as_feature_set", "validate_pair", "FeaturesLike"]

FeaturesLike = Union[np.ndarray, torch.Tensor, str, os.PathLike, "FeatureSet"]

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)
_CHECK_ROWS = 16384  # rows per block when scanning for NaN/Inf


class FeatureSet:
    """An n×d matrix of features with a name (``"real"`` or ``"fake"``).

    Args:
        data: 2-D numpy array (memory maps welcome) or torch tensor.
        name: the argument name used in error messages.
    """

    def __init__(self, data: Union[np.ndarray, torch.Tensor], name: str) -> None:
        self.data = data
        self.name = name

    @property
    def n(self) -> int:
        return int(self.data.shape[0])

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])

    @property
    def is_float64(self) -> bool:
        return self.data.dtype in (np.float64, torch.float64)

    def block(self, start: int, stop: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Rows ``start:stop`` as a tensor of ``dtype`` on ``device``."""
        rows = self.data[start:stop]
        if isinstance(rows, np.ndarray):
            # torch refuses read-only memory (memmaps): copy those rows, borrow the others.
            rows = torch.from_numpy(np.ascontiguousarray(rows) if rows.flags.writeable else np.array(rows))
        return rows.to(device=device, dtype=dtype)

    def take(self, index: torch.Tensor, device: torch.device, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Rows at ``index`` (1-D int64) as ``dtype`` on ``device``."""
        if isinstance(self.data, np.ndarray):
            rows = torch.from_numpy(np.asarray(self.data[index.cpu().numpy()]))
        else:
            rows = self.data[index.to(self.data.device)]
        return rows.to(device=device, dtype=dtype)

    def __repr__(self) -> str:
        return f"FeatureSet({self.name!r}, n={self.n}, dim={self.dim}, dtype={self.data.dtype})"


class FeatureSubset(FeatureSet):
    """Rows ``index`` of another :class:`FeatureSet`, without copying them (e.g. its hubs)."""

    def __init__(self, base: FeatureSet, index: torch.Tensor) -> None:
        super().__init__(base.data, base.name)
        self.base, self.index = base, index

    @property
    def n(self) -> int:
        return int(self.index.numel())

    def block(self, start: int, stop: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return self.base.take(self.index[start:stop], device, dtype)

    def take(self, index: torch.Tensor, device: torch.device, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return self.base.take(self.index[index.to(self.index.device)], device, dtype)


def _load_path(path: Union[str, os.PathLike], name: str) -> np.ndarray:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no such file or directory: {path!r}")
    if path.endswith(".npy"):
        return np.load(path, mmap_mode="r")
    if path.endswith(".npz"):
        with np.load(path) as archive:
            keys = list(archive.keys())
            if len(keys) == 1:
                return archive[keys[0]]
            if "features" in keys:
                return archive["features"]
            raise ValueError(
                f"{name}: {path!r} holds arrays {keys}; expected a single array or one named 'features'"
            )
    raise ValueError(f"{name}: expected a folder of images, a .zip, or features as .npy/.npz, got {path!r}")


def as_feature_set(value: FeaturesLike, name: str) -> FeatureSet:
    """Turn ``value`` into a validated-shape :class:`FeatureSet`.

    Raises:
        TypeError: for an unsupported input type.
        ValueError: for a non-2-D or non-float array.
        FileNotFoundError: for a missing path.
    """
    if isinstance(value, FeatureSet):
        return value
    if isinstance(value, (str, os.PathLike)):
        value = _load_path(value, name)
    if isinstance(value, np.ndarray):
        if value.dtype not in _FLOAT_DTYPES and not np.issubdtype(value.dtype, np.integer):
            raise ValueError(f"{name}: expected a float array, got dtype {value.dtype}")
        if np.issubdtype(value.dtype, np.integer):
            value = value.astype(np.float64)
    elif isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"{name}: expected a float tensor, got dtype {value.dtype}")
        if not value.is_floating_point():
            value = value.to(torch.float64)
        value = value.detach()
    else:
        raise TypeError(
            f"{name}: expected features (numpy array, torch tensor, .npy/.npz path) or images (folder, .zip, "
            f"list of image files, uint8 N×3×H×W), got {type(value).__name__}"
        )
    if value.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples × dim), got shape {tuple(value.shape)}")
    return FeatureSet(value, name)


def validate_pair(real: FeatureSet, fake: FeatureSet, k_max: int) -> None:
    """Check equal dimension, enough samples for ``k_max`` and finite values.

    Raises:
        ValueError: naming the argument and the values received.
    """
    if real.dim != fake.dim:
        raise ValueError(f"real and fake must have the same feature dimension, got real dim {real.dim} and fake dim {fake.dim}")
    for fs in (real, fake):
        if fs.dim == 0:
            raise ValueError(f"{fs.name}: expected at least one feature column, got shape {tuple(fs.data.shape)}")
        if fs.n < k_max + 1:
            raise ValueError(f"{fs.name}: k={k_max} needs at least {k_max + 1} samples, got {fs.n}")
        _check_finite(fs)


def _check_finite(fs: FeatureSet) -> None:
    for start in range(0, fs.n, _CHECK_ROWS):
        rows = fs.data[start:start + _CHECK_ROWS]
        ok = torch.isfinite(rows).all(dim=1) if isinstance(rows, torch.Tensor) else np.isfinite(rows).all(axis=1)
        if not bool(ok.all()):
            bad = start + int(np.flatnonzero(~np.asarray(ok.cpu() if isinstance(ok, torch.Tensor) else ok))[0])
            raise ValueError(f"{fs.name}: features must be finite, found NaN or Inf in row {bad}")
