"""Memory-budgeted tiled distance engine with streaming reductions.

Squared distances of one tile come from a single GEMM via the norm expansion
``‖a‖² − 2a·b + ‖b‖²`` (fp32, on the centred data) and the tile is reduced
before the next one is made: a running top-K merge for nearest neighbours, and
running lower/upper ball tests for membership. No n×m array is ever built.

Exactness. Every fp32 squared distance ``D`` is within ``δ = c·(‖a‖ + ‖b‖)²`` of
the float64 value of ``Σ (a_i − b_i)²`` (see :func:`rounding_factor`). A ball
test against a squared radius ``r²`` is therefore *certain* when
``D < r² − δ`` (inside) or ``D > r² + δ`` (outside); everything in between is
*ambiguous* and is re-decided in float64 from direct differences of the
original values (:meth:`TileEngine.collect_pairs`). Decisions hence equal a
float64 brute force, ties and duplicates included, at the cost of a few extra
rows for the rare borderline cases.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterator, Optional

import torch

from .budget import SCAN_ROWS, TileBudget, budget_for_tile
from .distributed import World
from .reductions import BallTest, merge_topk
from .rounding import rounding_factor
from .scratch import Scratch
from .sets import FeatureSet, FeatureSubset, Prepared
from .transfer import fits_on_device, prefetched, stored_bytes

__all__ = ["budget_for_tile", "sqdist_block", "TileEngine"]

# Rows the shared centre is taken from at most (see TileEngine.center_of).
CENTRE_ROWS = 1 << 18


def sqdist_block(
    a: torch.Tensor,
    a_sq: torch.Tensor,
    b: torch.Tensor,
    b_sq: torch.Tensor,
    precision: str = "fp32",
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``‖a‖² − 2a·b + ‖b‖²`` for two row blocks with their squared norms: one GEMM, clamped at 0
    (written into ``out``, an fp32 ``len(a) × len(b)`` tensor, when given).

    ``precision="bf16"`` runs the GEMM on bf16 copies of the blocks, accumulated and
    returned in fp32 where the device has such a kernel (CUDA; the CPU's bf16 GEMM
    returns bf16, a rounding the bound also covers); TF32 is a CUDA matmul mode
    (set by the caller, see :func:`~eprmetrics.engine.matmul_precision`).
    """
    if precision == "bf16":
        a16, b16 = a.bfloat16(), b.bfloat16()
        ab = a16 @ b16.T if a.device.type == "cpu" else torch.mm(a16, b16.T, out_dtype=torch.float32)
        d = (ab.float() if out is None else out.copy_(ab)).mul_(-2.0).add_(b_sq[None, :])
    else:
        d = torch.addmm(b_sq[None, :], a, b.T, beta=1.0, alpha=-2.0, out=out)
    d += a_sq[:, None]
    return d.clamp_min_(0.0)


