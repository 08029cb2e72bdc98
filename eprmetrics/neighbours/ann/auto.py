"""The one place ``backend="auto"`` is resolved."""

from __future__ import annotations

import torch

__all__ = ["resolve_backend", "EXACT_UP_TO", "SMALL"]

# Measured with benchmarks/bench_epr.py on 2 CPU cores (README, "eP&R speed"):
# * exact radii: the exact backend's symmetric self pass (5/8 of an n×n GEMM at
#   4 blocks) yields graph *and* radii; an ANN graph still needs the hub-vs-all
#   pass (≈ 0.38 of a pass per set at 38% hubs). At 20k × 4096 the exact backend
#   took 29 s (1.6× faster than exact P&R); at 100k × 512 ivf-gemm + hub-vs-all
#   took 110 s against 184 s for the exact backend, so ivf-gemm takes over above
#   EXACT_UP_TO points;
# * ANN radii: ivf-gemm (≈ 10% of a GEMM pass, recall@3 ≈ 0.995) from a few
#   thousand points on; faiss HNSW and IVF were 1.7–3× slower than the exact
#   pass at 20k × 4096 on this machine.
# * on CUDA too: faiss's GPU IVF-Flat scans each probed list query by query (about 3.7 PB
#   read for a 1.5M self-search), while ivf-gemm's list-against-probes GEMMs run on tensor
#   cores (bf16 scans, fp32 rescoring, see ivf_gemm); GPU faiss stays available by name.
EXACT_UP_TO = 20_000
SMALL = 5_000


def resolve_backend(backend: str, n: int, dim: int, device: torch.device, radii: str = "exact") -> tuple[str, str]:
    """``(backend name, reason)`` for a set of ``n`` points in ``dim`` dimensions on ``device``.

    ``radii``: ``"exact"`` or ``"ann"`` (the hub method's radii modes), or ``"sampled"``.
    """
    if backend != "auto":
        from .base import get_backend

        get_backend(backend).check_available()
        return backend, "requested"
    # The sampled estimator needs only upper-bound radii, like ANN radii.
    limit = EXACT_UP_TO if radii == "exact" else SMALL
    if n <= limit:
        return "exact", f"n = {n} ≤ {limit}: the exact self pass gives the graph and every radius at once"
    return "ivf-gemm", f"n = {n} > {limit}: GEMM-scanned inverted lists (~10% of an exact pass)"
