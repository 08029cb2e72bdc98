"""The sampled P&R estimator: exact membership of a random sample of queries, with an interval.

Precision is the mean over fakes of ``1[fake inside some real ball]`` (recall
symmetric), so a random sample of queries, each decided *exactly* against
every reference ball, estimates it without bias (:mod:`eprmetrics.sampling`).
What stays cheap as n grows:

* **Radii from the k-NN graph.** A backend that reports the k points it found
  gives, from their float64 distances, an *upper bound* ``U`` of every true
  radius (a missed neighbour can only make the k-th found one farther). A query
  outside every ``U`` ball is certainly outside every true ball.
* **True radii on demand.** A query inside some ``U`` ball needs that ball's
  true radius, which one tiled owner-vs-all row gives exactly
  (:class:`~eprmetrics.metrics.Radii` with ``owners``). Candidates are tried
  deepest first, so most queries need one radius; a query inside many ``U``
  balls (near outliers with huge radii) is handled in rounds of a few
  candidates, each round's tried bounds replaced by the true radii.
* **Strata.** Queries are stratified by their own hubness (k-occurrence bin)
  and, when the backend can search foreign points, by an *approximate*
  membership from the ANN search of the queries against the reference index.
  The approximation only decides which stratum a query falls in; the estimate
  stays unbiased however wrong it is, and the closer it is, the smaller the
  sample needed for a given interval.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Union

import numpy as np
import torch

from .metrics import Radii
from .sampling import Estimate, StratifiedSample, hubness_bins
from .tiles import Prepared, TileEngine, up32

__all__ = ["UpperRadii", "sampled_hits", "approximate_hits", "SideEstimate", "estimate_side", "PILOT"]

# Queries per set of the pilot sample that sizes a half-width-targeted sample.
PILOT = 1000
# fp32 candidate balls kept per query and tile, deepest first.
CANDIDATES_PER_TILE = 8


class UpperRadii:
    """Upper bounds ``U`` of the k-NN radii of every point of ``ref``, with true radii on demand.

    Args:
        engine, ref, k: the tiled engine, the prepared set and the neighbourhood size.
        neighbours: (n, k) indices of k distinct other points found for each
            point (``-1`` when fewer: unbounded radius), or None with ``exact``.
        exact: a full :class:`Radii` of ``ref`` (exact graph): the bounds are then the true radii.
    """

    def __init__(self, engine: TileEngine, ref: Prepared, k: int, neighbours: Optional[torch.Tensor] = None,
                 exact: Optional[Radii] = None) -> None:
        self.engine, self.ref, self.k = engine, ref, k
        self._exact = exact
        self.n_true = 0  # owners whose true radius needed an owner-vs-all row
        if exact is not None:
            self.upper2 = exact.exact2(k, torch.arange(ref.n, device=engine.device))
            self._true2 = self.upper2
            return
        nb = neighbours.to(engine.device)
        rows = torch.arange(ref.n, device=engine.device).repeat_interleave(k)
        cols = nb.reshape(-1)
        d2 = torch.full((rows.numel(),), math.inf, dtype=torch.float64, device=engine.device)
        ok = cols >= 0
        d2[ok] = engine.exact_sqdist_pairs(ref, rows[ok], ref, cols[ok])
        self.upper2 = d2.view(ref.n, k).amax(1)
        self._true2 = torch.full((ref.n,), math.nan, dtype=torch.float64, device=engine.device)

    @property
    def is_exact(self) -> bool:
        return self._exact is not None

    def tighten(self) -> None:
        """Replace the bounds of owners whose true radius is known by that radius."""
        if not self.is_exact:
            known = ~torch.isnan(self._true2)
            self.upper2[known] = self._true2[known]

    def true2(self, owners: torch.Tensor) -> torch.Tensor:
        """Float64 true squared radius of ``owners`` (computed once per owner)."""
        todo = owners[torch.isnan(self._true2[owners])].unique()
        if todo.numel():
            r = Radii(self.engine, self.ref, self.k, owners=self.engine.subset(self.ref, todo), owner_ids=todo)
            self._true2[todo] = r.exact2(self.k, torch.arange(todo.numel(), device=self.engine.device))
            self.n_true += todo.numel()
        return self._true2[owners]


def _candidates(engine: TileEngine, queries: Prepared, q_index: torch.Tensor, radii: UpperRadii,
                per_tile: Optional[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs (query position, ball owner, exact d²) with ``d² ≤ U²``, and per query the number of
    fp32 candidates seen (to know whether ``per_tile`` left some out)."""
    ref = radii.ref
    hi = up32(radii.upper2 + engine.bound(ref.norm, queries.max_norm))
    seen = torch.zeros(q_index.numel(), dtype=torch.int64, device=engine.device)
    kept = torch.zeros_like(seen)

    def select(d: torch.Tensor, q_pos: torch.Tensor, cs: slice) -> torch.Tensor:
        h = hi[None, cs]
        cand = d <= h
        seen[q_pos] += cand.sum(1)
        if per_tile is None or d.shape[1] <= per_tile:
            return cand
        depth = torch.where(cand, d / h.clamp_min(torch.finfo(torch.float32).tiny), math.inf)
        j = depth.topk(per_tile, dim=1, largest=False).indices
        mask = torch.zeros_like(cand).scatter_(1, j, True) & cand
        return mask

    parts = list(engine.collect_pairs(queries, q_index, ref, select))
    if not parts:
        empty = torch.empty(0, dtype=torch.int64, device=engine.device)
        return empty, empty, empty.double(), seen > kept
    pos = torch.cat([p for p, _, _ in parts])
    own = torch.cat([o for _, o, _ in parts])
    d2 = torch.cat([v for _, _, v in parts])
    kept += torch.bincount(pos, minlength=q_index.numel())
    inside = d2 <= radii.upper2[own]
    return pos[inside], own[inside], d2[inside], seen > kept


