"""faiss backends: IVF-Flat, IVF-PQ, IVF-SQ, LSH and HNSW behind the common contract.

Defaults come from measurements on 20k × 4096 and 100k × 512 synthetic sets with
strong hubness (``docs/ann-notes.md``, re-measured by
``benchmarks/bench_ann.py``): each holds hub-label Jaccard ≥ 0.99 against the
exact graph. Quantised indexes (PQ, LSH) re-rank their candidates with exact
distances (``IndexRefineFlat``); without it their recall at 4096-d is far below
50%. When the device is CUDA and the faiss build has GPUs
(``faiss.get_num_gpus() > 0``, checked before any GPU call: a GPU build without
a GPU aborts the interpreter), the IVF family runs on the GPU.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ...validation import require
from .base import ANNBackend, register_backend

__all__ = ["FaissIVF", "FaissIVFPQ", "FaissIVFSQ", "FaissLSH", "FaissHNSW", "faiss_gpu_available"]


def _faiss(name: str):
    return require("faiss", "faiss", name)


def faiss_gpu_available() -> bool:
    """True when a GPU faiss build sees at least one GPU (safe to call on any build)."""
    try:
        import faiss
    except ImportError:
        return False
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def _train_sample(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    if x.shape[0] <= size:
        return x
    rows = np.sort(np.random.default_rng(seed).choice(x.shape[0], size, replace=False))
    return np.ascontiguousarray(x[rows])


def _seed_clustering(index: Any, seed: int) -> None:
    """Seed the k-means that trains ``index``'s coarse quantizer (``cp``: faiss's ClusteringParameters).

    Also silences faiss's "please provide at least … training points" line on stderr: the lists are sized
    by eprmetrics on purpose, and that threshold only ever prints (it changes no clustering).
    """
    try:
        index.cp.seed = seed
        index.cp.min_points_per_centroid = 1
    except AttributeError:
        pass


class _FaissBase(ANNBackend):
    extra = "faiss"
    module = "faiss"
    gpu_capable = False

    def _maybe_gpu(self, index: Any, device: torch.device) -> Any:
        faiss = _faiss(self.name)
        self.on_gpu = False
        if self.gpu_capable and device.type == "cuda" and faiss_gpu_available():
            res = faiss.StandardGpuResources()
            self._gpu_res = res  # keep alive as long as the index
            self.on_gpu = True
            return faiss.index_cpu_to_gpu(res, device.index or 0, index)
        return index

    def _refined(self, base: Any, x: np.ndarray) -> None:
        """Index ``x`` in trained ``base`` wrapped by exact re-ranking of ``k_factor``·k candidates (CPU)."""
        faiss = _faiss(self.name)
        self._base = base
        index = faiss.IndexRefineFlat(base)
        index.k_factor = self.used_params["k_factor"]
        index.add(x)
        self.index = index
        self.on_gpu = False

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        dist, idx = self.index.search(x, k)
        return dist, idx, True  # faiss L2 indexes return squared distances


class _IVFMixin(_FaissBase):
    """nlist ≈ min(4√n, n/39) (≥ 39 training points per list); nprobe ≈ 10% of nlist (≥ 8)."""

    def resolve_params(self, n: int, dim: int) -> dict[str, Any]:
        p = dict(self.params)
        if p["nlist"] is None:
            p["nlist"] = max(1, min(int(4 * math.sqrt(n)), n // 39))
        if p["nprobe"] is None:
            p["nprobe"] = min(p["nlist"], max(8, math.ceil(0.1 * p["nlist"])))
        return p

    def _train_add(self, index: Any, x: np.ndarray, seed: int, device: torch.device) -> None:
        p = self.used_params
        _seed_clustering(index, seed)
        index = self._maybe_gpu(index, device)
        if self.on_gpu:  # a GPU IVF index has clustering parameters of its own (not copied from the CPU one)
            _seed_clustering(index, seed)
        index.train(_train_sample(x, p["nlist"] * p["train_per_list"], seed))
        index.add(x)
        index.nprobe = p["nprobe"]
        self.index = index


@register_backend
class FaissIVF(_IVFMixin, _FaissBase):
    """faiss ``IndexIVFFlat``: exact distances within the probed lists."""

    name = "faiss-ivf"
    gpu_capable = True
    defaults = {"nlist": None, "nprobe": None, "train_per_list": 64}

    def build(self, x: np.ndarray, *, seed: int, device: torch.device) -> None:
        faiss = _faiss(self.name)
        d, p = x.shape[1], self.used_params
        self._quantizer = faiss.IndexFlatL2(d)
        self._train_add(faiss.IndexIVFFlat(self._quantizer, d, p["nlist"]), x, seed, device)


@register_backend
class FaissIVFSQ(_IVFMixin, _FaissBase):
    """faiss ``IndexIVFScalarQuantizer``; ``qtype="fp16"`` by default (SQ8 plateaus near hub J 0.97)."""

    name = "faiss-ivfsq"
    gpu_capable = True
    defaults = {"nlist": None, "nprobe": None, "train_per_list": 64, "qtype": "fp16"}
    _QTYPES = {"fp16": "QT_fp16", "8bit": "QT_8bit", "sq8": "QT_8bit"}

    def build(self, x: np.ndarray, *, seed: int, device: torch.device) -> None:
        faiss = _faiss(self.name)
        d, p = x.shape[1], self.used_params
        if p["qtype"] not in self._QTYPES:
            raise ValueError(f"backend {self.name!r}: qtype expected one of {sorted(self._QTYPES)}, got {p['qtype']!r}")
        qt = getattr(faiss.ScalarQuantizer, self._QTYPES[p["qtype"]])
        self._quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFScalarQuantizer(self._quantizer, d, p["nlist"], qt, faiss.METRIC_L2)
        self._train_add(index, x, seed, device)


@register_backend
class FaissIVFPQ(_IVFMixin, _FaissBase):
    """faiss ``IndexIVFPQ`` re-ranked by ``IndexRefineFlat`` (``k_factor`` × k exact candidates)."""

    name = "faiss-ivfpq"
    gpu_capable = False  # the refine step needs the raw vectors on the CPU
    defaults = {"nlist": None, "nprobe": None, "train_per_list": 64, "m": None, "nbits": 8, "k_factor": 64}

    def resolve_params(self, n: int, dim: int) -> dict[str, Any]:
        p = super().resolve_params(n, dim)
        if p["m"] is None:  # sub-vectors of ~16 dims, m dividing d
            target = max(1, dim // 16)
            p["m"] = max(m for m in range(1, target + 1) if dim % m == 0)
        return p

    def build(self, x: np.ndarray, *, seed: int, device: torch.device) -> None:
        faiss = _faiss(self.name)
        d, p = x.shape[1], self.used_params
        if d % p["m"]:
            raise ValueError(f"backend {self.name!r}: m={p['m']} must divide the dimension {d}")
        self._quantizer = faiss.IndexFlatL2(d)
        base = faiss.IndexIVFPQ(self._quantizer, d, p["nlist"], p["m"], p["nbits"])
        _seed_clustering(base, seed)
        base.train(_train_sample(x, max(p["nlist"] * p["train_per_list"], 256 * 39), seed))
        base.nprobe = p["nprobe"]
        self._refined(base, x)


@register_backend
class FaissLSH(_FaissBase):
    """faiss ``IndexLSH`` (random rotation, trained thresholds) re-ranked by ``IndexRefineFlat``.

    ``index_factory("LSH")`` has neither rotation nor thresholds: on
    non-negative features every code is identical. ``nbits`` defaults to 2·d.
    """

    name = "faiss-lsh"
    defaults = {"nbits": None, "k_factor": 256}

    def resolve_params(self, n: int, dim: int) -> dict[str, Any]:
        p = dict(self.params)
        if p["nbits"] is None:
            p["nbits"] = 2 * dim
        return p

    def build(self, x: np.ndarray, *, seed: int, device: torch.device) -> None:
        faiss = _faiss(self.name)
        p = self.used_params
        base = faiss.IndexLSH(x.shape[1], p["nbits"], True, True)  # rotate_data, train_thresholds
        if hasattr(base, "rrot"):
            base.rrot.init(seed)
        base.train(x)
        self._refined(base, x)


@register_backend
class FaissHNSW(_FaissBase):
    """faiss ``IndexHNSWFlat`` (M 32, efConstruction 200, efSearch 128)."""

    name = "faiss-hnsw"
    defaults = {"M": 32, "efConstruction": 200, "efSearch": 128}

    def build(self, x: np.ndarray, *, seed: int, device: torch.device) -> None:
        faiss = _faiss(self.name)
        p = self.used_params
        index = faiss.IndexHNSWFlat(x.shape[1], p["M"])
        index.hnsw.efConstruction = p["efConstruction"]
        index.add(x)
        index.hnsw.efSearch = p["efSearch"]
        self.index = index
        self.on_gpu = False

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        if self.index.hnsw.efSearch < k:
            self.index.hnsw.efSearch = k
        return super().search(x, k)
