"""``ivf-pca``: the inverted lists of ``ivf-gemm`` built and scanned in a space that bounds
distances from below, with the neighbours found measured again in the full space.

Every point ``x`` is embedded as ``z = [Pᵀ(x − μ), ρ]``: its coordinates along ``m``
orthonormal principal directions ``P`` (fitted on a sample of rows) and the norm ``ρ`` of
what is left, ``(x − μ) − P Pᵀ(x − μ)``. For two points

``‖z_a − z_b‖² = ‖Pᵀ(a − b)‖² + (ρ_a − ρ_b)² ≤ ‖a − b‖²``

(the projection never lengthens a vector and two residual norms differ by at most the
distance of the residuals), so the lists are built by a lower bound of the true distance at
``(m + 1) / d`` of the cost. A scan ranks the candidates of a point ``a`` by
``‖Pᵀ(a − b)‖² + ρ_b²`` (the query's own ``ρ`` set to 0): the estimate of ``‖a − b‖²`` when the
two residuals are orthogonal, as independent noise spread over the ``d − m`` directions left is.
The lower bound instead favours candidates whose residual norm is close to the query's, and on
heavy-tailed data with full-rank noise (issue 31) it found the true k-NN of 44% of points against
49% (50k × 4096, ``spectrum="heavy"``). The ``rescore × k`` nearest candidates of each point
in that ranking are then measured in the full space and the ``k`` nearest by true distance are
kept: the distances returned are true ones, and radii taken from them can only be
over-estimated. Cost ≈ ``n · nprobe · √n · (m + 1)`` multiply-adds for the lists (``nlist ≈ √n``
lists of ``√n`` points, a *fixed* ``nprobe``: sub-quadratic) plus ``n · rescore · k`` full-space
pairs; the full rows are read twice, once to embed them and once to rescore, so a float16 memory
map stays on disk and only the ``n × (m + 1)`` embedding is held.

Example:
    >>> import numpy as np
    >>> from eprmetrics import knn_graph
    >>> x = np.random.default_rng(0).normal(size=(2000, 96)).astype("float32")
    >>> dist, idx = knn_graph(x, 3, backend="ivf-pca", options={"dims": 16})
    >>> exact, _ = knn_graph(x, 3, backend="exact")
    >>> bool((dist >= exact - 1e-4).all())   # true distances of points found: never below the exact ones
    True
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional

import numpy as np
import torch

from ...engine import World, read_rows
from ...engine.basis import principal_basis
from ...profiling import note_read
from ...validation import check_int, fail
from .base import register_backend
from .ivf_gemm import IVFGemm, as_rows, combine_rows

__all__ = ["IVFPCA"]

_RESCORE_ROWS = 1024  # points whose candidates are measured in the full space together
# Candidates measured per owner when the sampled decisions refine a ball's upper bound: 128 gathered rows cost
# ~0.5 ms per owner on a 2-core CPU at d = 4096, against ~30 ms for the true-radius row the refinement may save at
# 1.5M rows (bf16 GEMM); on the heavy family 128 found the true k-NN of 83% of owners, 32 of 57% (50k rows).
REFINE_WIDE = 128
# The second refinement of an owner still a candidate after the first: its list's REFINE_PROBES × nprobe nearest
# lists (level 1: nprobe of them), and REFINE_DEEP measured rows (level 1: REFINE_WIDE).
REFINE_PROBES = 4
REFINE_DEEP = 256
_MEASURE_ELEMENTS = 1 << 24  # candidate values gathered at once (float16 + fp32 buffers: 96 MiB)


def _rows(x: np.ndarray, index: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows ``index`` (sorted) of ``x`` as fp32 on ``device`` (fancy indexing copies, even from a memmap)."""
    note_read(x, len(index) * x.shape[1] * x.itemsize)
    return as_rows(x[index], device)


