"""The memory model of a call: the passes' workspace, the ANN indexes, and what the call keeps per point.

The tiled passes allocate their large tensors in one reusable workspace per call
(:class:`~eprmetrics.engine.scratch.Scratch`): a buffer per role, as large as the largest pass needs
it, kept from pass to pass. The model adds, role by role, the largest size each role reaches with the
tile shapes the passes use (:mod:`eprmetrics.engine.budget`); then the transient temporaries of the
largest pass; the ANN indexes and graphs of the sampled path; and what the call keeps per point (norms,
candidates, radii, ball brackets and accumulators). ``benchmarks/bench_memory.py`` compares
:func:`predicted_peak` with the measured peak resident set on the CPU.

The budget model (:data:`~eprmetrics.engine.budget.BYTES_PER_ELEMENT` per tile element, two row blocks)
sizes the tiles and stays an upper bound of any single pass's workspace; this model is the finer
account of a whole call.

Measured (``benchmarks/results/memory.md``, ``memory_50k.md``, ``memory_sampled.md``; CPU, both
spectra, 256 MiB and 1 GiB budgets, the heap trimmed before the base): predicted / measured peak RSS
0.83–0.94 for ``compute_pr`` (20k × 512/2048 and 50k × 512, 12 calls; two runs of a configuration
differed by ≤ 2%) and 0.77–1.05 on the sampled path (20k and 50k × 512/2048, 16 calls): 28 of 28
within ±25%.
"""

from __future__ import annotations

from typing import Any, Optional

from ..engine.budget import SCAN_ROWS, balanced_block, budget_tile, self_block
from ..neighbours.ann.ivf_gemm import load_rows
from ..neighbours.radii import knn_margin
from ..neighbours.screen import screen_tiles

__all__ = [
    "per_point_bytes",
    "exact_workspace",
    "sampled_workspace",
    "screen_bytes",
    "screen_workspace",
    "index_bytes",
    "predicted_peak",
]

FP32, FP64, MASK = 4, 8, 1
# Transient bytes per tile element in the passes that re-decide candidates (collect_pairs): the select
# functions' boolean tiles (the sampled queries' capped candidates: seven, their depth in the tile itself).
SELECT_BYTES = 7
EMBEDDING_DIMS = 65  # ivf-pca: 64 principal directions and the residual norm
PCA_ROWS = 16384  # ivf-pca: rows its principal directions are fitted on (its default ``pca_rows``)


def per_point_bytes(
    k_max: int, path: str, backend: Optional[str] = None, n_ks: int = 1, precision: str = "fp32"
) -> float:
    """Bytes kept per point of one set between passes.

    * every path: fp32 squared norm and float64 norm (12);
    * a set's fp32 candidates (``K = k_max + 8`` values and int64 indices), float64 rounding bounds (16)
      and its float64 k-NN (``k_max`` distances and indices) — also on the sampled path, for sets that
      get an exact graph, and for the true-radius rows it computes (a bound: every row; ``k_max + 40``
      candidates at a reduced GEMM ``precision``, :func:`~eprmetrics.neighbours.radii.knn_margin`);
    * per k, the ball brackets (two fp32) and the ball-test accumulators (two int32, two bool);
    * the sampled path: the graph (k int64 indices and fp32 distances), float64 upper and true radii.
    """
    K = k_max + knn_margin(precision)
    radii = 12 * K + 16 + 16 * k_max
    kept = 12.0 + radii + n_ks * (8 + 10)
    if path != "exact":
        kept += 12 * k_max + 16
    return kept


