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

from .reductions import BallTest
from .tiles import Prepared, TileEngine, down32, up32

__all__ = ["KNN", "Radii", "GivenRadii", "exact_knn", "ball_counts", "MembershipResult", "exact_membership"]

# Extra fp32 candidates kept beyond k so that float64 refinement rarely needs a second look.
KNN_MARGIN = 8


@dataclasses.dataclass
class KNN:
    """Exact k nearest *other* neighbours: float64 squared distances and indices (ties by index)."""

    sqdist: torch.Tensor  # (n, k_max) float64, ascending
    index: torch.Tensor  # (n, k_max) int64
    n_redecided: int  # rows whose fp32 candidates could not settle the k-th distance


def _sort_pairs(d2: torch.Tensor, index: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort by distance, ties by index."""
    o = index.argsort(dim=dim, stable=True)
    d2, index = d2.gather(dim, o), index.gather(dim, o)
    o = d2.argsort(dim=dim, stable=True)
    return d2.gather(dim, o), index.gather(dim, o)


class Radii:
    """k-NN radii of ball owners against a reference set, fp32 with a rounding bracket.

    By default the owners are the whole set ``ref`` (one symmetric self pass).
    With ``owners``/``owner_ids`` — a subset of ``ref`` such as its hubs, see
    :meth:`TileEngine.subset` — the radii are measured against the *full*
    ``ref`` (the hub-vs-all pass of eP&R), each owner excluding itself.

    The pass keeps ``k_max + KNN_MARGIN`` fp32 candidates per owner. The k-th
    smallest fp32 value ``v_k`` is within a rounding bound of the true float64
    one, which is all the tiled ball tests need (:meth:`bracket2`). The float64
    radius of an owner is computed only when a borderline decision needs it
    (:meth:`exact2`), or for all by :meth:`knn`.
    """

    def __init__(self, engine: TileEngine, ref: Prepared, k_max: int,
                 progress: Optional[Callable[[int], None]] = None, *,
                 owners: Optional[Prepared] = None, owner_ids: Optional[torch.Tensor] = None) -> None:
        self.engine, self.ref, self.k_max = engine, ref, k_max
        self.p = ref if owners is None else owners
        self.ids = torch.arange(ref.n, device=engine.device) if owner_ids is None else owner_ids
        K = min(k_max + KNN_MARGIN, ref.n - 1)
        if owners is None:
            vals, idx = engine.self_topk(ref, K, progress=progress)
        else:
            vals, idx = engine.rect_topk(owners, ref, K, exclude=self.ids, progress=progress)
        vals, order = vals.sort(dim=1)
        self._set(vals, idx.gather(1, order))

    def _set(self, vals: torch.Tensor, idx: torch.Tensor) -> None:
        engine, p, ref = self.engine, self.p, self.ref
        self.vals, self.idx = vals, idx
        self.delta = engine.bound(p.norm, ref.max_norm)
        # Candidates' own norms bound their rounding more tightly than the set's max norm.
        self.delta_cand = engine.c * (p.norm + ref.norm[idx].amax(1)) ** 2
        self._d2 = torch.full((p.n, self.k_max), math.nan, dtype=torch.float64, device=engine.device)
        self._index = torch.full((p.n, self.k_max), -1, dtype=torch.int64, device=engine.device)
        self.n_redecided = 0

    def restrict(self, owner_pos: torch.Tensor) -> "Radii":
        """The same radii for a subset of the owners (positions), e.g. the hubs of a set."""
        sub = Radii.__new__(Radii)
        sub.engine, sub.ref, sub.k_max = self.engine, self.ref, self.k_max
        sub.p = self.engine.subset(self.p, owner_pos)
        sub.ids = self.ids[owner_pos]
        sub._set(self.vals[owner_pos], self.idx[owner_pos])
        return sub

    def neighbours(self, k: int) -> torch.Tensor:
        """Indices (into ``ref``) of each owner's k nearest others by fp32 distance."""
        return self.idx[:, :k]

    def approx2(self, k: int) -> torch.Tensor:
        """fp32 squared k-NN radius (as float64); the true one lies within :meth:`bracket2`."""
        return self.vals[:, k - 1].double()

    def bracket2(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 (lower, upper) bounds of the true squared k-NN radius.

        The k candidates with the smallest fp32 values bound it from above. From
        below: if k points were truly closer than ``L``, either all are
        candidates (so ``v_k < L + δ_cand``) or one is not (so the largest
        candidate ``v_K < L + δ``); ``L = min(v_k − δ_cand, v_K − δ)`` excludes both.
        """
        v_k = self.approx2(k)
        lower = v_k - self.delta_cand
        if self.vals.shape[1] < self.ref.n - 1:  # points outside the candidates exist
            lower = torch.minimum(lower, self.vals[:, -1].double() - self.delta)
        return lower, v_k + self.delta_cand

    def exact2(self, k: int, rows: torch.Tensor) -> torch.Tensor:
        """Float64 squared k-NN radius of owners ``rows``, computed once per owner and cached."""
        todo = rows[torch.isnan(self._d2[rows, 0])].unique()
        if todo.numel():
            self._refine(todo)
        return self._d2[rows, k - 1]

    def knn(self) -> KNN:
        """The exact float64 k-NN graph of every owner."""
        self.exact2(1, torch.arange(self.p.n, device=self.engine.device))
        return KNN(self._d2, self._index, self.n_redecided)

    def _refine(self, rows: torch.Tensor) -> None:
        engine, k_max = self.engine, self.k_max
        K = self.idx.shape[1]
        cand = self.idx[rows]
        d2 = engine.exact_sqdist_pairs(self.p, rows.repeat_interleave(K), self.ref, cand.reshape(-1)).view(-1, K)
        d2, cand = _sort_pairs(d2, cand)
        self._d2[rows], self._index[rows] = d2[:, :k_max], cand[:, :k_max]
        if K == self.ref.n - 1:  # every other point is a candidate: nothing can be missed
            return
        # A point outside the candidates has fp32 value ≥ the largest candidate's,
        # so its true value is ≥ that − δ: settled when that exceeds the k_max-th.
        bad = rows[self.vals[rows, -1].double() - self.delta[rows] < d2[:, k_max - 1]]
        if bad.numel():
            self.n_redecided += bad.numel()
            _redo_rows(engine, self.p, bad, self.ids[bad], self.ref,
                       up32(self._d2[bad, -1] + self.delta[bad]), k_max, self._d2, self._index)


class GivenRadii:
    """Radii taken as given (e.g. from an ANN graph): no bracket, no float64 refinement."""

    def __init__(self, owners: Prepared, r2: dict[int, torch.Tensor]) -> None:
        self.p, self._r2, self.n_redecided = owners, r2, 0

    def approx2(self, k: int) -> torch.Tensor:
        return self._r2[k]

    def bracket2(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._r2[k], self._r2[k]

    def exact2(self, k: int, rows: torch.Tensor) -> torch.Tensor:
        return self._r2[k][rows]


def _redo_rows(engine: TileEngine, owners: Prepared, rows: torch.Tensor, row_ids: torch.Tensor, ref: Prepared,
               thr: torch.Tensor, k_max: int, d2: torch.Tensor, idx: torch.Tensor) -> None:
    """Exact k-NN of owners ``rows`` (``row_ids`` in ``ref``) among all ref points with fp32 distance ≤ ``thr``."""

    def select(d: torch.Tensor, q_pos: torch.Tensor, cs: slice) -> torch.Tensor:
        mask = d <= thr[q_pos, None]
        cols = torch.arange(cs.start, cs.stop, device=d.device)
        return mask & (cols[None, :] != row_ids[q_pos, None])

    parts = list(engine.collect_pairs(owners, rows, ref, select))
    pos = torch.cat([q for q, _, _ in parts])
    found = torch.cat([r for _, r, _ in parts])
    dd = torch.cat([v for _, _, v in parts])
    # Sort by (row position, distance, index): successive stable sorts, least significant first.
    for key in range(3):
        o = (found, dd, pos)[key].argsort(stable=True)
        pos, found, dd = pos[o], found[o], dd[o]
    start = torch.searchsorted(pos, torch.arange(rows.numel(), device=pos.device))
    rank = torch.arange(pos.numel(), device=pos.device) - start[pos]
    keep = rank < k_max
    d2[rows[pos[keep]], rank[keep]] = dd[keep]
    idx[rows[pos[keep]], rank[keep]] = found[keep]


def exact_knn(engine: TileEngine, p: Prepared, k_max: int, progress: Optional[Callable[[int], None]] = None) -> KNN:
    """Exact k-NN (self excluded, float64 distances, ties by index) of ``p`` against itself."""
    return Radii(engine, p, k_max, progress=progress).knn()


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
