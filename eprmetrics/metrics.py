"""Exact P&R, density & coverage and realism on top of the tiled engine.

Conventions (Kynkäänniemi et al. 2019; DESIGN.md):

* radius ``r_k(x; S)`` = distance to the k-th nearest *other* point of ``S``
  (self excluded by position, duplicates count, so a radius may be 0);
* ``f(φ, S) = 1`` iff ``‖φ − φ'‖ ≤ r_k(φ')`` for some ``φ' ∈ S``
  (``<`` with ``strict=True``, the convention of the ``prdc`` package);
* precision = mean over fake of ``f(g, real)``; recall = mean over real of ``f(r, fake)``;
* density = Σ_g #{real balls holding g} / (k·n_fake); coverage = share of real
  points whose own ball holds some fake (Naeem et al. 2020, same ``strict`` rule);
* realism of a fake = ``max_{r: r_k(r) ≤ median} r_k(r) / ‖g − r‖``, from fp32
  distances (a continuous score, not a decision: a fake on a real centre gets a
  huge or infinite value).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence

import torch

from .tiles import BallTest, Prepared, TileEngine, up32

__all__ = ["KNN", "exact_knn", "ball_counts", "MembershipResult", "exact_membership"]

# Extra fp32 candidates kept beyond k so that float64 refinement rarely needs a second look.
KNN_MARGIN = 8


@dataclasses.dataclass
class KNN:
    """Exact k nearest *other* neighbours: float64 squared distances and indices (ties by index)."""

    sqdist: torch.Tensor  # (n, k_max) float64, ascending
    index: torch.Tensor  # (n, k_max) int64
    n_redecided: int  # rows whose fp32 candidates could not settle the k-th distance

    def radii2(self, k: int) -> torch.Tensor:
        return self.sqdist[:, k - 1]


def _sort_pairs(d2: torch.Tensor, index: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort by distance, ties by index."""
    o = index.argsort(dim=dim, stable=True)
    d2, index = d2.gather(dim, o), index.gather(dim, o)
    o = d2.argsort(dim=dim, stable=True)
    return d2.gather(dim, o), index.gather(dim, o)


def exact_knn(engine: TileEngine, p: Prepared, k_max: int, progress: Optional[Callable[[int], None]] = None) -> KNN:
    """Exact k-NN (self excluded) of ``p`` against itself.

    fp32 tiles give ``k_max + KNN_MARGIN`` candidates per point; their float64
    distances are exact. A row is settled when its farthest candidate exceeds
    the k_max-th exact distance by more than the rounding bound; other rows are
    searched again in float64 among every point that could be that close.
    """
    n = p.n
    K = min(k_max + KNN_MARGIN, n - 1)
    vals, idx = engine.self_topk(p, K, progress=progress)
    rows = torch.arange(n, device=engine.device).repeat_interleave(K)
    d2 = engine.exact_sqdist_pairs(p, rows, p, idx.reshape(-1)).view(n, K)
    d2, idx = _sort_pairs(d2, idx)
    d2, idx = d2[:, :k_max].contiguous(), idx[:, :k_max].contiguous()
    if K == n - 1:  # every other point is a candidate: nothing can be missed
        return KNN(d2, idx, 0)
    delta = engine.bound(p.norm, p.max_norm)
    bad = (vals.max(dim=1).values.double() - delta < d2[:, -1]).nonzero().squeeze(1)
    if bad.numel():
        _redo_rows(engine, p, bad, up32(d2[bad, -1] + delta[bad]), k_max, d2, idx)
    return KNN(d2, idx, int(bad.numel()))


def _redo_rows(engine: TileEngine, p: Prepared, rows: torch.Tensor, thr: torch.Tensor, k_max: int,
               d2: torch.Tensor, idx: torch.Tensor) -> None:
    """Exact k-NN of ``rows`` among all points with fp32 distance ≤ ``thr``."""

    def select(d: torch.Tensor, q_pos: torch.Tensor, cs: slice) -> torch.Tensor:
        mask = d <= thr[q_pos, None]
        cols = torch.arange(cs.start, cs.stop, device=d.device)
        return mask & (cols[None, :] != rows[q_pos, None])

    parts = list(engine.collect_pairs(p, rows, p, select))
    pos = torch.cat([q for q, _, _ in parts])
    ref = torch.cat([r for _, r, _ in parts])
    dd = torch.cat([v for _, _, v in parts])
    # Sort by (row position, distance, index): successive stable sorts, least significant first.
    for key in range(3):
        o = (ref, dd, pos)[key].argsort(stable=True)
        pos, ref, dd = pos[o], ref[o], dd[o]
    start = torch.searchsorted(pos, torch.arange(rows.numel(), device=pos.device))
    rank = torch.arange(pos.numel(), device=pos.device) - start[pos]
    keep = rank < k_max
    d2[rows[pos[keep]], rank[keep]] = dd[keep]
    idx[rows[pos[keep]], rank[keep]] = ref[keep]


