"""``ivf-gemm``: an inverted-file k-NN graph whose lists are scanned by GEMM (torch, CPU or CUDA).

faiss's IVF-Flat scans each probed list query by query with SIMD distance
code, far below BLAS speed on a CPU. Building a *graph* (every point is a
query) allows batching instead: points are grouped by k-means list, and each
list is compared, as one GEMM, with all points of the ``nprobe`` lists whose
centres are nearest to its own centre. Cost ≈ ``nprobe / nlist`` of an exact
self pass at full GEMM efficiency; distances of the candidates found are exact
(fp32 norm expansion), so radii can only be over-estimated, never under.
Queries near a list border search their list's probe set, not their own, so
``nprobe`` is set generously (default 10% of the lists: recall@3 0.995 and hub-label
accuracy 0.996 at 20k × 4096 synthetic, 15% gives 1.000 at 1.5× the search time).

On CUDA the scan GEMMs run in bf16 (``scan_precision="auto"``): a graph needs no exactness, as
every radius bound is re-derived in float64 from the points it names. The bf16 distances are
taken about the scanned list's centre (small residuals keep bf16's relative error small) and
only *select* ``2k`` candidates per query, whose fp32 distances are then measured by direct
differences, so the distances returned are as accurate as with fp32 scans. The list loop reads
nothing back from the device (offsets and probe lists live on the host), so a scan never waits
for the one before it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
import torch

from ...engine import World, read_rows, sqdist_block
from ...validation import check_choice, check_int, fail
from .base import ANNBackend, register_backend

__all__ = ["IVFGemm"]

_LOAD_ROWS = 65536  # rows read from the input (a memmap) at a time, at most
# ... and at most this many values: 64 MiB of fp32 per block at any width (a block, and for ivf-pca its
# centred copy, are the largest temporaries of an index build or query search; 256 MiB blocks made the
# sampled path's peak at 20k × 2048), still long sequential reads of a memmap.
_LOAD_ELEMENTS = 1 << 24


def load_rows(dim: int) -> int:
    """Rows of ``dim`` values read and transformed together when an index is built or queries are embedded."""
    return max(1024, min(_LOAD_ROWS, _LOAD_ELEMENTS // max(dim, 1)))


_ONE_HOT_ELEMENTS = 1 << 24  # k-means update: list × point indicator entries per GEMM (64 MiB of fp32)
SCAN_PRECISIONS = ("auto", "fp32", "bf16")
_RESCORE = 2  # reduced-precision scans select this many candidates per neighbour, rescored in fp32


def scan_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The GEMM dtype of the list scans (None: fp32): ``"auto"`` is bf16 on CUDA (tensor cores), fp32
    elsewhere (a CPU's bf16 GEMM is no faster than its fp32 one)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return torch.bfloat16 if precision == "bf16" else None


def as_rows(rows: np.ndarray, device: torch.device, dtype: Optional[torch.dtype] = torch.float32) -> torch.Tensor:
    """A block of rows read from the input as a tensor on ``device``, widened by torch (not numpy);
    ``dtype=None`` keeps float16 as float16."""
    t = torch.from_numpy(np.ascontiguousarray(rows)).to(device)
    return t if dtype is None else t.to(dtype)


def combine_rows(world: World, vals: torch.Tensor, idx: torch.Tensor) -> None:
    """Every rank's rows into every rank's tensors, in place: each row was written by exactly one rank
    (lists are shared out by number), the others left it at ``inf`` / ``-1``, so a min and a max
    reduction give that rank's values. One process: nothing to do."""
    if world:
        world.max_(vals.neg_()).neg_()
        world.max_(idx)


def _index_add_is_deterministic(device: torch.device) -> bool:
    """Is a float ``index_add_`` the same on every run on ``device``? (CPU: a sequential loop; CUDA: atomics.)"""
    return device.type == "cpu"


