"""Approximate (and exact) k-NN graphs behind one contract, for hubness.

Example:
    >>> import numpy as np
    >>> from eprmetrics import knn_graph
    >>> x = np.random.default_rng(0).normal(size=(200, 8)).astype("float32")
    >>> dist, idx = knn_graph(x, 3, backend="exact")
    >>> dist.shape, idx.dtype, bool((idx != np.arange(200)[:, None]).all())
    ((200, 3), dtype('int64'), True)
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch

from ...defaults import DEFAULTS
from ...engine import FeatureSet, World, call_options, fingerprint, resolve_device
from ...validation import check_graph_options
from . import exact, faiss_backend, hnswlib_backend, ivf_gemm, ivf_pca, scann_backend  # noqa: F401  (registration)
from .auto import resolve_backend
from .base import ANNBackend, available_backends, backend_names, get_backend, register_backend

__all__ = [
    "knn_graph",
    "resolve_backend",
    "ANNBackend",
    "register_backend",
    "get_backend",
    "backend_names",
    "available_backends",
]


def as_float32_rows(x: Any, name: str = "X", keep_float16: bool = False) -> np.ndarray:
    """``x`` (numpy, torch, memmap) as a C-contiguous float32 numpy array, validated.

    With ``keep_float16`` a float16 input stays float16 (a memmap stays a memmap) for
    backends that store fp16 and read in batches (``ANNBackend.accepts_float16``).
    """
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples × dim), got shape {tuple(x.shape)}")
    return FeatureSet(x, name).numpy_rows(keep_float16=keep_float16)


def knn_graph(
    X: Any,
    k: int,
    *,
    backend: str = "auto",
    seed: int = 0,
    device: Union[str, torch.device] = "auto",
    options: Optional[dict[str, Any]] = None,
    stats: Optional[dict[str, Any]] = None,
    distributed: bool = False,
    process_group: Any = None,
    distributed_timeout: float = DEFAULTS["distributed_timeout"],
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest other points of every row of ``X``: ``(distances, indices)``.

    Args:
        X: n × d features.
        k: neighbours per point (self excluded).
        backend: ``"auto"`` (see :func:`resolve_backend`) or a registered name.
        seed: seeds index training (k-means, rotations) for determinism.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; GPU faiss is used for the IVF family on CUDA.
        options: backend parameters overriding its defaults (e.g. ``{"nprobe": 32}``).
        stats: if given, receives the backend chosen, why, its parameters and build/search seconds.
        distributed, process_group, distributed_timeout: share the work over ``torch.distributed`` ranks
            (the ``exact``, ``ivf-gemm`` and ``ivf-pca`` backends; the others build the same graph on every
            rank), as for :func:`~eprmetrics.compute_pr`; by default this process computes alone.

    Returns:
        float32 ascending true L2 distances and int64 indices, both n × k.
    """
    params = dict(locals())  # the call's arguments, which sharing ranks compare
    k, seed = check_graph_options(k, seed, options, stats)  # before the features are read; np.int64 k is an int
    world = World.of(distributed, process_group, distributed_timeout)
    with world.joined(call_options("knn_graph", params)):
        # a float16 memmap stays on disk for backends that read fp16
        x = world.settle(lambda: _rows_for(X, k), lambda rows: fingerprint(FeatureSet(rows, "X")))
        dev = resolve_device(device)
        name, reason = resolve_backend(backend, x.shape[0], x.shape[1], dev)
        impl = get_backend(name)(**(options or {}))
        if x.dtype == np.float16 and not impl.accepts_float16:
            x = np.ascontiguousarray(x, dtype=np.float32)
        dist, idx, info = impl.run(x, k, seed=seed, device=dev)
    if stats is not None:
        stats.update(info, reason=reason)
    return dist, idx


def _rows_for(X: Any, k: int) -> np.ndarray:
    """``X`` as rows for a k-NN graph (float32, or float16 kept), with at least ``k + 1`` of them."""
    x = as_float32_rows(X, keep_float16=True)
    if x.shape[0] < k + 1:
        raise ValueError(f"X: k={k} needs at least {k + 1} samples, got {x.shape[0]}")
    return x
