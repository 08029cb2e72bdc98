"""Exact decisions that read a fraction of each row: distances bounded from below by a projection.

For ``m`` orthonormal directions ``Q`` (the leading principal directions of the reference set),
``‖Qᵀ(a − b)‖ ≤ ‖a − b‖``. So a point whose projected distance to a ball owner exceeds the owner's
upper-bound radius ``U`` can be none of its k nearest neighbours, and a query whose projected
distance to an owner exceeds ``U`` lies outside that ball. With every point's projection stored
(``m`` values, bfloat16), a true-radius row or a query's scan over all balls costs one GEMM of
``m`` instead of ``d`` columns, plus float64 distances of the few pairs the bound lets through:
the answers are those of the full rows, because nothing the bound removes could change them.

The bound holds for the *computed* values (``docs/exactness.md``, section 5). With ``ĉ`` a centred
fp32 row of norm ``ν``, ``P`` the fp32 copy of the float64 basis ``Q`` and ``p̃`` the stored bfloat16
``fl(ĉP)``:

* ``‖p̃ − Qᵀc‖ ≤ ε = ν·(γ_d‖P‖_F + ‖P − Q‖_F + 2uσ)(1 + 2⁻⁹) + 2⁻⁹σν`` (the GEMM's dot products,
  the basis' own rounding, the centring, then the bfloat16 store), ``σ = ‖Q‖₂``;
* the fp32 GEMM of the stored values errs by at most ``c_m(‖p̃_a‖ + ‖p̃_b‖)² ≤ 2c_m(‖p̃_a‖² + ‖p̃_b‖²)``
  (:func:`~eprmetrics.engine.rounding_factor` at ``m``).

Hence ``D ≤ R`` implies ``D̃² ≤ (σR + ε_a + √(2c_m)‖p̃_a‖ + ε_b + √(2c_m)‖p̃_b‖)²``: each side
contributes one *reach* term, and a pair is kept when its tile value is at most the square of
the sum of the two reaches (three element-wise tile operations after the GEMM).

Whether the screen pays depends on the data: on features whose variance is spread over many
directions the bound lets many pairs through, and each costs a gathered float64 distance.
:func:`build_screen` measures the share of pairs that pass on a sample of rows (a pilot) and
keeps the screen only where it is small (``"auto"``).

Example:
    >>> import numpy as np, torch
    >>> from eprmetrics.engine import FeatureSet, TileEngine
    >>> from eprmetrics.neighbours import Radii
    >>> from eprmetrics.neighbours.screen import Screen, fit_basis
    >>> x = np.random.default_rng(0).normal(size=(3000, 64)) * np.linspace(3, 0.05, 64)
    >>> eng = TileEngine(64, torch.device("cpu"), 1 << 26)
    >>> fs = FeatureSet(x.astype("float32"), "x")
    >>> p = eng.prepare(fs, eng.center_of(fs))
    >>> screen = Screen(eng, p, fit_basis(eng, p, 16, seed=0))
    >>> owners = torch.arange(50)
    >>> r2 = screen.kth2(owners, torch.full((50,), 4.0, dtype=torch.float64), k=3)  # 4.0: an upper bound
    >>> full = Radii(eng, p, 3).exact2(3, owners)
    >>> bool(torch.equal(r2[r2.isfinite()], full[r2.isfinite()]))  # where 4.0 was a true bound: equal
    True
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
import torch

from ..engine import PRECISIONS, U32, Prepared, TileEngine, rounding_factor, up32
from ..engine.basis import principal_basis
from ..engine.rounding import dot_gamma

__all__ = [
    "COLUMNS",
    "screen_tiles",
    "Screen",
    "Projected",
    "fit_basis",
    "screen_dims",
    "build_screen",
    "ScreenReport",
    "PASS_SHARE",
]

# The pilot: rows the basis is fitted on and the pass share measured against, and owners tried.
PILOT_ROWS = 4096
PILOT_OWNERS = 256
# "auto" keeps the screen when at most this share of (owner, point) pairs passes in the pilot: a pair that
# passes costs a gathered float64 distance, ~100× a GEMM element here, and the projection of the whole set
# costs m full rows.
PASS_SHARE = 0.0025
_BF16_U = 2.0**-9  # unit round-off of bfloat16
COLUMNS = 16384  # stored projections widened to fp32 at once (at most; fewer under small memory budgets)


def screen_dims(dim: int) -> int:
    """Directions of the screen for ``dim``-dimensional features: d/8 (1/8 of a full row's GEMM), at most 512;
    0 (no screen) below 128 features, where a row is cheap already."""
    return 0 if dim < 128 else min(512, dim // 8)


@dataclasses.dataclass
class Projected:
    """Stored projections of some rows: bfloat16 values, fp32 squared norms of those values and each row's
    reach term without a radius (``ε + √(2c_m)‖p̃‖``, float64)."""

    values: torch.Tensor  # (n, m) bfloat16
    sq: torch.Tensor  # (n,) float32
    slack: torch.Tensor  # (n,) float64

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    def part(self, start: int, stop: int) -> "Projected":
        """Rows ``start:stop`` (views)."""
        return Projected(self.values[start:stop], self.sq[start:stop], self.slack[start:stop])


def screen_tiles(memory_budget: int) -> tuple[int, int]:
    """(points per block, rows per tile) of the screen's passes: distance, reach and mask tiles (9 bytes an
    element) in at most a third of ``memory_budget``."""
    cols = max(256, min(COLUMNS, memory_budget // 4096))
    return cols, max(1, memory_budget // (27 * cols))


def fit_basis(engine: TileEngine, p: Prepared, m: int, seed: int, rows: int = PILOT_ROWS) -> torch.Tensor:
    """Float64 ``d × m`` orthonormal principal directions of ``p`` fitted on ``rows`` of its rows (seeded)."""
    n = p.n
    pick = np.sort(np.random.default_rng([seed, 7]).choice(n, min(n, rows), replace=False))
    sample = engine.rows_at(p, torch.from_numpy(pick).to(engine.device))
    return principal_basis(sample, m, seed, power_iters=2)


class Screen:
    """The projection screen of one reference set ``ref`` (its balls and its points).

    Args:
        engine: the tiled engine (device, memory budget, rounding model).
        ref: the prepared reference set; every row of it is projected here.
        basis: float64 ``d × m`` matrix with orthonormal columns (:func:`fit_basis`).
        project_ref: project every row of ``ref`` now (False: only :meth:`project` for the pilot).
    """

    def __init__(self, engine: TileEngine, ref: Prepared, basis: torch.Tensor, project_ref: bool = True) -> None:
        self.engine, self.ref = engine, ref
        q = basis.to(engine.device, torch.float64)
        self.P = q.float()
        self.m = int(q.shape[1])
        self.sigma = float(torch.linalg.matrix_norm(q, ord=2)) * (1 + 1e-12)
        p_f = float(torch.linalg.matrix_norm(self.P.double()))
        off = float(torch.linalg.matrix_norm(self.P.double() - q))
        # A reduced-precision GEMM mode (TF32, bf16) rounds the inputs first: each product errs by (2u_in + u_in²).
        u_in = PRECISIONS[engine.precision]
        gamma = dot_gamma(engine.dim, engine.error_bound) + 2 * u_in + u_in**2
        per_norm = (gamma * p_f + off + 2 * U32 * self.sigma) * (1 + _BF16_U)
        self._eps = (per_norm + _BF16_U * self.sigma) * 1.01  # ε per unit of ν (float64 evaluation margin)
        self._gemm = math.sqrt(2 * rounding_factor(self.m, engine.error_bound, engine.precision))
        # This rank's column blocks of ``ref`` (start, projections): under torch.distributed each rank holds
        # and screens its share of the points, and the pairs found are gathered.
        self.blocks: list[tuple[int, Projected]] = []
        self.columns, self._tile_rows = screen_tiles(engine.memory_budget)  # points per block, rows per tile
        self.pairs_screened = 0  # (row, point) pairs the screen looked at
        self.pairs_passed = 0  # pairs it let through to a float64 distance
        if project_ref:
            self.project_ref()

    # ------------------------------------------------------------------ projections
    def project_ref(self) -> None:
        """Project this rank's column blocks of the reference set (read in order, once), into one allocation:
        blocks allocated one by one between the pass's large temporaries would pin glibc's heap (measured at
        1.5M × 4096: +2 GiB resident beyond the 1.5 GB of projections, kept after they were released)."""
        n, world = self.ref.n, self.engine.world
        starts = [j0 for j0 in range(0, n, self.columns) if world.mine(j0 // self.columns)]
        sizes = [min(j0 + self.columns, n) - j0 for j0 in starts]
        whole = self._empty(sum(sizes))
        self.blocks, at = [], 0
        for j0, size in zip(starts, sizes):
            self.blocks.append((j0, self.project(self.ref, start=j0, stop=j0 + size, out=whole.part(at, at + size))))
            at += size

    def _empty(self, n: int) -> Projected:
        dev = self.engine.device
        return Projected(
            torch.empty((n, self.m), dtype=torch.bfloat16, device=dev),
            torch.empty(n, dtype=torch.float32, device=dev),
            torch.empty(n, dtype=torch.float64, device=dev),
        )

    def project(
        self,
        p: Prepared,
        index: Optional[torch.Tensor] = None,
        start: int = 0,
        stop: Optional[int] = None,
        out: Optional[Projected] = None,
    ) -> Projected:
        """Stored projections of the rows ``index`` of ``p`` (or the rows ``start:stop``), into ``out`` when
        given; ``p`` is centred like ``ref``. Every temporary is a reused buffer of the engine's workspace."""
        if not torch.equal(p.center, self.ref.center):
            raise RuntimeError("Screen.project: the rows must be centred like the reference set")
        eng = self.engine
        stop = p.n if stop is None else stop
        n = stop - start if index is None else int(index.numel())
        out = self._empty(n) if out is None else out

        def scan() -> None:
            for s in range(0, n, eng.scan_rows):
                e = min(s + eng.scan_rows, n)
                if index is None:
                    rows = eng.rows(p, start + s, start + e, into="rows")
                else:
                    rows = eng.rows_at(p, index[s:e])
                proj = eng.scratch.get("screen proj", (e - s, self.m), torch.float32, eng.device)
                out.values[s:e] = torch.mm(rows, self.P, out=proj)
                wide = eng.scratch.get("screen wide", (e - s, self.m), torch.float64, eng.device)
                out.slack[s:e] = wide.copy_(out.values[s:e]).pow_(2).sum(1)  # ‖p̃‖², float64, for now

        eng.run_pass(scan)
        sq = out.slack.clone()
        out.sq.copy_(sq)  # rounded once to fp32
        nu = (p.norm[start:stop] if index is None else p.norm[index]) * (1 + 4 * U32)
        torch.add(nu * self._eps, sq.sqrt_().mul_(self._gemm), out=out.slack)
        return out

    def _reach(self, side: Projected, radius2: Optional[torch.Tensor]) -> torch.Tensor:
        """fp32 reach of each row: its slack, plus ``σR`` when it owns a ball of squared radius ``radius2``
        (rounded up, and up again by the relative error of the three fp32 tile operations that use it)."""
        reach = side.slack if radius2 is None else side.slack + self.sigma * radius2.sqrt() * (1 + 1e-9)
        return up32(reach * (1 + 8 * U32)).nan_to_num_(nan=math.inf)  # a radius not known: nothing ruled out

    # ------------------------------------------------------------------ the pass
    def survivors(
        self,
        rows: Projected,
        row_radius2: Optional[torch.Tensor] = None,
        col_radius2: Optional[torch.Tensor] = None,
        cols: Optional[Projected] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(row position, column)`` of every pair that may lie within the row's ball (``row_radius2``) or the
        column's ball (``col_radius2``, indexed by column): every pair within the ball (by float64 distance)
        is among them. The columns are the reference set's points (this rank's blocks, the pairs of all
        ranks gathered), or ``cols`` (every rank alike, as in the pilot)."""
        eng = self.engine
        blocks = [(0, cols)] if cols is not None else self.blocks
        n_cols = cols.n if cols is not None else self.ref.n
        a_reach = self._reach(rows, row_radius2)
        tr = max(1, min(rows.n, self._tile_rows))

        def scan() -> list[torch.Tensor]:
            found = []
            for start, block in blocks:
                r2 = None if col_radius2 is None else col_radius2[start : start + block.n]
                b_reach = self._reach(block, r2)
                for j0 in range(0, block.n, self.columns):
                    cs = slice(j0, min(j0 + self.columns, block.n))
                    b = eng.scratch.get("screen cols", (cs.stop - cs.start, self.m), torch.float32, eng.device)
                    b.copy_(block.values[cs])
                    for i0 in range(0, rows.n, tr):
                        rs = slice(i0, min(i0 + tr, rows.n))
                        shape = (rs.stop - rs.start, b.shape[0])
                        a = eng.scratch.get("screen rows", (shape[0], self.m), torch.float32, eng.device)
                        a.copy_(rows.values[rs])
                        d = eng.sqdist(a, rows.sq[rs], b, block.sq[cs])  # the bound is c_m at the engine's precision
                        t = eng.scratch.get("screen reach", shape, torch.float32, eng.device)
                        torch.add(a_reach[rs, None], b_reach[None, cs], out=t).square_()
                        mask = eng.scratch.get("screen mask", shape, torch.bool, eng.device)
                        ii, jj = torch.le(d, t, out=mask).nonzero(as_tuple=True)
                        if ii.numel():
                            found.append(torch.stack([ii + i0, jj + (start + j0)], 1))
            return found

        found = eng.run_pass(scan)
        pairs = torch.cat(found) if found else torch.empty((0, 2), dtype=torch.int64, device=eng.device)
        if cols is None:
            gathered = eng.world.gather_pairs(pairs)
            assert gathered is not None
            pairs = gathered.to(eng.device)
        self.pairs_screened += rows.n * n_cols
        self.pairs_passed += int(pairs.shape[0])
        return pairs[:, 0], pairs[:, 1]

    # ------------------------------------------------------------------ uses
    def kth2(self, owners: torch.Tensor, upper2: torch.Tensor, k: int) -> torch.Tensor:
        """Float64 squared k-NN radius of the reference points ``owners`` (others by index; copies count)
        from the points within their upper bounds ``upper2``; NaN where fewer than k points passed (a bound
        that was not one)."""
        eng = self.engine
        ii, jj = self.survivors(self.project(self.ref, owners), row_radius2=upper2)
        keep = jj != owners[ii]
        ii, jj = ii[keep], jj[keep]
        out = torch.full((owners.numel(),), math.nan, dtype=torch.float64, device=eng.device)
        if ii.numel() == 0:
            return out
        d2 = eng.exact_sqdist_pairs(self.ref, owners[ii], self.ref, jj)
        o = d2.argsort(stable=True)
        ii, d2 = ii[o], d2[o]
        o = ii.argsort(stable=True)  # by owner, ascending distance within
        ii, d2 = ii[o], d2[o]
        counts = torch.bincount(ii, minlength=owners.numel())
        start = torch.cumsum(counts, 0) - counts
        ok = counts >= k
        out[ok] = d2[start[ok] + k - 1]
        return out

    def balls_holding(
        self, queries: Prepared, q_index: torch.Tensor, upper2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(query position, ball owner, float64 d²)`` of every pair with ``d² ≤ upper2[owner]``."""
        rows = self.project(queries, q_index)
        ii, jj = self.survivors(rows, col_radius2=upper2)
        if ii.numel() == 0:
            return ii, jj, torch.empty(0, dtype=torch.float64, device=self.engine.device)
        d2 = self.engine.exact_sqdist_pairs(queries, q_index[ii], self.ref, jj)
        inside = d2 <= upper2[jj]
        return ii[inside], jj[inside], d2[inside]

    @property
    def share(self) -> float:
        """Share of the screened pairs that passed to a float64 distance so far."""
        return self.pairs_passed / max(1, self.pairs_screened)