def _host_view(x: np.ndarray) -> torch.Tensor:
    """``x`` as a CPU tensor without a copy (a memmap stays a memmap; rows are only ever read from it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a read-only memmap: torch warns that it is not writable
        return torch.from_numpy(np.asarray(x))


def _measured(q: torch.Tensor, ref: np.ndarray, cand: np.ndarray) -> torch.Tensor:
    """fp32 distances ``fl(√Σ fl(a_i − b_i)²)`` (direct differences, :func:`measured_upper2`'s form) of each
    row of ``q`` to its candidate rows of ``ref`` (``-1``: none, ``inf``).

    The candidates of a block of queries are gathered from ``ref`` in its stored dtype (a float16 memmap: 2
    bytes a value) into two reused buffers, widened to fp32, and measured by one batched ``cdist`` without
    the norm expansion. That reads each gathered value once; the column-by-column differences it replaces
    wrote and re-read four fp32 copies, and were most of a d = 4096 graph.
    """
    b, w = cand.shape
    d = q.shape[1]
    found = cand >= 0
    out = torch.full((b, w), math.inf, dtype=torch.float32, device=q.device)
    if w == 0 or not found.any():
        return out
    host = _host_view(ref)
    flat = torch.from_numpy(np.where(found, cand, 0).astype(np.int64, copy=False))
    step = max(1, min(b, _MEASURE_ELEMENTS // (w * d)))
    stored = torch.empty((step * w, d), dtype=host.dtype)
    same = host.dtype == torch.float32 and q.device.type == "cpu"
    wide = stored if same else torch.empty((step * w, d), dtype=torch.float32, device=q.device)
    for s in range(0, b, step):
        m = min(step, b - s)
        note_read(ref, m * w * d * ref.itemsize)  # gathered rows, padding included (a memmap: page faults)
        rows = torch.index_select(host, 0, flat[s : s + m].reshape(-1), out=stored[: m * w])
        # to the device in the stored dtype, widened there (exact: float16 values are fp32 values)
        block = rows if same else wide[: m * w].copy_(rows.to(q.device))
        out[s : s + m] = torch.cdist(
            q[s : s + m, None, :], block.view(m, w, d), compute_mode="donot_use_mm_for_euclid_dist"
        )[:, 0, :]
    out[~torch.from_numpy(found).to(q.device)] = math.inf
    return out


@register_backend
class IVFPCA(IVFGemm):
    """ivf-gemm on a ``dims + 1``-dimensional lower-bound embedding (principal directions + residual
    norm), nlist ≈ √n, a fixed nprobe (8), the best ``rescore × k`` candidates re-measured exactly."""

    name = "ivf-pca"
    measures_distances = True
    _wide: Optional[np.ndarray] = None  # each list's nearest lists for the second refinement (built on first use)
    defaults = {
        "dims": None,
        "nlist": None,
        "nprobe": None,
        "query_nprobe": None,
        "kmeans_iters": 12,
        "train_per_list": 64,
        "rescore": 3,
        "pca_rows": 16384,
    }

    def _derived(self, p: dict[str, Any], n: int, dim: int) -> dict[str, Any]:
        if p["dims"] is None:
            p["dims"] = min(dim, 64)
        check_int(p["dims"], f"backend {self.name!r}: dims", fix=f"between 1 and d = {dim}")
        if p["dims"] > dim:
            raise fail(f"backend {self.name!r}: dims", f"an int between 1 and d = {dim}", p["dims"])
        for key in ("rescore", "pca_rows"):
            check_int(p[key], f"backend {self.name!r}: {key}")
        if p["nlist"] is None:
            p["nlist"] = max(1, min(math.isqrt(n), n // 64))
        if p["nprobe"] is None:
            p["nprobe"] = min(p["nlist"], 8)
        return p

    # ------------------------------------------------------------------ embedding
    def _fit_basis(self, x: np.ndarray, seed: int, device: torch.device) -> None:
        """Centre and ``dims`` orthonormal principal directions from a sample of rows (randomised range finder)."""
        n, d = x.shape
        m = self.used_params["dims"]
        gen = np.random.default_rng([seed, 1])
        sample = _rows(x, np.sort(gen.choice(n, min(n, self.used_params["pca_rows"]), replace=False)), device)
        self.mean = sample.mean(0)
        if m >= d:
            self.basis: Optional[torch.Tensor] = None  # nothing to leave out: the full space, ρ = 0
            return
        a = sample.sub_(self.mean)  # centred in place: the sample is the fit's one large temporary
        self.basis = principal_basis(a, m, seed).float()  # d × m, orthonormal columns

    def _embed(self, rows: torch.Tensor) -> torch.Tensor:
        """``[Pᵀ(x − μ), ρ]`` of fp32 rows."""
        c = rows - self.mean
        if self.basis is None:
            return torch.cat([c, torch.zeros(c.shape[0], 1, device=c.device)], 1)
        y = c @ self.basis
        # ‖c‖² by a norm (no squared copy of the block: the embedding's one large temporary is ``c``)
        rho = (torch.linalg.vector_norm(c, dim=1).pow_(2) - y.pow(2).sum(1)).clamp_min_(0).sqrt_()
        return torch.cat([y, rho[:, None]], 1)

    def _queries(self, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        return self._embed(as_rows(rows, device))

    # ------------------------------------------------------------------ contract
    def build(self, x: np.ndarray, *, seed: int, device: torch.device) -> None:
        self.source = x  # kept to rescore (a memmap stays a memmap)
        self._wide = None  # of a previous build's lists
        self._fit_basis(x, seed, device)
        self._index(self._transformed(x, device), seed)

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """The ``k`` nearest by true distance among each point's ``rescore · k`` nearest in the embedding."""
        n = x.shape[0]
        wide = min(n, self.used_params["rescore"] * k)
        _, cand, _ = super().search(x, wide)
        return self._rescore(x, x, cand, k)

    def _rescore(self, x: np.ndarray, ref: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """True distances (fp32, direct differences: :func:`_measured`) of every row of ``x`` to its candidate
        rows of ``ref``; the k nearest (not squared)."""
        dev = self.Xp.device
        n = x.shape[0]
        vals = np.full((n, k), np.inf, dtype=np.float32)
        idx = np.full((n, k), -1, dtype=np.int64)
        world = World.current()  # chunks of points are shared out across ranks, then combined
        for s in range(0, n, _RESCORE_ROWS):
            if not world.mine(s // _RESCORE_ROWS):
                continue
            c = cand[s : s + _RESCORE_ROWS]
            q = as_rows(read_rows(x, s, s + _RESCORE_ROWS), dev)
            dist = _measured(q, ref, c)
            kk = min(k, c.shape[1])
            v, j = torch.topk(dist, kk, dim=1, largest=False)
            vals[s : s + _RESCORE_ROWS, :kk] = v.cpu().numpy()
            idx[s : s + _RESCORE_ROWS, :kk] = np.take_along_axis(c, j.cpu().numpy(), 1)
        idx[~np.isfinite(vals)] = -1
        v_t, i_t = torch.from_numpy(vals), torch.from_numpy(idx)
        combine_rows(world, v_t, i_t)
        return v_t.numpy(), i_t.numpy(), False

    def _scan(
        self,
        c: int,
        q: torch.Tensor,
        q_sq: torch.Tensor,
        k: int,
        nprobe: Optional[int] = None,
        own: bool = False,
        probes: Optional[np.ndarray] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`IVFGemm._scan` ranking by ``‖Pᵀ(a − b)‖² + ρ_b²`` (the query's ``ρ`` set to 0: see the module)
        where the scan looks for an indexed point's ``own`` k-NN (the graph, :meth:`refine`); foreign queries
        keep the lower bound (:meth:`search_queries`)."""
        if self.basis is not None and own:
            q = q.clone()
            q[:, -1] = 0.0
            q_sq = q.pow(2).sum(1)
        return super()._scan(c, q, q_sq, k, nprobe, own, probes)

    def refine(self, ids: np.ndarray, k: int, level: int = 1) -> np.ndarray:
        """For indexed points ``ids`` (original indices): the fp32 distances (len × k, ascending) of the
        k nearest by true distance among their nearest in the embedding (self excluded) — upper bounds of
        their radii tighter than the graph's. ``level`` 1: the ``REFINE_WIDE`` nearest in the probe set of
        their list; 2: the ``REFINE_DEEP`` nearest in their list's ``REFINE_PROBES × nprobe`` nearest lists."""
        dev = self.Xp.device
        pos = self.position[torch.from_numpy(ids).to(dev)]
        wide = REFINE_WIDE if level == 1 else REFINE_DEEP
        wide = min(wide + 1, self.Xp.shape[0])
        cand = torch.full((ids.size, wide), -1, dtype=torch.int64, device=dev)
        probes = None if level == 1 else self._wide_probes()
        lists = torch.searchsorted(self.offsets, pos, right=True) - 1
        for c in lists.unique().tolist():
            sel = (lists == c).nonzero().squeeze(1)
            q, q_sq = self.Xp[pos[sel]].float(), self.xp_sq[pos[sel]]
            _, found = self._scan(c, q, q_sq, wide, own=True, probes=probes)
            cand[sel, : found.shape[1]] = torch.where(found >= 0, self.order[found.clamp_min(0)], found)
        c_np = cand.cpu().numpy()
        c_np[c_np == ids[:, None]] = -1  # self
        out = np.full((ids.size, k), np.inf, dtype=np.float32)
        step = max(1, _RESCORE_ROWS * REFINE_WIDE // wide)
        for s in range(0, ids.size, step):
            rows = ids[s : s + step]
            order = np.argsort(rows)
            q = _rows(self.source, rows[order], dev)[torch.from_numpy(np.argsort(order)).to(dev)]
            dist = _measured(q, self.source, c_np[s : s + step])
            kk = min(k, dist.shape[1])
            out[s : s + step, :kk] = torch.topk(dist, kk, dim=1, largest=False).values.cpu().numpy()
        return out

    def _wide_probes(self) -> np.ndarray:
        """Each list's ``REFINE_PROBES × nprobe`` nearest lists (computed once)."""
        if self._wide is None:
            m = min(self.centers.shape[0], REFINE_PROBES * self.used_params["nprobe"])
            c_sq = self.centers.pow(2).sum(1)
            self._wide = self._nearest(self.centers, c_sq, self.centers, m).cpu().numpy()
        return self._wide

    def search_queries(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Indexed points near other points: the ``min(k, rescore)`` nearest in the embedding, measured in the
        full space (true distances; the columns beyond are ``-1``). Only the approximate membership uses this
        search, and a few measured neighbours serve it better than many estimated ones. It ranks by the lower
        bound ``‖z_a − z_b‖²``: the balls that hold a query are not its nearest points on heavy-tailed data, and
        the orthogonal-residual ranking of :meth:`_scan` found fewer of them (approximate membership 0.10 and
        0.007 against 0.22 and 0.075 at 20k × 4096, heavy family: weaker strata, larger samples)."""
        _, cand, _ = self._search_rows(self._query_matrix(x), min(k, self.used_params["rescore"]))
        dist, idx, squared = self._rescore(x, self.source, cand, cand.shape[1])
        pad = k - idx.shape[1]
        if pad > 0:
            dist = np.concatenate([dist, np.full((dist.shape[0], pad), np.inf, np.float32)], 1)
            idx = np.concatenate([idx, np.full((idx.shape[0], pad), -1, np.int64)], 1)
        return dist, idx, squared
