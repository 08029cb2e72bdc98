"""Hubness: k-occurrence counts of a k-NN graph and hub selection.

``N_k(x)`` is the number of other points whose k nearest neighbours (self
excluded) include ``x``. Hubs are the points with ``N_k(x) ≥ t``
(Liang et al., ICML 2022; thesis Sec. 4.5): at k = 3 about 72% of VGG-16
features of FFHQ have ``N_k ≥ 1`` and about 38% have ``N_k ≥ 3``.

Example:
    >>> import numpy as np
    >>> from eprmetrics.neighbours.hubs import k_occurrence, hub_mask
    >>> idx = np.array([[1, 2], [0, 2], [0, 1], [0, 2]])  # 2-NN lists of 4 points
    >>> k_occurrence(idx, 4).tolist()
    [3, 2, 3, 0]
    >>> hub_mask(k_occurrence(idx, 4), t=3).tolist()
    [True, False, True, False]
"""

from __future__ import annotations

import dataclasses
from typing import Union

import numpy as np
import torch

__all__ = ["k_occurrence", "hub_mask", "HubStats", "hub_stats"]

ArrayLike = Union[np.ndarray, torch.Tensor]


def k_occurrence(indices: ArrayLike, n: int) -> np.ndarray:
    """``N_k`` of every point from an (n × k) neighbour-index array (self already excluded).

    Negative indices (a backend's "not found") are ignored.
    """
    idx = indices.detach().cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
    if idx.ndim != 2:
        raise ValueError(f"indices: expected an (n, k) array, got shape {idx.shape}")
    flat = idx.reshape(-1)
    flat = flat[flat >= 0]
    if flat.size and flat.max() >= n:
        raise ValueError(f"indices: found index {int(flat.max())} for a set of n={n} points")
    return np.bincount(flat, minlength=n).astype(np.int64)


def hub_mask(occurrence: np.ndarray, t: int) -> np.ndarray:
    """Boolean mask of hubs, ``N_k ≥ t``."""
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
        raise ValueError(f"t: expected a non-negative int, got {t!r}")
    return np.asarray(occurrence) >= t


@dataclasses.dataclass
class HubStats:
    """Hub count and fraction at threshold ``t``, and the N_k histogram (``histogram[v]`` = #points with N_k = v)."""

    t: int
    n: int
    n_hubs: int
    histogram: list[int]

    @property
    def fraction(self) -> float:
        return self.n_hubs / self.n if self.n else 0.0

    def fraction_at_least(self, value: int) -> float:
        return sum(self.histogram[value:]) / self.n if self.n else 0.0


def hub_stats(occurrence: np.ndarray, t: int) -> HubStats:
    occ = np.asarray(occurrence)
    return HubStats(
        t=t,
        n=int(occ.size),
        n_hubs=int(hub_mask(occ, t).sum()),
        histogram=np.bincount(occ).tolist() if occ.size else [],
    )