@dataclasses.dataclass(frozen=True)
class ScreenReport:
    """What :func:`build_screen` decided: directions, the pilot's pass share, and whether the screen is used."""

    dims: int
    pilot_share: float
    used: bool


def build_screen(
    engine: TileEngine, ref: Prepared, upper2: torch.Tensor, mode: object, seed: int
) -> tuple[Optional[Screen], Optional[ScreenReport]]:
    """The screen of ``ref``'s balls (upper bounds ``upper2``), or None.

    ``mode``: ``"auto"`` (a pilot decides: the share of pilot pairs that pass must be at most
    :data:`PASS_SHARE`), True (always, where the features have ≥ 128 dimensions) or False.
    """
    if mode is False:
        return None, None
    m = screen_dims(engine.dim)
    if m == 0 or ref.n < 2:
        return None, None
    basis = fit_basis(engine, ref, m, seed)
    pilot = Screen(engine, ref, basis, project_ref=False)
    pick = np.sort(np.random.default_rng([seed, 8]).choice(ref.n, min(ref.n, PILOT_ROWS), replace=False))
    idx = torch.from_numpy(pick).to(engine.device)
    sample = pilot.project(ref, idx)
    few = idx[: min(PILOT_OWNERS, idx.numel())]
    pilot.survivors(sample.part(0, few.numel()), row_radius2=upper2[few], cols=sample)
    share = float(engine.world.max_(torch.tensor([pilot.share], dtype=torch.float64, device=engine.device)))
    used = mode is True or share <= PASS_SHARE  # the same decision on every rank
    report = ScreenReport(m, share, used)
    if not used:
        return None, report
    pilot.project_ref()
    pilot.pairs_screened = pilot.pairs_passed = 0
    return pilot, report
