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
from typing import Callable, Optional, Sequence, Union

import torch

from ..engine import Prepared, TileEngine, down32, up32
from ..engine.reductions import BallTest, count_true
from ..neighbours import GivenRadii, Radii

__all__ = ["Balls", "ball_counts", "MembershipResult", "exact_membership"]


@dataclasses.dataclass
class Balls:
    """The balls of one set at one k, with the fp32 bracket of a pass against ``other``:
    ``D < lo`` certainly inside, ``D > hi`` certainly outside the ball."""

    radii: Union[Radii, GivenRadii]
    k: int
    lo: torch.Tensor
    hi: torch.Tensor

    @classmethod
    def against(cls, engine: TileEngine, radii: Union[Radii, GivenRadii], k: int, other: Prepared) -> "Balls":
        lower, upper = radii.bracket2(k)
        cross = engine.bound(radii.p.norm, other.max_norm)
        return cls(radii, k, down32(lower - cross), up32(upper + cross))


def _inside(d2: torch.Tensor, r2: torch.Tensor, strict: bool) -> torch.Tensor:
    return d2 < r2 if strict else d2 <= r2


def ball_counts(
    engine: TileEngine, queries: Prepared, q_index: torch.Tensor, refs: Prepared, balls: Balls, owner: str, strict: bool
) -> torch.Tensor:
    """Exact number of balls holding each query, for a (small) subset of queries.

    Args:
        balls: the balls, owned by the reference points (``owner="ref"``) or
            by the queries themselves (``owner="query"``), with the brackets
            of the main pass indexed like their radii.
    """
    counts = torch.zeros(q_index.numel(), dtype=torch.int64, device=engine.device)
    lo, hi = balls.lo, balls.hi

    def select(d: torch.Tensor, q_pos: torch.Tensor, cs: slice) -> torch.Tensor:
        if owner == "ref":
            lo_b, hi_b = lo[None, cs], hi[None, cs]
        else:
            qi = q_index[q_pos]
            lo_b, hi_b = lo[qi, None], hi[qi, None]
        counts[q_pos] += count_true(d < lo_b, 1)
        return (d >= lo_b) & (d <= hi_b)

    # Counting certain pairs in this pass too keeps counts consistent: a pair's
    # fp32 value may differ by rounding between differently shaped tiles.
    for pos, ref, d2 in engine.collect_pairs(queries, q_index, refs, select, restart=counts.zero_):
        radius2 = balls.radii.exact2(balls.k, ref if owner == "ref" else q_index[pos])
        counts.index_add_(0, pos, _inside(d2, radius2, strict).long())
    return counts


@dataclasses.dataclass
class MembershipResult:
    """Per-k exact decisions of the real↔fake pass."""

    precision_hits: torch.Tensor  # (n_fake,) bool: inside some real ball
    recall_hits: torch.Tensor  # (n_real,) bool: inside some fake ball
    density_counts: Optional[torch.Tensor]  # (n_fake,) int64: number of real balls holding each fake
    coverage_hits: Optional[torch.Tensor]  # (n_real,) bool: own ball holds some fake
    n_redecided: int  # points whose decision needed a float64 re-check


def _settle(
    engine: TileEngine,
    certain: torch.Tensor,
    maybe: torch.Tensor,
    queries: Prepared,
    refs: Prepared,
    balls: Balls,
    owner: str,
    strict: bool,
) -> tuple[torch.Tensor, int]:
    """ "Inside some ball" for every query: certain ones kept, ambiguous ones re-decided in float64."""
    hits = certain.clone()
    amb = (~certain & maybe).nonzero().squeeze(1)
    hits[amb] = ball_counts(engine, queries, amb, refs, balls, owner, strict) > 0
    return hits, amb.numel()