class TileEngine(TileBudget):
    """Tiled squared-distance passes on one device within a memory budget.

    Args:
        dim: feature dimension.
        device: resolved torch device.
        memory_budget: workspace bytes for one tile (features not included).
        error_bound: ``"probabilistic"`` or ``"worst-case"`` rounding bound (see :func:`rounding_factor`).
        world: the ranks sharing every pass (default: the world of the call in progress,
            :meth:`World.current`; a single process unless the call asked to be distributed). With several
            ranks, constructing the engine is collective: every rank takes the smallest ``memory_budget``.
        precision: GEMM precision, ``"fp32"``, ``"tf32"`` (CUDA only; fp32 elsewhere) or ``"bf16"``;
            the rounding bound widens accordingly, so decisions stay exact.
        auto_budget: ``memory_budget`` is the device's default (not the caller's): on CUDA each pass
            re-sizes its tiles from the memory free when it starts (:meth:`refresh_budget`).

    Every pass runs through :meth:`run_pass`: a CUDA out-of-memory error re-runs that pass alone
    with smaller tiles. On CUDA, sets that fit are uploaded once (:meth:`resident`); column blocks of
    sets that stay in host memory are read one ahead of the tile that uses them (``prefetch``).
    """

    def __init__(
        self,
        dim: int,
        device: torch.device,
        memory_budget: int,
        error_bound: str = "probabilistic",
        world: Optional[World] = None,
        precision: str = "fp32",
        auto_budget: bool = False,
    ) -> None:
        self.dim = dim
        self.auto_budget = auto_budget  # memory_budget was not given: re-read free CUDA memory per pass
        self.device = device
        # TF32 is an NVIDIA tensor-core mode: on other devices the GEMMs stay fp32, and so does the bound.
        self.precision = "fp32" if precision == "tf32" and device.type != "cuda" else precision
        self.c = rounding_factor(dim, error_bound, self.precision)
        self.error_bound = error_bound
        self.world = World.current() if world is None else world  # ranks sharing every pass
        # Read a host set's next column block in a background thread while a tile is computed: on CUDA,
        # where the tile runs on the device meanwhile (on a CPU the thread would take a core from the GEMM).
        self.prefetch = device.type == "cuda"
        self.scratch = Scratch()
        self.agree_budget(memory_budget)

    def at_precision(self, precision: str) -> "TileEngine":
        """This engine with its GEMMs at ``precision``: the same device, budget, workspace and ranks, the
        rounding bound widened to match (decisions stay exact; more of them go to the float64 re-check)."""
        precision = "fp32" if precision == "tf32" and self.device.type != "cuda" else precision
        if precision == self.precision:
            return self
        view = copy.copy(self)
        view.precision = precision
        view.c = rounding_factor(self.dim, self.error_bound, precision)
        return view

    def sqdist(self, a: torch.Tensor, a_sq: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
        """One tile of squared distances at the engine's GEMM precision, in the pass's tile buffer: valid
        until the next tile is made."""
        out = self.scratch.get("tile", (a.shape[0], b.shape[0]), torch.float32, self.device)
        return sqdist_block(a, a_sq, b, b_sq, self.precision, out=out)

    # ------------------------------------------------------------------ inputs
    def resident(self, sets: dict[str, FeatureSet]) -> dict[str, FeatureSet]:
        """``sets`` uploaded to the device once, when together they fit there (:func:`.transfer.fits_on_device`:
        CUDA only, a fixed ``memory_budget`` set aside); as they are otherwise."""
        away = [fs for fs in sets.values() if not fs.is_on(self.device)]
        reserve = 0 if self.auto_budget else self.memory_budget
        if not away or not fits_on_device(sum(stored_bytes(fs.data) for fs in away), self.device, reserve):
            return sets
        return {name: fs.on_device(self.device) for name, fs in sets.items()}

    def _ahead(self, p: Prepared) -> bool:
        """Prefetch ``p``'s column blocks? (CUDA, and the rows are not on the device already.)"""
        return self.prefetch and not p.source.is_on(self.device)

    def _column_blocks(self, p: Prepared, starts: list[int], tile: int) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, rows)`` of the column blocks of ``p`` starting at ``starts`` (``tile`` rows each), in the
        pass's column buffer (two, taken in turn, when the next block is read ahead)."""
        ahead = self._ahead(p)

        def fetch(i: int) -> tuple[int, torch.Tensor]:
            j0 = starts[i]
            return j0, self.rows(p, j0, min(j0 + tile, p.n), into=f"cols{i % 2 if ahead else 0}")

        return (block for _, block in prefetched(fetch, list(range(len(starts))), ahead, self.device))

    def center_of(self, fs: FeatureSet) -> torch.Tensor:
        """Float64 mean of ``fs`` (computed in blocks); above :data:`CENTRE_ROWS` rows, the mean of that
        many rows in evenly spaced blocks. The centre only conditions the fp32 arithmetic (every bound
        uses the norms about it, whatever it is), so a large set need not be read once more for it."""
        total = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        dtype = torch.float64 if fs.is_float64 else torch.float32
        step = self.scan_rows
        starts = range(0, fs.n, step)
        if fs.n > CENTRE_ROWS:
            blocks = CENTRE_ROWS // step
            starts = range(0, (fs.n // step) * step, ((fs.n // step) // blocks) * step)[:blocks]

        def scan() -> torch.Tensor:
            rows = 0
            for start in starts:
                block = self._wide(fs.block(start, start + step, self.device, dtype))
                total.add_(block.sum(0))
                rows += block.shape[0]
            return total / rows

        return self.run_pass(scan, restart=total.zero_)

    def _wide(self, block: torch.Tensor) -> torch.Tensor:
        """``block`` as float64 in the pass's buffer (equal to reducing with ``dtype=torch.float64``, whose
        own float64 copy of every block would be a fresh temporary)."""
        if block.dtype == torch.float64:
            return block
        return self.scratch.get("wide", tuple(block.shape), torch.float64, self.device).copy_(block)

    def prepare(self, fs: FeatureSet, center64: torch.Tensor) -> Prepared:
        # Centre float64 inputs in float64 so that the only rounding is the final cast.
        dtype = torch.float64 if fs.is_float64 else torch.float32
        center = center64.to(dtype)
        # Written into one preallocated tensor: small per-block results kept in a list between the large
        # block temporaries pin glibc's heap (measured: +16 MiB of resident memory per 1024 × 4096 block).
        norm = torch.empty(fs.n, dtype=torch.float64, device=self.device)
        p = Prepared(fs, center, norm, norm)

        def scan() -> None:
            for start in range(0, fs.n, self.scan_rows):
                rows = self.rows(p, start, min(start + self.scan_rows, fs.n), into="rows")
                norm[start : start + rows.shape[0]] = torch.linalg.vector_norm(self._wide(rows), dim=1)

        self.run_pass(scan)
        return Prepared(fs, center, norm.pow(2).float(), norm)

    def subset(self, p: Prepared, index: torch.Tensor) -> Prepared:
        """The rows ``index`` of ``p`` as a prepared set of their own (no copy of the features)."""
        return Prepared(FeatureSubset(p.source, index), p.center, p.sqnorm[index], p.norm[index])

    def rows(self, p: Prepared, start: int, stop: int, into: Optional[str] = None) -> torch.Tensor:
        """Rows ``start:stop`` of ``p``, centred, fp32 (rounded once); in the pass's buffer ``into`` when given
        (valid until that buffer is asked for again)."""
        block = p.source.block(start, stop, self.device, p.center.dtype)
        if into is None:
            return (block - p.center).float()
        out = self.scratch.get(into, (block.shape[0], block.shape[1]), torch.float32, self.device)
        return torch.sub(block, p.center, out=out)  # computed in the block's dtype, rounded to fp32 on store

    def rows_at(self, p: Prepared, index: torch.Tensor) -> torch.Tensor:
        return (p.source.take(index, self.device, p.center.dtype) - p.center).float()

    # ------------------------------------------------------------- distances
    def bound(self, norm: torch.Tensor, other_max_norm: float) -> torch.Tensor:
        """Per-point float64 error bound δ against any point of the other set."""
        return self.c * (norm + other_max_norm) ** 2

    def exact_sqdist_pairs(self, a: Prepared, ia: torch.Tensor, b: Prepared, ib: torch.Tensor) -> torch.Tensor:
        """Float64 ``Σ (a − b)²`` from direct differences of the original values."""
        return self.run_pass(lambda: self._exact_sqdist_pairs(a, ia, b, ib))

    def _exact_sqdist_pairs(self, a: Prepared, ia: torch.Tensor, b: Prepared, ib: torch.Tensor) -> torch.Tensor:
        out = torch.empty(ia.numel(), dtype=torch.float64, device=self.device)
        chunk = max(min(self.memory_budget // (6 * 8 * self.dim), SCAN_ROWS), 1)
        for s in range(0, ia.numel(), chunk):
            rows_a = a.source.take(ia[s : s + chunk], self.device, scratch=self.scratch, name="pairs a")
            rows_b = b.source.take(ib[s : s + chunk], self.device, scratch=self.scratch, name="pairs b")
            out[s : s + chunk] = rows_a.sub_(rows_b).pow_(2).sum(1)
        return out

    # ---------------------------------------------------------------- passes
    def self_topk(
        self, p: Prepared, K: int, progress: Optional[Callable[[int], None]] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``K`` smallest fp32 squared distances to *other* points, per point.

        Uses symmetry: only tiles on and above the diagonal are computed, each
        reduced along its rows and along its columns.
        """
        return self.run_pass(lambda: self._self_topk(p, K, progress))

    def _self_topk(
        self, p: Prepared, K: int, progress: Optional[Callable[[int], None]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, t = p.n, self.self_tile(p.n)
        vals = torch.full((n, K), math.inf, dtype=torch.float32, device=self.device)
        idx = torch.full((n, K), -1, dtype=torch.int64, device=self.device)

        tile_no = -1
        for i0 in range(0, n, t):
            rs = slice(i0, min(i0 + t, n))
            mine = []  # this rank's tiles of the row block: (i0, j0) for j0 ≥ i0, numbered in order
            for j0 in range(i0, n, t):
                tile_no += 1
                if self.world.mine(tile_no):
                    mine.append(j0)
            a = self.rows(p, rs.start, rs.stop, into="rows") if mine else None
            others = self._column_blocks(p, [j0 for j0 in mine if j0 != i0], t)
            for j0 in mine:
                assert a is not None
                cs = slice(j0, min(j0 + t, n))
                b = a if j0 == i0 else next(others)[1]
                d = self.sqdist(a, p.sqnorm[rs], b, p.sqnorm[cs])
                if j0 == i0:
                    d.fill_diagonal_(math.inf)
                merge_topk(vals, idx, rs, d, j0, K)
                if j0 != i0:
                    merge_topk(vals, idx, cs, d.T, i0, K)
                del d
            if progress:
                progress(rs.stop - rs.start)
        return self.world.merge_topk(vals, idx)

    def rect_topk(
        self,
        rows: Prepared,
        cols: Prepared,
        K: int,
        exclude: Optional[torch.Tensor] = None,
        progress: Optional[Callable[[int], None]] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``K`` smallest fp32 squared distances from each row to the columns.

        ``exclude[i]`` is a column index row ``i`` must skip (itself, when the
        rows are a subset of the columns' set).
        """
        return self.run_pass(lambda: self._rect_topk(rows, cols, K, exclude, progress))

    def _rect_topk(
        self,
        rows: Prepared,
        cols: Prepared,
        K: int,
        exclude: Optional[torch.Tensor],
        progress: Optional[Callable[[int], None]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = rows.n
        vals = torch.full((n, K), math.inf, dtype=torch.float32, device=self.device)
        idx = torch.full((n, K), -1, dtype=torch.int64, device=self.device)
        for d, rs, cs in self._rect_tiles(rows, cols, progress):
            if exclude is not None:
                ex = exclude[rs] - cs.start
                hit = ((ex >= 0) & (ex < d.shape[1])).nonzero().squeeze(1)
                d[hit, ex[hit]] = math.inf
            merge_topk(vals, idx, rs, d, cs.start, K)
        return self.world.merge_topk(vals, idx)

    def _rect_tiles(
        self, rows: Prepared, cols: Prepared, progress: Optional[Callable[[int], None]]
    ) -> Iterator[tuple[torch.Tensor, slice, slice]]:
        """Every row×column tile of this rank's row blocks, as ``(distances, row slice, column slice)``."""
        tr, tc = self.rect_blocks(rows.n, cols.n)
        for i0 in range(0, rows.n, tr):
            rs = slice(i0, min(i0 + tr, rows.n))
            if not self.world.mine(i0 // tr):
                continue
            a = self.rows(rows, rs.start, rs.stop, into="rows")
            for j0, b in self._column_blocks(cols, list(range(0, cols.n, tc)), tc):
                cs = slice(j0, min(j0 + tc, cols.n))
                yield self.sqdist(a, rows.sqnorm[rs], b, cols.sqnorm[cs]), rs, cs
            if progress:
                progress(rs.stop - rs.start)

    def ball_pass(
        self,
        rows: Prepared,
        cols: Prepared,
        tests: list[BallTest],
        extra: Optional[Callable[[torch.Tensor, slice, slice], None]] = None,
        progress: Optional[Callable[[int], None]] = None,
        restart: Optional[Callable[[], object]] = None,
    ) -> None:
        """One pass over all row×column tiles, feeding every tile to every test, then to ``extra`` (which may
        overwrite the tile: it is the last to see it).

        With several ranks each takes its share of row blocks and the tests are
        combined at the end (``extra``'s own state is the caller's to combine, and
        ``restart()`` resets it when the pass is run again, see :meth:`run_pass`).
        """

        def attempt() -> None:
            for d, rs, cs in self._rect_tiles(rows, cols, progress):
                masks = tuple(self.scratch.get(f"mask{i}", tuple(d.shape), torch.bool, self.device) for i in (0, 1))
                for test in tests:
                    test.update(d, rs, cs, masks)
                if extra is not None:
                    extra(d, rs, cs)

        def again() -> None:
            for test in tests:
                test.reset()
            if restart is not None:
                restart()

        self.run_pass(attempt, again)
        for test in tests:
            test.combine(self.world)

    def collect_pairs(
        self,
        queries: Prepared,
        q_index: torch.Tensor,
        refs: Prepared,
        select: Callable[[torch.Tensor, torch.Tensor, slice], torch.Tensor],
        restart: Optional[Callable[[], object]] = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(query position, ref index, exact float64 d²)`` of the selected pairs, per tile.

        ``select(dist, q_pos, ref_slice)`` gets an fp32 tile for the queries at
        positions ``q_pos`` of ``q_index`` against ``refs[ref_slice]`` (its last reader: it may
        overwrite it) and returns a boolean mask of the pairs to re-decide in float64 (``restart()`` resets what
        ``select`` accumulates when the pass is run again, see :meth:`run_pass`).
        """
        return self.run_pass(lambda: list(self._collect_pairs(queries, q_index, refs, select)), restart)

    def _collect_pairs(
        self,
        queries: Prepared,
        q_index: torch.Tensor,
        refs: Prepared,
        select: Callable[[torch.Tensor, torch.Tensor, slice], torch.Tensor],
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        t, tc = self.rect_blocks(q_index.numel(), refs.n)
        for s in range(0, q_index.numel(), t):
            q_pos = torch.arange(s, min(s + t, q_index.numel()), device=self.device)
            qi = q_index[q_pos]
            a = self.rows_at(queries, qi)
            for j0, b in self._column_blocks(refs, list(range(0, refs.n, tc)), tc):
                cs = slice(j0, min(j0 + tc, refs.n))
                d = self.sqdist(a, queries.sqnorm[qi], b, refs.sqnorm[cs])
                qq, jj = select(d, q_pos, cs).nonzero(as_tuple=True)
                del d
                if qq.numel():
                    pos, ref = q_pos[qq], jj + j0
                    yield pos, ref, self._exact_sqdist_pairs(queries, q_index[pos], refs, ref)
