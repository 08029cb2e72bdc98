"""The memory model of a call: the tiles' workspace plus what the call keeps per point.

The workspace of a tiled pass is bounded by the engine's budget model
(:func:`~eprmetrics.engine.budget_for_tile`: bytes per tile element and per row-block element, an
upper bound of what the passes allocate at once); what a call keeps between passes grows with the
number of points: norms, the fp32 candidates and float64 radii of every set, the ball brackets and
ball-test accumulators, and on the sampled path the two k-NN graphs, their upper-bound radii and the
ANN index (lists and, for ``ivf-pca``, its embedding). ``benchmarks/bench_memory.py`` compares
:func:`predicted_peak` with the measured peak resident set on the CPU.

Not yet a model to rely on. Measured (``benchmarks/results/memory.md``, 20k × 512/2048, both spectra,
256 MiB and 1 GiB budgets, CPU): predicted / measured 0.63–2.81 on the sampled path (4 of 8 within
±25%: 0.75–1.17), 0.65–2.25 for ``compute_pr`` (1 of 8 within ±25%). The ball pass's resident
set depends on glibc's heap: tile temporaries below its 32 MiB mmap threshold stay resident after they
are freed, and the same call peaked at 0.17 GiB in one run and 0.40 GiB in another; a 64 MiB budget
(1,819-row tiles) peaked at 232 MiB. The self passes stay within the budget model (97 MiB at 4,000-row
tiles, 256 MiB budget).
"""

from __future__ import annotations

from typing import Any, Optional

from ..engine.budget import balanced_block, budget_tile, self_block, tile_workspace
from ..neighbours.radii import KNN_MARGIN

__all__ = ["per_point_bytes", "predicted_peak"]


def per_point_bytes(k_max: int, path: str, backend: Optional[str] = None, n_ks: int = 1) -> float:
    """Bytes kept per point of one set between passes.

    * every path: fp32 squared norm and float64 norm (12);
    * a set's fp32 candidates (``K = k_max + 8`` values and int64 indices), float64 rounding bounds (16)
      and its float64 k-NN (``k_max`` distances and indices) — also on the sampled path, for sets that
      get an exact graph, and for the true-radius rows it computes (a bound: every row);
    * per k, the ball brackets (two fp32) and the ball-test accumulators (two int32, two bool);
    * the sampled path: the graph (k int64 indices), float64 upper and true radii, and the index
      (``ivf-pca``: a 65-dimensional fp32 embedding and list ids; ``ivf-gemm``: list ids).
    """
    K = k_max + KNN_MARGIN
    radii = 12 * K + 16 + 16 * k_max
    kept = 12.0 + radii + n_ks * (8 + 10)
    if path != "exact":
        kept += 8 * k_max + 16 + 8
        if backend == "ivf-pca":
            kept += 4 * 65
    return kept


def predicted_peak(result: Any, memory_budget: int) -> dict[str, float]:
    """Predicted peak bytes of a finished call above its inputs, by part; ``total`` is their sum.

    ``result``: a :class:`~eprmetrics.Result` (sizes, k, path, backend and the tile side it ran with);
    ``memory_budget``: the budget it ran under. The workspace is that of the largest pass the path runs,
    with the tile shapes the passes use (balanced blocks; on the sampled path, blocks of sampled queries
    against a whole set). ``pairs at most`` is not in the total: the ambiguous pairs a counting ball test
    keeps (16 bytes each) are few, but may reach ``memory_budget // 64``.
    """
    ks = sorted(result.per_k) if result.per_k else [result.k]
    path = result.plan.path if result.plan is not None else "exact"
    n_r, n_f, dim = result.n_real, result.n_fake, result.dim
    tile = result.tile or budget_tile(memory_budget, dim)
    kept = per_point_bytes(max(ks), path, result.backend, len(ks)) * (n_r + n_f)
    if path == "exact":
        selves = [tile_workspace(self_block(n, tile), self_block(n, tile), dim) for n in (n_r, n_f)]
        workspace = float(max(*selves, tile_workspace(balanced_block(n_r, tile), balanced_block(n_f, tile), dim)))
    else:
        sides = {"precision": (n_f, n_r), "recall": (n_r, n_f)}
        workspace = 0.0
        for side, (n_q, n_ref) in sides.items():
            sampling = (result.sampling or {}).get(side)
            q = n_q if sampling is None else min(sampling.sample_size, n_q)
            workspace = max(workspace, float(tile_workspace(balanced_block(q, tile), balanced_block(n_ref, tile), dim)))
    parts = {"workspace": workspace, "kept per point": kept}
    parts["total"] = workspace + kept
    parts["pairs at most"] = 16.0 * (memory_budget // 64) if path == "exact" else 0.0
    return parts
