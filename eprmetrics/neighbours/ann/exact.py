"""The ``exact`` backend: the tiled distance engine's symmetric self pass."""

from __future__ import annotations

import numpy as np
import torch

from ...engine import FeatureSet, TileEngine, default_memory_budget
from .base import ANNBackend, register_backend

__all__ = ["ExactBackend"]


@register_backend
class ExactBackend(ANNBackend):
    """Exact k-NN by fp32 GEMM tiles (ties resolved at fp32 precision).

    ``memory_budget`` bounds the tile workspace (default as for :func:`~eprmetrics.compute_pr`).
    """

    name = "exact"
    defaults = {"memory_budget": None}
    supports_queries = False

    def build(self, x: np.ndarray, *, seed: int, device: torch.device) -> None:
        self.x, self.device = x, device

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        from ..radii import Radii

        budget = self.used_params["memory_budget"] or default_memory_budget(self.device)
        engine = TileEngine(x.shape[1], self.device, budget)
        fs = FeatureSet(x, "X")
        with torch.inference_mode():
            p = engine.prepare(fs, engine.center_of(fs))
            radii = Radii(engine, p, k - 1)
        # The self pass already excludes the query: report it first so the contract drops it.
        n = x.shape[0]
        idx = np.concatenate([np.arange(n)[:, None], radii.idx[:, : k - 1].cpu().numpy()], axis=1)
        dist = np.concatenate([np.zeros((n, 1), np.float32), radii.vals[:, : k - 1].cpu().numpy()], axis=1)
        return dist, idx, True