def _recheck_rows(memory_budget: int, dim: int) -> int:
    """Pairs per chunk of the float64 re-checks (as :meth:`TileEngine.exact_sqdist_pairs` sizes them)."""
    return max(min(memory_budget // (6 * 8 * dim), SCAN_ROWS), 1)


def _common_roles(dim: int, tile: int, memory_budget: int, itemsize: int) -> dict[str, float]:
    """Roles every path fills: the scans' fp32 rows and float64 widening, the re-checks' gathered pairs."""
    scan = min(tile, SCAN_ROWS)
    pairs = _recheck_rows(memory_budget, dim)
    return {"rows": FP32 * dim * scan, "wide": FP64 * dim * scan, "pairs": 2 * pairs * dim * (FP64 + itemsize)}


def exact_workspace(n_r: int, n_f: int, dim: int, tile: int, memory_budget: int, itemsize: int = 4) -> dict[str, float]:
    """Workspace of exact P&R by role: both self passes (split self tiles) and the real↔fake ball pass
    (balanced blocks, two boolean masks), with the re-checks' gathers; ``itemsize``: bytes per stored value."""
    s_r, s_f = self_block(n_r, tile), self_block(n_f, tile)
    b_r, b_f = balanced_block(n_r, tile), balanced_block(n_f, tile)
    roles = _common_roles(dim, tile, memory_budget, itemsize)
    roles["tile"] = FP32 * max(s_r * s_r, s_f * s_f, b_r * b_f)
    roles["rows"] = max(roles["rows"], FP32 * dim * max(s_r, s_f, b_r))
    roles["cols"] = FP32 * dim * max(s_r, s_f, b_f)
    roles["masks"] = 2 * MASK * b_r * b_f
    return roles


def sampled_workspace(
    sides: dict[str, tuple[int, int, int]], dim: int, tile: int, memory_budget: int, itemsize: int = 4
) -> dict[str, float]:
    """Workspace of the sampled path by role. ``sides``: per side, (sampled queries, reference points, true
    radii computed).

    The sampled queries' pass compares blocks of them with whole reference blocks (``collect_pairs``: a
    gathered query block, the transient selections); the true-radius rows compare blocks of owners (at
    most a tile, at most the radii computed) with the reference set."""
    roles = _common_roles(dim, tile, memory_budget, itemsize)
    tiles, cols, queries, select = 0, 0, 0, 0
    for q, n_ref, n_true in sides.values():
        b_q, b_ref = balanced_block(q, tile), balanced_block(n_ref, tile)
        owners = balanced_block(min(n_true, n_ref), tile) if n_true else 0
        tiles = max(tiles, b_q * b_ref, owners * b_ref)
        cols = max(cols, b_ref)
        queries = max(queries, b_q)
        select = max(select, b_q * b_ref)
    roles["tile"] = FP32 * tiles
    roles["rows"] = max(
        roles["rows"], FP32 * dim * max(balanced_block(min(t, n), tile) if t else 0 for _, n, t in sides.values())
    )
    roles["cols"] = FP32 * dim * cols
    roles["query block"] = FP32 * dim * queries
    roles["selections"] = SELECT_BYTES * select
    return roles


def screen_bytes(n: int, dims: int) -> float:
    """The projection screen of a set of ``n`` points: ``dims`` bfloat16 values, an fp32 squared norm and a
    float64 slack per point."""
    return n * (2.0 * dims + FP32 + FP64)


def screen_workspace(dims: int, memory_budget: int) -> dict[str, float]:
    """The screen's passes by role (as :class:`~eprmetrics.neighbours.screen.Screen` sizes them): its distance
    tile (the ``tile`` role), reach tile and mask, a block of rows and one of points widened to fp32, and the
    projection's fp32 product and float64 squares of a scan block."""
    cols, rows = screen_tiles(memory_budget)
    return {
        "tile": FP32 * rows * cols,
        "screen reach": FP32 * rows * cols,
        "screen mask": MASK * rows * cols,
        "screen rows": FP32 * rows * dims,
        "screen cols": FP32 * cols * dims,
        "screen projection": (FP32 + FP64) * SCAN_ROWS * dims,
    }


def index_bytes(backend: Optional[str], n: int, dim: int, k: int, itemsize: int = 4) -> float:
    """Bytes an ANN index and its k-NN graph keep for a set of ``n`` points (the sampled path keeps both sets'
    indexes to search the other set's points): ``ivf-gemm`` the rows sorted by list (fp16 stays fp16) and
    their norms; ``ivf-pca`` its embedding; both the list order and position (int64) and the graph."""
    graph = n * (k + 1) * (FP32 + 8)
    if backend == "ivf-gemm":
        return n * (dim * max(itemsize, 2) + FP32 + 16) + graph
    if backend == "ivf-pca":
        return n * (EMBEDDING_DIMS * FP32 + FP32 + 16) + graph
    return float(graph)


def ann_transient(backend: Optional[str], n: int, dim: int, copied: bool = False) -> float:
    """The largest temporaries of an index build or query search: ``ivf-pca``'s centred fp32 copy of a block
    of rows, or its principal-direction fit's sample of rows; ``ivf-gemm`` keeps its rows in the index.
    ``copied``: rows are read into a new buffer first (a memmap, or values not stored as fp32), one more block."""
    rows = min(n, load_rows(dim)) * dim * FP32
    if backend == "ivf-pca":
        return max((2.0 if copied else 1.0) * rows, min(n, PCA_ROWS) * dim * FP32)
    return float(rows) if backend == "ivf-gemm" and copied else 0.0


def predicted_peak(result: Any, memory_budget: int, itemsize: int = 4, memmap: bool = False) -> dict[str, float]:
    """Predicted peak bytes of a finished call above its inputs, by part; ``total`` is their sum.

    ``result``: a :class:`~eprmetrics.Result` (sizes, k, path, backends, sample sizes and the tile side it
    ran with); ``memory_budget``: the budget it ran under; ``itemsize``: bytes per stored input value;
    ``memmap``: the inputs were memory maps (blocks are read into buffers, not viewed).
    ``pairs at most`` is not in the total: the ambiguous pairs a counting ball test keeps (16 bytes each)
    are few, but may reach ``memory_budget // 64``.
    """
    ks = sorted(result.per_k) if result.per_k else [result.k]
    path = result.plan.path if result.plan is not None else "exact"
    n_r, n_f, dim = result.n_real, result.n_fake, result.dim
    tile = result.tile or budget_tile(memory_budget, dim)
    parts: dict[str, float] = {
        "kept per point": per_point_bytes(max(ks), path, result.backend, len(ks), result.gemm_precision) * (n_r + n_f)
    }
    transient = 0.0
    if path == "exact":
        roles = exact_workspace(n_r, n_f, dim, tile, memory_budget, itemsize)
    else:
        sizes = {"precision": (n_f, n_r), "recall": (n_r, n_f)}
        sides = {}
        for side, (n_q, n_ref) in sizes.items():
            sampling = (result.sampling or {}).get(side)
            if sampling is None:
                sides[side] = (n_q, n_ref, n_ref)
            else:
                sides[side] = (min(sampling.sample_size, n_q), n_ref, sampling.true_radii_computed)
        roles = sampled_workspace(sides, dim, tile, memory_budget, itemsize)
        screened = [
            (n_ref, s.screen["dims"])
            for side, (_, n_ref) in sizes.items()
            if (s := (result.sampling or {}).get(side)) is not None and s.screen and s.screen["used"]
        ]
        if screened:  # one side's projections at a time (released after its decisions), and the screen's tiles
            parts["projection screen"] = max(screen_bytes(n, m) for n, m in screened)
            for role, v in screen_workspace(max(m for _, m in screened), memory_budget).items():
                roles[role] = max(roles.get(role, 0.0), v)
        backends = result.plan.backends if result.plan is not None else {}
        named = [(backends.get(name, result.backend), n) for name, n in (("real", n_r), ("fake", n_f))]
        parts["ANN indexes and graphs"] = sum(index_bytes(b, n, dim, max(ks), itemsize) for b, n in named)
        # The workspace, once filled by the first side's passes, stays through the second side's index search:
        # the larger of the index temporaries and the selections comes on top of it.
        copied = memmap or itemsize != FP32
        transient = max(max(ann_transient(b, n, dim, copied) for b, n in named), roles.pop("selections"))
    parts.update({f"workspace: {role}": float(v) for role, v in roles.items()})
    parts["transient (index search or selections)"] = transient
    parts["total"] = sum(parts.values())
    parts["pairs at most"] = 16.0 * (memory_budget // 64) if path == "exact" else 0.0
    return parts
