"""Upper bounds of every k-NN radius from a k-NN graph, with the true radius on demand.

A backend that reports the k points it found gives, from their float64
distances, an *upper bound* ``U`` of every true radius: a missed neighbour can
only make the k-th found one farther. A query outside every ``U`` ball is
certainly outside every true ball; one inside some ``U`` ball needs that ball's
true radius, which one tiled owner-vs-all row gives exactly.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

from ..engine import U32, Prepared, TileEngine
from .radii import Radii
from .screen import Screen

__all__ = ["UpperRadii", "measured_upper2", "REFINE_LEVELS"]

# Refinements of one owner's bound before it costs a true-radius row (the index decides what each level searches).
REFINE_LEVELS = 2


def measured_upper2(dist: torch.Tensor, dim: int) -> torch.Tensor:
    """Float64 upper bounds of true squared distances from fp32 distances ``fl(√fl(Σ fl(a_i − b_i)²))``.

    With inputs exact in fp32 (float16, bfloat16 or float32 values, times a power of two), each
    difference, square and partial sum rounds once: ``fl(Σ) ≥ Σ·(1 − u)²(1 − γ_{d−1})``, and the square
    root loses one more ``u``. ``(1 + 4(d + 4)u)`` covers all of them for any summation order
    (``d·u ≪ 1``; ``inf`` stays ``inf``).
    """
    d2 = dist.double().pow(2)
    return d2 * (1.0 + 4.0 * (dim + 4) * U32)


class UpperRadii:
    """Upper bounds ``U`` of the k-NN radii of every point of ``ref``, with true radii on demand.

    Args:
        engine, ref, k: the tiled engine, the prepared set and the neighbourhood size.
        neighbours: (n, k) indices of k distinct other points found for each
            point (``-1`` when fewer: unbounded radius), or None with ``exact``.
        exact: a full :class:`Radii` of ``ref`` (exact graph): the bounds are then the true radii.
        measured: (n, k) fp32 distances of those neighbours that the backend measured by direct
            differences of the very values of ``ref`` (:attr:`ANNBackend.measures_distances`); they
            give the bounds without a float64 pass (:func:`measured_upper2`).
    """

    def __init__(
        self,
        engine: TileEngine,
        ref: Prepared,
        k: int,
        neighbours: Optional[torch.Tensor] = None,
        exact: Optional[Radii] = None,
        measured: Optional[torch.Tensor] = None,
    ) -> None:
        self.engine, self.ref, self.k = engine, ref, k
        self._exact = exact
        self.n_true = 0  # owners whose true radius needed an owner-vs-all row
        # ``refiner(ids, level) -> (len, k) measured fp32 distances of k distinct other points``: tighter bounds for a
        # few owners on demand (an index that can search its own points again, wider); None: no refinement.
        self.refiner: Optional[Callable[[np.ndarray, int], np.ndarray]] = None
        self._refined: Optional[torch.Tensor] = None
        self.n_refined = 0
        # What the sampled decisions cost (eprmetrics.estimators.decisions): (query, ball) pairs inside an upper
        # bound that were examined, and queries scanned against every ball (once per round they took part in).
        self.n_candidates = 0
        self.n_scanned = 0
        # A projection screen of ``ref`` (:mod:`.screen`): true radii from the points within each bound only.
        self.screen: Optional[Screen] = None
        if exact is not None:
            self.upper2 = exact.exact2(k, torch.arange(ref.n, device=engine.device))
            self._true2 = self.upper2
            return
        if neighbours is None:
            raise RuntimeError("UpperRadii: expected neighbours or exact radii, got neither")
        self._true2 = torch.full((ref.n,), math.nan, dtype=torch.float64, device=engine.device)
        if measured is not None:
            self.upper2 = measured_upper2(measured.to(engine.device), engine.dim).amax(1)
            return
        nb = neighbours.to(engine.device)
        rows = torch.arange(ref.n, device=engine.device).repeat_interleave(k)
        cols = nb.reshape(-1)
        d2 = torch.full((rows.numel(),), math.inf, dtype=torch.float64, device=engine.device)
        ok = cols >= 0
        d2[ok] = engine.exact_sqdist_pairs(ref, rows[ok], ref, cols[ok])
        self.upper2 = d2.view(ref.n, k).amax(1)

    @property
    def is_exact(self) -> bool:
        return self._exact is not None

    def set_true(self, owners: torch.Tensor, true2: torch.Tensor) -> None:
        """Record true squared radii computed elsewhere (e.g. the hub method's hub-vs-all pass): no row for them."""
        if not self.is_exact:
            self._true2[owners] = true2
            self.upper2[owners] = true2

    @property
    def known(self) -> torch.Tensor:
        """(n,) bool: owners whose true radius has been computed (all of them for an exact graph)."""
        return ~torch.isnan(self._true2)

    def refine(self, owners: torch.Tensor, upto: int = REFINE_LEVELS) -> bool:
        """Tighter upper bounds for ``owners`` without a true radius refined less than ``upto`` times (of
        :data:`REFINE_LEVELS`), each one level further (a wider search of the index, a few gathered rows); True
        when some owner was refined."""
        if self.refiner is None or self.is_exact or owners.numel() == 0:
            return False
        if self._refined is None:
            self._refined = torch.zeros(self.ref.n, dtype=torch.int8, device=self.engine.device)
        todo = owners[(self._refined[owners] < min(upto, REFINE_LEVELS)) & torch.isnan(self._true2[owners])].unique()
        if todo.numel() == 0:
            return False
        levels = self._refined[todo]
        for level in levels.unique().tolist():
            ids = todo[levels == level]
            self._refined[ids] = level + 1
            self.n_refined += ids.numel()
            dist = torch.from_numpy(self.refiner(ids.cpu().numpy(), level + 1)).to(self.engine.device)
            new = measured_upper2(dist, self.engine.dim).amax(1)
            self.upper2[ids] = torch.minimum(self.upper2[ids], new)
        return True

    def tighten(self) -> None:
        """Replace the bounds of owners whose true radius is known by that radius."""
        if not self.is_exact:
            known = ~torch.isnan(self._true2)
            self.upper2[known] = self._true2[known]

    def true2(self, owners: torch.Tensor) -> torch.Tensor:
        """Float64 true squared radius of ``owners`` (computed once per owner)."""
        todo = owners[torch.isnan(self._true2[owners])].unique()
        if todo.numel() and self.screen is not None:
            self._true2[todo] = self.screen.kth2(todo, self.upper2[todo], self.k)
            self.n_true += todo.numel()
            todo = todo[torch.isnan(self._true2[todo])]  # fewer than k points within a bound: a full row
            self.n_true -= todo.numel()
        if todo.numel():
            r = Radii(self.engine, self.ref, self.k, owners=self.engine.subset(self.ref, todo), owner_ids=todo)
            self._true2[todo] = r.exact2(self.k, torch.arange(todo.numel(), device=self.engine.device))
            self.n_true += todo.numel()
        return self._true2[owners]
