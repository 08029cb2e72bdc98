"""The neighbour searches the figures need, on one process: exact k-NN graphs and each fake's nearest real.

The engine here is given a one-process :class:`~eprmetrics.engine.World`, so a figure drawn by rank 0
alone after a ``torchrun`` job does not wait for ranks that have finished.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ..engine import FeatureSet, TileEngine, World, default_memory_budget, resolve_device
from ..inputs import as_feature_set, validate_pair
from ..neighbours import exact_knn
from ..validation import check_int

__all__ = ["NearestPairs", "exact_graph_indices", "nearest_real_pairs"]


def _engine(dim: int, device: Any) -> TileEngine:
    dev = resolve_device(device)
    return TileEngine(dim, dev, default_memory_budget(dev), world=World())


def exact_graph_indices(fs: FeatureSet, k: int, device: Any = "auto") -> np.ndarray:
    """The exact k nearest other points of every row of ``fs`` (n × k indices, ties by index)."""
    engine = _engine(fs.dim, device)
    with torch.inference_mode():
        p = engine.prepare(fs, engine.center_of(fs))
        return exact_knn(engine, p, k).index.cpu().numpy()


@dataclasses.dataclass
class NearestPairs:
    """The fakes closest to a real sample, closest first: ``ratio = distance / radius`` ascending.

    ``fake``: fake indices; ``real``: each one's nearest real (Euclidean); ``distance``: between the two;
    ``radius``: that real's distance to its k-th nearest other real; all in the features' units.
    """

    fake: np.ndarray
    real: np.ndarray
    distance: np.ndarray
    radius: np.ndarray
    ratio: np.ndarray
    k: int


def nearest_real_pairs(
    real_features: Any, fake_features: Any, n: int = 8, *, k: int = 3, device: Any = "auto"
) -> NearestPairs:
    """The ``n`` fakes with the smallest ratio of the distance to their nearest real over that real's k-NN
    radius (ratio ≪ 1: far closer to a real sample than its own neighbours are — a possible copy).

    Distances are float64 from direct differences (a copy has distance 0); the nearest real is found with
    the engine's fp32 tiles.
    """
    n, k = check_int(n, "n", fix="e.g. n=8"), check_int(k, "k", fix="e.g. k=3")
    real = as_feature_set(real_features, "real_features")
    fake = as_feature_set(fake_features, "fake_features")
    validate_pair(real, fake, k)
    engine = _engine(real.dim, device)
    with torch.inference_mode():
        center = engine.center_of(real)
        rp, fp = engine.prepare(real, center), engine.prepare(fake, center)
        radius = exact_knn(engine, rp, k).sqdist[:, k - 1].sqrt()
        nearest = engine.rect_topk(fp, rp, 1)[1][:, 0]
        rows = torch.arange(fp.n, device=engine.device)
        dist = engine.exact_sqdist_pairs(fp, rows, rp, nearest).sqrt()
    dist_np, nearest_np = dist.cpu().numpy() / real.scale, nearest.cpu().numpy()
    radius_np = radius.cpu().numpy()[nearest_np] / real.scale
    with np.errstate(divide="ignore", invalid="ignore"):  # a real with k copies of itself has radius 0
        ratio = np.where(dist_np == 0, 0.0, dist_np / radius_np)
    order = np.argsort(ratio, kind="stable")[: min(n, fake.n)]
    return NearestPairs(order, nearest_np[order], dist_np[order], radius_np[order], ratio[order], k)
