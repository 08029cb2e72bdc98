"""The one place ``backend="auto"`` is resolved."""
from __future__ import annotations

import torch

from .faiss_backend import faiss_gpu_available

__all__ = ["resolve_backend", "SMALL"]

# Measured with benchmarks/bench_epr.py on 2 CPU cores (README, "eP&R speed"):
# * with exact radii, the exact backend's symmetric self pass (5/8 of an n×n GEMM
#   at 4 blocks) yields graph *and* radii, while any ANN graph still needs the
#   hub-vs-all pass (≈ 0.38 of an n×n GEMM per set at 38% hubs): exact wins or ties;
# * with ANN radii, ivf-gemm (≈ 10% of a GEMM pass, recall@3 ≈ 0.995) wins from a
#   few thousand points on; graph libraries (HNSW) were 1.7–3× slower than exact
#   at 20k × 4096 on this machine.
SMALL = 5_000


def resolve_backend(backend: str, n: int, dim: int, device: torch.device, radii: str = "exact") -> tuple[str, str]:
    """``(backend name, reason)`` for a set of ``n`` points in ``dim`` dimensions on ``device``."""
    if backend != "auto":
        from .base import get_backend

        get_backend(backend).check_available()
        return backend, "requested"
    if device.type == "cuda" and faiss_gpu_available() and radii == "ann" and n > SMALL:
        return "faiss-ivf", "CUDA with GPU faiss, ANN radii"
    if radii == "exact":
        return "exact", "exact radii: the exact self pass gives the graph and every radius in one pass"
    if n <= SMALL:
        return "exact", f"n = {n} ≤ {SMALL}: an exact pass is cheaper than building an index"
    return "ivf-gemm", "ANN radii: GEMM-scanned inverted lists (~10% of an exact pass)"