@register_backend
class IVFGemm(ANNBackend):
    """k-means lists (nlist ≈ √n / 2) scanned pairwise by GEMM; nprobe ≈ 10% of nlist
    (half of that for queries that are not indexed, ``query_nprobe``)."""

    name = "ivf-gemm"
    defaults = {
        "nlist": None,
        "nprobe": None,
        "query_nprobe": None,
        "kmeans_iters": 12,
        "train_per_list": 128,
        "scan_precision": "auto",
    }

    def resolve_params(self, n: int, dim: int) -> dict[str, Any]:
        return self._checked(self._derived(dict(self.params), n, dim), n)

    def _derived(self, p: dict[str, Any], n: int, dim: int) -> dict[str, Any]:
        """Parameters left ``None`` derived from n and d."""
        if p["nlist"] is None:
            p["nlist"] = max(1, min(int(math.sqrt(n) / 2), n // 64))
        if p["nprobe"] is None:
            p["nprobe"] = min(p["nlist"], max(4, math.ceil(0.10 * p["nlist"])))
        return p

    def _checked(self, p: dict[str, Any], n: int) -> dict[str, Any]:
        if p["query_nprobe"] is None:  # foreign queries (approximate membership): a cheaper search
            p["query_nprobe"] = max(1, min(p["nprobe"], math.ceil(p["nprobe"] / 2)))
        check_int(p["nlist"], f"backend {self.name!r}: nlist", fix=f"at most n = {n}")
        if p["nlist"] > n:
            raise fail(f"backend {self.name!r}: nlist", f"at most n = {n} lists", p["nlist"])
        for key in ("nprobe", "query_nprobe"):
            check_int(p[key], f"backend {self.name!r}: {key}", fix=f"between 1 and nlist = {p['nlist']}")
            if p[key] > p["nlist"]:
                raise fail(f"backend {self.name!r}: {key}", f"an int between 1 and nlist = {p['nlist']}", p[key])
        for key in ("kmeans_iters", "train_per_list"):
            check_int(p[key], f"backend {self.name!r}: {key}")
        if "scan_precision" in p:
            check_choice(p["scan_precision"], f"backend {self.name!r}: scan_precision", SCAN_PRECISIONS)
        return p

    accepts_float16 = True
    _scan_dtype: Optional[torch.dtype] = None  # the scans' GEMM dtype (None: fp32), set by build

    def build(self, x: np.ndarray, *, seed: int, device: torch.device) -> None:
        self._scan_dtype = scan_dtype(self.used_params.get("scan_precision", "auto"), device)
        if "scan_precision" in self.used_params:  # report what "auto" resolved to
            self.used_params["scan_precision"] = "fp32" if self._scan_dtype is None else "bf16"
        self._index(self._load(x, device), seed)

    def _load(self, x: np.ndarray, device: torch.device) -> torch.Tensor:
        """The indexed rows as a tensor: float16 input (e.g. a memmap) is read in batches and stored as
        fp16; lists are upcast to fp32 block by block when scanned (fp16 values are exact in fp32)."""
        keep = None if x.dtype == np.float16 else torch.float32
        return self._transformed(x, device, lambda rows, dev: as_rows(rows, dev, keep))

    def _index(self, X: torch.Tensor, seed: int) -> None:
        """k-means lists over the rows of ``X``, the rows sorted by list, and each list's probe lists."""
        p, device = self.used_params, X.device
        n, nlist = X.shape[0], p["nlist"]
        gen = np.random.default_rng(seed)
        sample = X[
            torch.from_numpy(np.sort(gen.choice(n, min(n, nlist * p["train_per_list"]), replace=False))).to(device)
        ]
        sample = sample.float()
        centers = sample[torch.from_numpy(gen.choice(sample.shape[0], nlist, replace=False)).to(device)].clone()
        s_sq = sample.pow(2).sum(1)
        for _ in range(p["kmeans_iters"]):
            self._move_centers(centers, sample, self._nearest(sample, s_sq, centers, 1)[:, 0])
        x_sq = torch.empty(n, device=device)
        step = load_rows(X.shape[1])
        for s in range(0, n, step):
            x_sq[s : s + step] = X[s : s + step].float().pow(2).sum(1)
        assign = self._nearest(X, x_sq, centers, 1)[:, 0]
        order = torch.argsort(assign, stable=True)
        self.order = order  # position in the permuted data → original index
        self.position = torch.empty_like(order)  # original index → position in the permuted data
        self.position[order] = torch.arange(n, device=device)
        self.Xp, self.xp_sq = X[order], x_sq[order]
        self.offsets = torch.zeros(nlist + 1, dtype=torch.int64, device=device)
        self.offsets[1:] = torch.cumsum(torch.bincount(assign, minlength=nlist), 0)
        c_sq = centers.pow(2).sum(1)
        self.centers = centers
        self.probes = self._nearest(centers, c_sq, centers, p["nprobe"])  # lists probed for each list
        # The loops over lists slice by these: read back once here, never inside a loop.
        self._offsets = self.offsets.cpu().numpy()
        self._probe_lists = self.probes.cpu().numpy()
        self._positions = torch.arange(n, device=device)
        self._balance(n, nlist)

    def _balance(self, n: int, nlist: int) -> None:
        """How unequal the lists came out, in the used parameters (reported on ``Result.plan.params``): the
        largest list over the mean, and the (point, candidate) pairs the self-search scans over what equal
        lists would scan (``n · nprobe · n / nlist``): the search's cost grows with this ratio."""
        sizes = np.diff(self._offsets).astype(np.float64)
        scanned = float((sizes * sizes[self._probe_lists].sum(1)).sum())
        balanced = n * self._probe_lists.shape[1] * n / max(1, nlist)
        self.used_params["list_max_over_mean"] = round(float(sizes.max() / max(sizes.mean(), 1e-12)), 2)
        self.used_params["scan_over_balanced"] = round(scanned / max(balanced, 1.0), 3)

    @staticmethod
    def _move_centers(centers: torch.Tensor, sample: torch.Tensor, assign: torch.Tensor) -> None:
        """One k-means update: each non-empty list's centre becomes the mean of its points.

        A float ``index_add_`` adds atomically, in any order, on CUDA: the lists, hence the
        graph, would change from run to run although the backend declares itself
        ``deterministic``. Off the CPU the sums are therefore one-hot GEMMs (lists × points
        @ points × d, chunk by chunk, added up in float64): the same on every run, equal to
        the sequential sums up to rounding (TF32 rounding with ``precision="tf32"``, as for the
        assignment), at the cost of the iteration's assignment GEMM. The CPU keeps its
        sequential ``index_add_``: deterministic there, and half the k-means time.
        """
        nlist, dev = centers.shape[0], sample.device
        if _index_add_is_deterministic(dev):
            sums = torch.zeros_like(centers).index_add_(0, assign, sample)
        else:
            lists = torch.arange(nlist, device=dev)[:, None]
            sums = torch.zeros(centers.shape, dtype=torch.float64, device=dev)
            step = max(1, _ONE_HOT_ELEMENTS // nlist)
            for s in range(0, sample.shape[0], step):
                one_hot = (assign[None, s : s + step] == lists).to(sample.dtype)
                sums += (one_hot @ sample[s : s + step]).double()
        counts = torch.bincount(assign, minlength=nlist).to(sums.dtype)
        filled = counts > 0
        centers[filled] = (sums[filled] / counts[filled, None]).to(centers.dtype)

    @staticmethod
    def _nearest(a: torch.Tensor, a_sq: torch.Tensor, centers: torch.Tensor, m: int, chunk: int = 8192) -> torch.Tensor:
        c_sq = centers.pow(2).sum(1)
        out = torch.empty((a.shape[0], m), dtype=torch.int64, device=a.device)  # filled in place (see _query_matrix)
        for s in range(0, a.shape[0], chunk):
            d = sqdist_block(a[s : s + chunk].float(), a_sq[s : s + chunk], centers, c_sq)
            out[s : s + chunk] = torch.topk(d, m, dim=1, largest=False).indices
        return out

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        if x.shape[0] != self.Xp.shape[0]:
            raise ValueError("ivf-gemm builds k-NN graphs: search must be called with the indexed points")
        Xp, xp_sq, off = self.Xp, self.xp_sq, self.offsets
        n, dev = Xp.shape[0], Xp.device
        vals = torch.full((n, k), math.inf, dtype=torch.float32, device=dev)
        idx = torch.full((n, k), -1, dtype=torch.int64, device=dev)
        world = World.current()
        for c in range(off.numel() - 1):
            a0, a1 = int(self._offsets[c]), int(self._offsets[c + 1])
            if a1 > a0 and world.mine(c):
                vals[a0:a1], idx[a0:a1] = self._scan(c, Xp[a0:a1].float(), xp_sq[a0:a1], k, own=True)
        combine_rows(world, vals, idx)
        # back to original indices and order
        out_idx = torch.where(idx >= 0, self.order[idx.clamp_min(0)], idx)
        return vals[self.position].cpu().numpy(), out_idx[self.position].cpu().numpy(), True

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
        """k smallest squared distances (and permuted positions, -1 if fewer) from ``q`` (fp32 rows) to list
        ``c``'s probe set (its ``nprobe`` nearest lists; all probes by default; ``probes``: a wider table of
        each list's nearest lists). ``own``: the queries are indexed points looking for their own neighbours
        (the graph), not foreign queries; the same scan here."""
        off, dev = self._offsets, q.device
        table = self._probe_lists if probes is None else probes
        spans = [(int(off[j]), int(off[j + 1])) for j in table[c, :nprobe]]
        cand = torch.cat([self._positions[s:e] for s, e in spans])
        block = torch.cat([self.Xp[s:e] for s, e in spans])
        width = int(cand.shape[0])
        if self._scan_dtype is None:
            d = sqdist_block(q, q_sq, block.float(), torch.cat([self.xp_sq[s:e] for s, e in spans]))
            v, j = torch.topk(d, min(k, width), dim=1, largest=False)
            found = cand[j]
        else:
            v, found = self._scan_reduced(c, q, block, cand, min(k, width))
        if v.shape[1] < k:
            v = torch.cat([v, torch.full((v.shape[0], k - v.shape[1]), math.inf, device=dev)], 1)
            found = torch.cat(
                [found, torch.full((found.shape[0], k - found.shape[1]), -1, dtype=torch.int64, device=dev)], 1
            )
        return v, found

    def _scan_reduced(
        self, c: int, q: torch.Tensor, block: torch.Tensor, cand: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reduced-precision scan: candidates chosen by a GEMM of residuals about list ``c``'s centre, the
        ``k`` nearest of them by fp32 squared distances measured by direct differences."""
        assert self._scan_dtype is not None
        centre = self.centers[c]
        qr, br = q - centre, block.float() - centre
        d = sqdist_block(qr, qr.pow(2).sum(1), br, br.pow(2).sum(1), precision="bf16")
        del br
        j = torch.topk(d, min(_RESCORE * k, d.shape[1]), dim=1, largest=False).indices
        del d
        found = cand[j]
        exact = torch.empty(found.shape, dtype=torch.float32, device=q.device)
        diff = torch.empty_like(q)
        for col in range(found.shape[1]):  # one candidate per query at a time, in a reused buffer
            torch.sub(q, self.Xp[found[:, col]].float(), out=diff)
            exact[:, col] = diff.pow_(2).sum(1)
        v, pick = torch.topk(exact, k, dim=1, largest=False)
        return v, found.gather(1, pick)

    def _queries(self, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        """Foreign query rows in the indexed space (fp32)."""
        return as_rows(rows, device)

    def search_queries(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """k nearest indexed points of other queries: each query scans the probe set of its nearest list."""
        return self._search_rows(self._query_matrix(x), k)

    def _query_matrix(self, x: np.ndarray) -> torch.Tensor:
        """All foreign query rows in the indexed space, read in batches into one preallocated tensor
        (block results kept in a list between the large read buffers would pin glibc's heap)."""
        return self._transformed(x, self.Xp.device)

    def _transformed(
        self,
        x: np.ndarray,
        device: torch.device,
        fn: Optional[Callable[[np.ndarray, torch.device], torch.Tensor]] = None,
    ) -> torch.Tensor:
        """``fn`` (default :meth:`_queries`) of every row block of ``x``, read by position, in one tensor."""
        fn = fn or self._queries
        out: Optional[torch.Tensor] = None
        step = load_rows(x.shape[1])
        for s in range(0, x.shape[0], step):
            block = fn(read_rows(x, s, s + step), device)
            if out is None:
                out = torch.empty((x.shape[0], block.shape[1]), dtype=block.dtype, device=device)
            out[s : s + block.shape[0]] = block
            del block
        assert out is not None
        return out

    def _search_rows(self, Q: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """k nearest indexed points of query rows ``Q`` (indexed space): each scans its nearest list's probes."""
        dev = self.Xp.device
        q_sq = Q.pow(2).sum(1)
        assign = self._nearest(Q, q_sq, self.centers, 1)[:, 0]
        order = torch.argsort(assign, stable=True)
        bounds = torch.searchsorted(assign[order], torch.arange(self.centers.shape[0] + 1, device=dev)).cpu().numpy()
        vals = torch.full((Q.shape[0], k), math.inf, dtype=torch.float32, device=dev)
        idx = torch.full((Q.shape[0], k), -1, dtype=torch.int64, device=dev)
        world = World.current()
        for c in range(self.centers.shape[0]):
            a0, a1 = int(bounds[c]), int(bounds[c + 1])
            if a1 > a0 and world.mine(c):
                rows = order[a0:a1]
                v, found = self._scan(c, Q[rows], q_sq[rows], k, self.used_params["query_nprobe"])
                vals[rows], idx[rows] = v, torch.where(found >= 0, self.order[found.clamp_min(0)], found)
        combine_rows(world, vals, idx)
        return vals.cpu().numpy(), idx.cpu().numpy(), True