def ball_counts(engine: TileEngine, queries: Prepared, q_index: torch.Tensor, refs: Prepared,
                r2: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, owner: str, strict: bool) -> torch.Tensor:
    """Exact number of balls holding each query, for a (small) subset of queries.

    Args:
        r2, lo, hi: squared radii (float64) and their fp32 brackets, indexed by
            ball owner: the reference points (``owner="ref"``) or the queries
            themselves (``owner="query"``, per full query index).
    """
    counts = torch.zeros(q_index.numel(), dtype=torch.int64, device=engine.device)

    def select(d: torch.Tensor, q_pos: torch.Tensor, cs: slice) -> torch.Tensor:
        if owner == "ref":
            lo_b, hi_b = lo[None, cs], hi[None, cs]
        else:
            qi = q_index[q_pos]
            lo_b, hi_b = lo[qi, None], hi[qi, None]
        counts[q_pos] += (d < lo_b).sum(1)
        return (d >= lo_b) & (d <= hi_b)

    for pos, ref, d2 in engine.collect_pairs(queries, q_index, refs, select):
        radius2 = r2[ref] if owner == "ref" else r2[q_index[pos]]
        inside = d2 < radius2 if strict else d2 <= radius2
        counts.index_add_(0, pos, inside.long())
    return counts


@dataclasses.dataclass
class MembershipResult:
    """Per-k exact decisions of the real↔fake pass."""

    precision_hits: torch.Tensor  # (n_fake,) bool: inside some real ball
    recall_hits: torch.Tensor  # (n_real,) bool: inside some fake ball
    density_counts: Optional[torch.Tensor]  # (n_fake,) int64: number of real balls holding each fake
    coverage_hits: Optional[torch.Tensor]  # (n_real,) bool: own ball holds some fake
    n_redecided: int  # points whose decision needed a float64 re-check


def exact_membership(engine: TileEngine, real: Prepared, fake: Prepared,
                     real_r2: dict[int, torch.Tensor], fake_r2: dict[int, torch.Tensor], ks: Sequence[int], *,
                     strict: bool, density_coverage: bool, realism_k: Optional[int] = None,
                     progress: Optional[Callable[[int], None]] = None
                     ) -> tuple[dict[int, MembershipResult], Optional[torch.Tensor]]:
    """One real×fake tiled pass deciding, for every k at once, all memberships.

    Returns:
        per-k :class:`MembershipResult`, and the realism score of each fake
        sample for ``realism_k`` (None when not requested).
    """
    brackets, tests = {}, []
    for k in ks:
        lo_r, hi_r = engine.thresholds(real_r2[k], engine.bound(real.norm, fake.max_norm))
        lo_f, hi_f = engine.thresholds(fake_r2[k], engine.bound(fake.norm, real.max_norm))
        t_real = BallTest(lo_r, hi_r, "row", fake.n, count=density_coverage, owner_any=density_coverage)
        t_fake = BallTest(lo_f, hi_f, "col", real.n)
        brackets[k] = (lo_r, hi_r, lo_f, hi_f)
        tests += [t_real, t_fake]

    best = None
    extra = None
    if realism_k is not None:
        r2 = real_r2[realism_k]
        r2_sel = torch.where(r2 <= _median(r2), r2, 0).float()
        best = torch.zeros(fake.n, dtype=torch.float32, device=engine.device)

        def extra(d: torch.Tensor, rs: slice, cs: slice) -> None:
            # A fake on a real centre has ratio r²/0 = inf; 0/0 (unselected ball) counts as 0.
            ratio = (r2_sel[rs, None] / d).nan_to_num_(nan=0.0, posinf=math.inf).amax(0)
            torch.maximum(best[cs], ratio, out=best[cs])

    engine.ball_pass(real, fake, tests, extra=extra, progress=progress)

    out = {}
    for j, k in enumerate(ks):
        t_real, t_fake = tests[2 * j], tests[2 * j + 1]
        lo_r, hi_r, lo_f, hi_f = brackets[k]
        redecided = 0
        # precision (and density): fakes inside real balls
        if density_coverage:
            counts = t_real.other_lo.long()
            amb = (t_real.other_lo != t_real.other_hi).nonzero().squeeze(1)
            counts[amb] = ball_counts(engine, fake, amb, real, real_r2[k], lo_r, hi_r, "ref", strict)
            precision_hits = counts > 0
        else:
            counts = None
            precision_hits = t_real.other_lo.clone()
            amb = (~t_real.other_lo & t_real.other_hi).nonzero().squeeze(1)
            precision_hits[amb] = ball_counts(engine, fake, amb, real, real_r2[k], lo_r, hi_r, "ref", strict) > 0
        redecided += amb.numel()
        # recall: reals inside fake balls
        recall_hits = t_fake.other_lo.clone()
        amb = (~t_fake.other_lo & t_fake.other_hi).nonzero().squeeze(1)
        recall_hits[amb] = ball_counts(engine, real, amb, fake, fake_r2[k], lo_f, hi_f, "ref", strict) > 0
        redecided += amb.numel()
        coverage_hits = None
        if density_coverage:
            coverage_hits = t_real.owner_lo.clone()
            amb = (~t_real.owner_lo & t_real.owner_hi).nonzero().squeeze(1)
            coverage_hits[amb] = ball_counts(engine, real, amb, fake, real_r2[k], lo_r, hi_r, "query", strict) > 0
            redecided += amb.numel()
        out[k] = MembershipResult(precision_hits, recall_hits, counts, coverage_hits, redecided)
    realism = best.sqrt() if best is not None else None
    return out, realism


def _median(x: torch.Tensor) -> torch.Tensor:
    """Median as numpy defines it (the mean of the two middle values for even n)."""
    s = x.sort().values
    m = x.numel() // 2
    return s[m] if x.numel() % 2 else (s[m - 1] + s[m]) / 2
