"""Exact membership of every point, for several k at once, in one real×fake tiled pass.

Conventions (Kynkäänniemi et al. 2019; ``docs/conventions.md``):

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

from ..engine import Prepared, TileEngine, down32, up32
from ..engine.reductions import BallTest
from ..neighbours import Radii

__all__ = ["ball_counts", "MembershipResult", "exact_membership"]


def ball_counts(engine: TileEngine, queries: Prepared, q_index: torch.Tensor, refs: Prepared,
                radii: Radii, k: int, lo: torch.Tensor, hi: torch.Tensor, owner: str, strict: bool) -> torch.Tensor:
    """Exact number of balls holding each query, for a (small) subset of queries.

    Args:
        radii: the radii of the ball owners: the reference points
            (``owner="ref"``) or the queries themselves (``owner="query"``).
        lo, hi: the fp32 brackets of the main pass, indexed like ``radii``.
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

    # Counting certain pairs in this pass too keeps counts consistent: a pair's
    # fp32 value may differ by rounding between differently shaped tiles.
    for pos, ref, d2 in engine.collect_pairs(queries, q_index, refs, select):
        radius2 = radii.exact2(k, ref if owner == "ref" else q_index[pos])
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


def _brackets(engine: TileEngine, radii: Radii, k: int, other: Prepared) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 (lo, hi): ``D < lo`` certainly inside, ``D > hi`` certainly outside the ball."""
    lower, upper = radii.bracket2(k)
    cross = engine.bound(radii.p.norm, other.max_norm)
    return down32(lower - cross), up32(upper + cross)


def exact_membership(engine: TileEngine, real: Radii, fake: Radii, ks: Sequence[int], *,
                     strict: bool, density_coverage: bool, realism_k: Optional[int] = None,
                     progress: Optional[Callable[[int], None]] = None
                     ) -> tuple[dict[int, MembershipResult], Optional[torch.Tensor]]:
    """One real×fake tiled pass deciding, for every k at once, all memberships.

    Returns:
        per-k :class:`MembershipResult`, and the realism score of each fake
        sample for ``realism_k`` (None when not requested).
    """
    rp, fp = real.p, fake.p
    brackets, tests = {}, []
    for k in ks:
        lo_r, hi_r = _brackets(engine, real, k, fp)
        lo_f, hi_f = _brackets(engine, fake, k, rp)
        t_real = BallTest(lo_r, hi_r, "row", fp.n, count=density_coverage, owner_any=density_coverage,
                          pair_cap=engine.memory_budget // 64)
        t_fake = BallTest(lo_f, hi_f, "col", rp.n)
        brackets[k] = (lo_r, hi_r, lo_f, hi_f)
        tests += [t_real, t_fake]

    best = None
    extra = None
    if realism_k is not None:
        r2 = real.approx2(realism_k)
        r2_sel = torch.where(r2 <= _median(r2), r2, 0).float()
        best = torch.zeros(fp.n, dtype=torch.float32, device=engine.device)

        def extra(d: torch.Tensor, rs: slice, cs: slice) -> None:
            # A fake on a real centre has ratio r²/0 = inf; 0/0 (unselected ball) counts as 0.
            ratio = (r2_sel[rs, None] / d).nan_to_num_(nan=0.0, posinf=math.inf).amax(0)
            torch.maximum(best[cs], ratio, out=best[cs])

    engine.ball_pass(rp, fp, tests, extra=extra, progress=progress)
    if best is not None:
        engine.world.max_(best)

    out = {}
    for j, k in enumerate(ks):
        t_real, t_fake = tests[2 * j], tests[2 * j + 1]
        lo_r, hi_r, lo_f, hi_f = brackets[k]
        redecided = 0
        # precision (and density): fakes inside real balls
        if density_coverage:
            counts = t_real.other_lo.long()
            pairs = t_real.pairs
            if pairs is not None:  # the ambiguous pairs themselves, from the same tiles
                owner, other = pairs[:, 0], pairs[:, 1]
                d2 = engine.exact_sqdist_pairs(fp, other, rp, owner)
                r2 = real.exact2(k, owner)
                inside = d2 < r2 if strict else d2 <= r2
                counts += torch.bincount(other[inside], minlength=fp.n)
                amb = other.unique()
            else:
                amb = (t_real.other_lo != t_real.other_hi).nonzero().squeeze(1)
                counts[amb] = ball_counts(engine, fp, amb, rp, real, k, lo_r, hi_r, "ref", strict)
            precision_hits = counts > 0
        else:
            counts = None
            precision_hits = t_real.other_lo.clone()
            amb = (~t_real.other_lo & t_real.other_hi).nonzero().squeeze(1)
            precision_hits[amb] = ball_counts(engine, fp, amb, rp, real, k, lo_r, hi_r, "ref", strict) > 0
        redecided += amb.numel()
        # recall: reals inside fake balls
        recall_hits = t_fake.other_lo.clone()
        amb = (~t_fake.other_lo & t_fake.other_hi).nonzero().squeeze(1)
        recall_hits[amb] = ball_counts(engine, rp, amb, fp, fake, k, lo_f, hi_f, "ref", strict) > 0
        redecided += amb.numel()
        coverage_hits = None
        if density_coverage:
            coverage_hits = t_real.owner_lo.clone()
            amb = (~t_real.owner_lo & t_real.owner_hi).nonzero().squeeze(1)
            coverage_hits[amb] = ball_counts(engine, rp, amb, fp, real, k, lo_r, hi_r, "query", strict) > 0
            redecided += amb.numel()
        out[k] = MembershipResult(precision_hits, recall_hits, counts, coverage_hits, redecided)
    realism = best.sqrt() if best is not None else None
    return out, realism


def _median(x: torch.Tensor) -> torch.Tensor:
    """Median as numpy defines it (the mean of the two middle values for even n)."""
    s = x.sort().values
    m = x.numel() // 2
    return s[m] if x.numel() % 2 else (s[m - 1] + s[m]) / 2
