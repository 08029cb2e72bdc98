"""k-NN radii on the tiled engine: fp32 values with a proven bracket, float64 on demand.

The radius ``r_k(x; S)`` is the distance from ``x`` to its k-th nearest *other*
point of ``S``: self excluded by position, duplicates count, so a radius may be
0. :class:`Radii` keeps a few fp32 candidates per point; the true float64 value
is computed only where a decision needs it (``docs/exactness.md``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import torch

from ..engine import Prepared, TileEngine, reach_norm, up32

__all__ = ["KNN", "Radii", "RadiiState", "KnownRadii", "GivenRadii", "exact_knn", "KNN_MARGIN", "knn_margin"]

# Extra fp32 candidates kept beyond k so that float64 refinement rarely needs a second look.
KNN_MARGIN = 8
# The same at a reduced GEMM precision (bf16: a rounding band ~2^-8 of ‖a‖‖b‖ instead of ~d·2^-24): the k-th
# value is settled only when the last candidate kept lies beyond that band, which on concentrated
# high-dimensional data takes tens of candidates (issue 31: with 8, most true radii of the heavy family needed
# a second pass over the whole set).
KNN_MARGIN_REDUCED = 40


def knn_margin(precision: str) -> int:
    """Candidates kept beyond k by a radii pass at the GEMM ``precision`` (see :data:`KNN_MARGIN_REDUCED`)."""
    return KNN_MARGIN if precision in ("fp32", "tf32") else KNN_MARGIN_REDUCED


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

    def __init__(
        self,
        engine: TileEngine,
        ref: Prepared,
        k_max: int,
        progress: Optional[Callable[[int], None]] = None,
        *,
        owners: Optional[Prepared] = None,
        owner_ids: Optional[torch.Tensor] = None,
    ) -> None:
        self.engine, self.ref, self.k_max = engine, ref, k_max
        self.p = ref if owners is None else owners
        self.ids = torch.arange(ref.n, device=engine.device) if owner_ids is None else owner_ids
        K = min(k_max + knn_margin(engine.precision), ref.n - 1)
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
        """The same radii for a subset of the owners (positions), e.g. the hubs of a set; float64 values
        already computed come along."""
        sub = type(self).__new__(type(self))
        sub.engine, sub.ref, sub.k_max = self.engine, self.ref, self.k_max
        sub.p = self.engine.subset(self.p, owner_pos)
        sub.ids = self.ids[owner_pos]
        sub._set(self.vals[owner_pos], self.idx[owner_pos])
        sub._d2, sub._index = self._d2[owner_pos], self._index[owner_pos]
        return sub

    def state(self) -> "RadiiState":
        """Everything this pass found, on the CPU, with every float64 radius computed (for reuse)."""
        knn = self.knn()
        return RadiiState(self.vals.cpu(), self.idx.cpu(), knn.sqdist.cpu(), knn.index.cpu())

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
        unsettled = self.vals[rows, -1].double() - self.reach_bound(rows, d2[:, k_max - 1]) < d2[:, k_max - 1]
        # Radius 0 (k_max copies among the candidates) is settled; only ties by index among all the copies
        # remain, and copies are found by their values, not by a pass over every pair within 0 (n² pairs
        # when most of a set is one point).
        copies = unsettled & (d2[:, k_max - 1] == 0)
        if copies.any():
            at = copies.nonzero().flatten()
            unsettled[at[self._nearest_copies(rows[at])]] = False
        bad = rows[unsettled]
        if bad.numel():
            self.n_redecided += bad.numel()
            self._redo(bad, up32(self._d2[bad, -1] + self.delta[bad]))

    def reach_bound(self, rows: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        """The rounding bound of owners ``rows`` against the points that could lie within ``√r2`` of them
        (:func:`~eprmetrics.engine.reach_norm`): the bound against the set's largest norm (:attr:`delta`) left
        most true radii of heavy-tailed sets unsettled, each costing one more pass over the whole set."""
        norm = self.p.norm[rows]
        reach = reach_norm(norm, r2, self.ref.max_norm)
        return torch.minimum(self.delta[rows], self.engine.c * (norm + reach) ** 2)

    def _nearest_copies(self, rows: torch.Tensor) -> torch.Tensor:
        """Set the k-NN of owners ``rows`` (radius 0) to the ``k_max`` lowest-index other copies of each in ``ref``.

        Returns which rows were set; a row with fewer verified copies is left to the pass over pairs, and so is
        every row when ``ref`` holds values so small that distinct rows can be at float64 distance 0.
        """
        k_max, device, n = self.k_max, self.engine.device, self.ref.n
        keyed = self.ref.row_keys(device)
        if keyed is None:
            return torch.zeros(rows.numel(), dtype=torch.bool, device=device)
        keys, order = keyed  # order: equal keys in ascending index
        sorted_keys = keys[order]
        own = self.ids[rows]
        start = torch.searchsorted(sorted_keys, keys[own])
        pos = (start[:, None] + torch.arange(k_max + 1, device=device)).clamp_(max=n - 1)
        members = order[pos]
        # k_max + 1 entries with the row's key (itself among them, or k_max others of lower index), equal in value.
        ok = (start + k_max <= n - 1) & (sorted_keys[pos[:, -1]] == keys[own])
        vals = self.ref.source.take(own, device)
        for j in range(k_max + 1):
            ok &= (self.ref.source.take(members[:, j], device) == vals).all(1)
        others = members[ok] != own[ok, None]
        others &= others.cumsum(1) <= k_max
        self._index[rows[ok]] = members[ok][others].view(-1, k_max)
        self._d2[rows[ok]] = 0.0
        return ok

    def _redo(self, rows: torch.Tensor, thr: torch.Tensor) -> None:
        """Exact k-NN of owners ``rows`` among all ref points with fp32 distance ≤ ``thr``."""
        row_ids, k_max = self.ids[rows], self.k_max

        def select(d: torch.Tensor, q_pos: torch.Tensor, cs: slice) -> torch.Tensor:
            mask = d <= thr[q_pos, None]
            cols = torch.arange(cs.start, cs.stop, device=d.device)
            return mask & (cols[None, :] != row_ids[q_pos, None])

        parts = self.engine.collect_pairs(self.p, rows, self.ref, select)
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
        self._d2[rows[pos[keep]], rank[keep]] = dd[keep]
        self._index[rows[pos[keep]], rank[keep]] = found[keep]


@dataclasses.dataclass
class RadiiState:
    """A finished :class:`Radii` pass of a whole set against itself, kept for reuse (on the CPU).

    ``vals``/``idx``: the fp32 candidates (ascending) the pass kept; ``sqdist``/``index``: the exact
    float64 k-NN of every point up to ``k_max`` (ties by index).
    """

    vals: torch.Tensor  # (n, K) float32
    idx: torch.Tensor  # (n, K) int64
    sqdist: torch.Tensor  # (n, k_max) float64
    index: torch.Tensor  # (n, k_max) int64

    @property
    def k_max(self) -> int:
        return int(self.sqdist.shape[1])

    def scaled(self, factor: float) -> "RadiiState":
        """The same radii for the set multiplied by ``sqrt(factor)`` (a power of 4: exact)."""
        if factor == 1.0:
            return self
        return RadiiState(self.vals * factor, self.idx, self.sqdist * factor, self.index)


class KnownRadii(Radii):
    """Radii restored from a :class:`RadiiState`: every float64 radius is known, so brackets are exact.

    Behaves as the :class:`Radii` pass that produced the state (same fp32 candidates, hence the same
    neighbours and realism scores), without the pass; decisions against these balls equal a float64
    brute force like any other (the cross-pass rounding bound is the engine's).
    """

    def __init__(self, engine: TileEngine, ref: Prepared, state: RadiiState) -> None:
        dev = engine.device
        self.engine, self.ref, self.k_max = engine, ref, state.k_max
        self.p, self.ids = ref, torch.arange(ref.n, device=dev)
        self._set(state.vals.to(dev), state.idx.to(dev))
        self._d2, self._index = state.sqdist.to(dev), state.index.to(dev)

    def bracket2(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        v = self._d2[:, k - 1]
        return v, v


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


def exact_knn(engine: TileEngine, p: Prepared, k_max: int, progress: Optional[Callable[[int], None]] = None) -> KNN:
    """Exact k-NN (self excluded, float64 distances, ties by index) of ``p`` against itself."""
    return Radii(engine, p, k_max, progress=progress).knn()
