"""hnswlib backend (M 32, ef_construction 400, ef 200): J ≥ 0.999 at 20k × 4096 in our measurements."""

from __future__ import annotations

import numpy as np
import torch

from ...validation import require
from .base import ANNBackend, register_backend

__all__ = ["HNSWLib"]


@register_backend
class HNSWLib(ANNBackend):
    name = "hnswlib"
    extra = "hnswlib"
    module = "hnswlib"
    defaults = {"M": 32, "ef_construction": 400, "ef": 200, "num_threads": -1}

    def build(self, x: np.ndarray, *, seed: int, device: torch.device) -> None:
        hnswlib = require("hnswlib", self.extra, self.name)
        p = self.used_params
        index = hnswlib.Index(space="l2", dim=x.shape[1])
        index.init_index(max_elements=x.shape[0], ef_construction=p["ef_construction"], M=p["M"], random_seed=seed)
        index.add_items(x, np.arange(x.shape[0]), num_threads=p["num_threads"])
        self.index = index

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        self.index.set_ef(max(self.used_params["ef"], k))
        labels, dist = self.index.knn_query(x, k=k, num_threads=self.used_params["num_threads"])
        return dist, labels, True  # hnswlib "l2" is the squared distance
