"""Float64 brute-force references (direct differences, full matrices): small inputs only."""

from __future__ import annotations

import numpy as np

_BLOCK_BYTES = 64 << 20  # the n × m × d float64 differences are made a row block at a time


def sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances from direct differences in float64, a block of rows at a time: the same values as
    one broadcast, in bounded memory (3000 × 3000 × 256 at once was 17 GiB; the suite must stay under 4)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.empty((a.shape[0], b.shape[0]))
    rows = max(1, _BLOCK_BYTES // max(1, 8 * b.shape[0] * max(1, a.shape[1])))
    for i in range(0, a.shape[0], rows):
        out[i : i + rows] = ((a[i : i + rows, None, :] - b[None, :, :]) ** 2).sum(-1)
    return out


def radii2(x: np.ndarray, k: int) -> np.ndarray:
    """Squared distance to the k-th nearest other point (self excluded by position)."""
    d = sqdist(x, x)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, k - 1]


def brute_pr(real, fake, k: int = 3, strict: bool = False) -> dict:
    r_r, r_f = radii2(real, k), radii2(fake, k)
    d = sqdist(real, fake)  # rows real, cols fake
    inside = np.less if strict else np.less_equal
    in_real_balls = inside(d, r_r[:, None])
    in_fake_balls = inside(d, r_f[None, :])
    return {
        "precision": in_real_balls.any(0).mean(),
        "recall": in_fake_balls.any(1).mean(),
        "density": in_real_balls.sum() / (k * len(fake)),
        "coverage": in_real_balls.any(1).mean(),
        "precision_hits": in_real_balls.any(0),
        "recall_hits": in_fake_balls.any(1),
    }


def brute_realism(real, fake, k: int = 3) -> np.ndarray:
    r = np.sqrt(radii2(real, k))
    keep = r <= np.median(r)
    d = np.sqrt(sqdist(real[keep], fake))
    with np.errstate(divide="ignore"):
        return (r[keep][:, None] / d).max(0)


def lattice(rng, n, dim, high=3):
    """Small-integer points: duplicates and exact distance ties everywhere."""
    return rng.integers(0, high, size=(n, dim)).astype(np.float32)