def _decide(radii: UpperRadii, pos: torch.Tensor, own: torch.Tensor, d2: torch.Tensor, hits: torch.Tensor,
            strict: bool) -> None:
    """Set ``hits[q]`` when some candidate ball of q truly holds it: deepest candidate first, then the rest."""
    if pos.numel() == 0:
        return
    depth = d2 / radii.upper2[own].clamp_min(torch.finfo(torch.float64).tiny)
    o = depth.argsort(stable=True)  # sort by (query, depth)
    pos, own, d2 = pos[o], own[o], d2[o]
    o = pos.argsort(stable=True)
    pos, own, d2 = pos[o], own[o], d2[o]
    first = torch.ones_like(pos, dtype=torch.bool)
    first[1:] = pos[1:] != pos[:-1]
    for sel in (first, ~first):
        sel = sel & ~hits[pos]
        if sel.any():
            r2 = radii.true2(own[sel])
            inside = d2[sel] < r2 if strict else d2[sel] <= r2
            hits[pos[sel][inside]] = True


def sampled_hits(engine: TileEngine, queries: Prepared, q_index: torch.Tensor, radii: UpperRadii,
                 strict: bool) -> torch.Tensor:
    """Exact membership of the queries ``q_index`` in the union of all reference balls.

    Equals the float64 brute-force decision: candidates come from the upper-bound
    radii with an fp32 rounding margin, are confirmed by float64 distances, and
    decided against true radii.
    """
    hits = torch.zeros(q_index.numel(), dtype=torch.bool, device=engine.device)
    per_tile = None if radii.is_exact else CANDIDATES_PER_TILE
    todo = torch.arange(q_index.numel(), device=engine.device)
    while todo.numel():
        pos, own, d2, more = _candidates(engine, queries, q_index[todo], radii, per_tile)
        sub = torch.zeros(todo.numel(), dtype=torch.bool, device=engine.device)
        _decide(radii, pos, own, d2, sub, strict)
        hits[todo] = sub
        # Every candidate of a query still outside has had its true radius computed: with the
        # bounds tightened to those, a new pass over the queries that had more candidates than
        # were kept sees only balls not tried yet (huge-radius outliers cannot flood a pass).
        radii.tighten()
        todo = todo[more & ~sub]
    return hits


def approximate_hits(dist: np.ndarray, idx: np.ndarray, squared: bool, upper2: torch.Tensor) -> np.ndarray:
    """Approximate membership from an ANN search of the queries in the reference index:
    inside the upper-bound ball of one of the reference points found."""
    u = upper2.cpu().numpy()
    d2 = np.asarray(dist, np.float64) if squared else np.asarray(dist, np.float64) ** 2
    found = idx >= 0
    return (found & (d2 <= u[np.where(found, idx, 0)])).any(1)


@dataclasses.dataclass
class SideEstimate:
    """One side's estimate (precision: fakes against real balls; recall: reals against fake balls)."""

    estimate: Estimate
    n_true_radii: int  # reference radii computed exactly on demand
    strata: int
    approximate: Optional[float]  # mean of the approximate membership, when one was used


def estimate_side(engine: TileEngine, queries: Prepared, radii: UpperRadii, occurrence: np.ndarray,
                  approx: Optional[np.ndarray], *, strict: bool, sample_size: Union[int, float],
                  confidence: float, seed: int) -> SideEstimate:
    """Stratified sampled estimate of the share of ``queries`` inside the reference balls.

    ``sample_size``: an int (queries drawn) or a float in (0, 1), the target
    half-width: a pilot of :data:`PILOT` queries sizes the sample.
    """
    strata = hubness_bins(occurrence, radii.k)
    if approx is not None:
        strata = strata * 2 + approx.astype(np.int64)
    design = StratifiedSample(strata, seed)
    known: dict[int, bool] = {}

    def observe(index: np.ndarray) -> np.ndarray:
        new = np.array([i for i in index if i not in known], dtype=np.int64)
        if new.size:
            h = sampled_hits(engine, queries, torch.from_numpy(new).to(engine.device), radii, strict).cpu().numpy()
            known.update(zip(new.tolist(), h.tolist()))
        return np.array([known[i] for i in index], dtype=np.float64)

    if isinstance(sample_size, float):
        pilot = design.draw(min(PILOT, design.N))
        s = design.size_for(sample_size, pilot, observe(pilot), confidence)
        index = design.draw(max(s, pilot.size)) if s > pilot.size else pilot
    else:
        index = design.draw(sample_size)
    est = design.estimate(index, observe(index), confidence)
    return SideEstimate(est, radii.n_true, len(design.units),
                        None if approx is None else float(np.mean(approx)))