def _density_counts(
    engine: TileEngine, test: BallTest, fake: Prepared, real: Prepared, balls: Balls, strict: bool
) -> tuple[torch.Tensor, int]:
    """Exact number of real balls holding each fake (density; > 0 is precision), and the re-checked count."""
    counts = test.other_lo.long()
    pairs = test.pairs
    if pairs is not None:  # the ambiguous pairs themselves, from the same tiles
        owner, other = pairs[:, 0], pairs[:, 1]
        d2 = engine.exact_sqdist_pairs(fake, other, real, owner)
        counts += torch.bincount(other[_inside(d2, balls.radii.exact2(balls.k, owner), strict)], minlength=fake.n)
        return counts, other.unique().numel()
    amb = (test.other_lo != test.other_hi).nonzero().squeeze(1)
    counts[amb] = ball_counts(engine, fake, amb, real, balls, "ref", strict)
    return counts, amb.numel()


def _realism_reducer(
    engine: TileEngine, real: Union[Radii, GivenRadii], n_fake: int, k: int
) -> tuple[torch.Tensor, Callable[[torch.Tensor, slice, slice], None]]:
    """Running max of ``r_k(r)² / D`` over the real balls at most the median radius, per fake."""
    r2 = real.approx2(k)
    r2_sel = torch.where(r2 <= _median(r2), r2, 0).float()
    best = torch.zeros(n_fake, dtype=torch.float32, device=engine.device)

    def reduce(d: torch.Tensor, rs: slice, cs: slice) -> None:
        # A fake on a real centre has ratio r²/0 = inf; 0/0 (unselected ball) counts as 0. The tile is
        # overwritten (the ball pass's last reader of it): no tile-sized temporary.
        ratio = torch.div(r2_sel[rs, None], d, out=d).nan_to_num_(nan=0.0, posinf=math.inf).amax(0)
        torch.maximum(best[cs], ratio, out=best[cs])

    return best, reduce


def exact_membership(
    engine: TileEngine,
    real: Union[Radii, GivenRadii],
    fake: Union[Radii, GivenRadii],
    ks: Sequence[int],
    *,
    strict: bool,
    density_coverage: bool,
    realism_k: Optional[int] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> tuple[dict[int, MembershipResult], Optional[torch.Tensor]]:
    """One real×fake tiled pass deciding, for every k at once, all memberships.

    Returns:
        per-k :class:`MembershipResult`, and the realism score of each fake
        sample for ``realism_k`` (None when not requested).
    """
    rp, fp = real.p, fake.p
    balls = {k: (Balls.against(engine, real, k, fp), Balls.against(engine, fake, k, rp)) for k in ks}
    tests = {
        k: (
            BallTest(
                br.lo,
                br.hi,
                "row",
                fp.n,
                count=density_coverage,
                owner_any=density_coverage,
                pair_cap=engine.memory_budget // 64,
            ),
            BallTest(bf.lo, bf.hi, "col", rp.n),
        )
        for k, (br, bf) in balls.items()
    }
    best, extra = _realism_reducer(engine, real, fp.n, realism_k) if realism_k is not None else (None, None)
    engine.ball_pass(
        rp,
        fp,
        [t for pair in tests.values() for t in pair],
        extra=extra,
        progress=progress,
        restart=None if best is None else best.zero_,
    )
    if best is not None:
        engine.world.max_(best)

    out = {}
    for k, (t_real, t_fake) in tests.items():
        b_real, b_fake = balls[k]
        counts, coverage_hits, n_cov = None, None, 0
        if density_coverage:  # precision from the counts
            counts, n_prec = _density_counts(engine, t_real, fp, rp, b_real, strict)
            precision_hits = counts > 0
            coverage_hits, n_cov = _settle(engine, t_real.owner_lo, t_real.owner_hi, rp, fp, b_real, "query", strict)
        else:
            precision_hits, n_prec = _settle(engine, t_real.other_lo, t_real.other_hi, fp, rp, b_real, "ref", strict)
        recall_hits, n_rec = _settle(engine, t_fake.other_lo, t_fake.other_hi, rp, fp, b_fake, "ref", strict)
        out[k] = MembershipResult(precision_hits, recall_hits, counts, coverage_hits, n_prec + n_rec + n_cov)
    return out, None if best is None else best.sqrt()


def _median(x: torch.Tensor) -> torch.Tensor:
    """Median as numpy defines it (the mean of the two middle values for even n)."""
    s = x.sort().values
    m = x.numel() // 2
    return s[m] if x.numel() % 2 else (s[m - 1] + s[m]) / 2
