"""The one place ``backend="auto"`` is resolved."""
from __future__ import annotations

import torch

from .base import available_backends
from .faiss_backend import faiss_gpu_available

__all__ = ["resolve_backend", "EXACT_UP_TO"]

# On the CPU the exact self pass (symmetric fp32 GEMM tiles) also yields every
# radius, so it beats an ANN graph plus the hub-vs-all pass until n is large.
# Measured with benchmarks/bench_epr.py on 2 cores (see README).
EXACT_UP_TO = 50_000
_CPU_PREFERENCE = ("faiss-hnsw", "hnswlib", "faiss-ivf", "scann")


def resolve_backend(backend: str, n: int, dim: int, device: torch.device) -> tuple[str, str]:
    """``(backend name, reason)`` for a set of ``n`` points in ``dim`` dimensions on ``device``."""
    if backend != "auto":
        from .base import get_backend

        get_backend(backend).check_available()
        return backend, "requested"
    if device.type == "cuda":
        if faiss_gpu_available() and n > EXACT_UP_TO:
            return "faiss-ivf", f"CUDA with GPU faiss and n = {n} > {EXACT_UP_TO}"
        return "exact", "CUDA: exact GEMM tiles on the GPU"
    if n <= EXACT_UP_TO:
        return "exact", f"n = {n} ≤ {EXACT_UP_TO}: the exact self pass also gives the radii"
    installed = available_backends()
    for name in _CPU_PREFERENCE:
        if name in installed:
            return name, f"n = {n} > {EXACT_UP_TO}: first installed of {list(_CPU_PREFERENCE)}"
    return "exact", "no ANN library installed (pip install 'eprmetrics[faiss]')"
