"""The planner: for each call, which path (exact or sampled), with which backends, and what it will cost.

One cost model of the operations, in one place:

* a GEMM tile of ``r × c`` distances in ``d`` dimensions costs ``2·r·c·d`` FLOPs at the machine's GEMM
  rate plus ``r·c`` times the per-element cost of the streaming reductions (top-k, ball tests);
* exact P&R: two symmetric self passes (tiles on and above the diagonal) and one real×fake pass;
* the sampled estimator: each set's k-NN graph (the exact self pass for small sets, else the cheaper of
  ``ivf-gemm`` — k-means, each list against its ``nprobe`` nearest lists, float64 upper-bound radii from
  ``n·k`` pair distances — and ``ivf-pca`` — the same lists in a 65-dimensional lower-bound embedding with
  a fixed ``nprobe``, the found neighbours measured in full dimension), an approximate membership search
  (``query_nprobe`` lists per query), and
  the sampled queries against every reference ball plus the true-radius rows they need; the sample
  size follows from the target half-width with a stratification gain measured on this project's data.

The two rates come from a short measurement on the device (:func:`calibrate`, once per process and
dimension bucket, well under a second). The sampled path is taken only when it is predicted clearly
cheaper than exact (:data:`SAMPLED_MARGIN`); otherwise ``compute_epr`` computes the exact answer and
returns it with zero-width intervals. The plan and its predicted and actual cost per stage ride on the
result (``Result.plan``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from statistics import NormalDist
from typing import Callable, Optional

import torch

from ..engine import FeatureSet
from ..neighbours import get_backend
from ..profiling import Stage
from ..validation import SampleSize
from .design import PILOT, phase_one_size

__all__ = [
    "Rates",
    "calibrate",
    "Choice",
    "plan_sampled",
    "exact_cost",
    "sampled_cost",
    "actual_costs",
    "SAMPLED_MARGIN",
    "decision_precision",
]

# The sampled path must be predicted at most this share of exact's cost to be taken: the model errs,
# and the promise is "never slower than exact".
SAMPLED_MARGIN = 0.7
# Set size up to which the exact self pass builds the graph of the sampled path (every radius exact).
EXACT_GRAPH_UP_TO = 5_000
# Share of the worst-case Bernoulli variance (p(1 − p) = 1/4) left after stratification, and the true-radius
# rows per sampled query: measured on synthetic and digit features (README, "Which method").
STRATIFICATION_GAIN = 0.15
RADIUS_ROWS_PER_QUERY = 0.4
# ivf-gemm's per-list GEMMs (a few hundred rows against a few thousand) and their gathers ran at about a third
# of the large-tile rate in benchmarks/bench_planner.py (2-core CPU, d = 512–4096): its tiles cost this much more.
IVF_SLOWDOWN = 3.0
LIST_OVERHEAD_S = 0.002  # Python and gather work per inverted list of ivf-gemm, per pass
FIXED_OVERHEAD_S = 0.01  # per call: stage bookkeeping, small allocations
# Per exact pass beyond its tiles: the candidates' sort and rounding bounds, thread wake-ups, small tiles below
# the GEMM's full rate (benchmarks/bench_planner.py, digits: 0.01-0.03 s a pass on this 2-core CPU).
PASS_OVERHEAD_S = 0.015


@dataclasses.dataclass(frozen=True)
class Rates:
    """Measured costs on one device: GEMM FLOP/s (fp32, and bf16 where measured), seconds per reduced tile
    element, per element of a float64 difference of gathered rows."""

    gemm_flops: float
    per_element: float
    per_f64_element: float
    gemm_bf16_flops: float = 0.0  # 0: not measured

    def tile(self, rows: float, cols: float, dim: int, precision: str = "fp32") -> float:
        """Seconds for ``rows × cols`` distances in ``dim`` dimensions, reduced as they are made."""
        flops = self.gemm_bf16_flops if precision == "bf16" and self.gemm_bf16_flops > 0 else self.gemm_flops
        return 2.0 * rows * cols * dim / flops + rows * cols * self.per_element


def _best_times(
    fns: "list[Callable[[], None]]", rounds: int = 5, seconds: float = 0.25, most: int = 200
) -> list[float]:
    """The fastest run of each of ``fns``, run in turn for at least ``rounds`` rounds and ``seconds``: a stall of
    the machine (another process, a library's spinning threads, page faults) only slows some of them, and
    taking turns spreads a stall over all the rates instead of one."""
    best = [math.inf] * len(fns)
    start, done = time.perf_counter(), 0
    while done < most and (done < rounds or time.perf_counter() - start < seconds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
        done += 1
    return best


# Measured rates per (device, dimension bucket): once per process.
_RATES: dict[tuple[str, int], Rates] = {}


def _bucket(dim: int) -> int:
    return 1 << max(6, min(12, math.ceil(math.log2(max(dim, 1)))))


# The gathered-pair rate is measured on rows gathered at random from an array this large (beyond a CPU's
# caches, as a real set is), this many elements per gathered side: measured on one contiguous in-cache array
# at d ≤ 512 instead, it under-predicted the d = 4096 runs 2-3x.
_GATHER_SOURCE_BYTES = 1 << 25
_GATHER_ELEMENTS = 1 << 21


def _measure(device: str, dim: int) -> Rates:
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    g = torch.Generator(device=dev).manual_seed(0)
    t = 512 if dev.type == "cpu" else 4096  # a full-speed GEMM (within ~5% of large tiles here), yet ~20 ms
    a = torch.randn(t, dim, generator=g, device=dev)
    b = torch.randn(t, dim, generator=g, device=dev)

    def gemm() -> None:
        torch.addmm(torch.zeros(1, t, device=dev), a, b.T, beta=1.0, alpha=-2.0)
        sync()

    a16, b16 = a.bfloat16(), b.bfloat16()

    def gemm_bf16() -> None:  # as sqdist_block runs a bf16 tile (the conversions of its blocks included)
        (a.bfloat16() @ b16.T).float() if dev.type == "cpu" else torch.mm(a16, b16.T, out_dtype=torch.float32)
        sync()

    d = torch.rand(t, t, generator=g, device=dev)

    def reduce() -> None:
        torch.topk(d, 11, dim=1, largest=False)
        (d < 0.5).sum(0)
        sync()

    src = torch.randn(max(1024, _GATHER_SOURCE_BYTES // (8 * dim)), dim, generator=g, device=dev, dtype=torch.float64)
    pairs = max(64, _GATHER_ELEMENTS // dim)
    ia, ib = torch.randint(0, src.shape[0], (2, pairs), generator=g, device=dev)
    rows_a = torch.empty(pairs, dim, dtype=torch.float64, device=dev)
    rows_b, sums = torch.empty_like(rows_a), torch.empty(pairs, dtype=torch.float64, device=dev)

    def f64() -> None:  # as the float64 re-checks and the rescoring of gathered candidates run, in reused buffers
        torch.index_select(src, 0, ia, out=rows_a)
        torch.index_select(src, 0, ib, out=rows_b)
        torch.sum(rows_a.sub_(rows_b).pow_(2), 1, out=sums)
        sync()

    for _ in range(2):  # warm-up: thread pools, kernels, first-touch page faults
        gemm()
        gemm_bf16()
        reduce()
    t_gemm, t_bf16, t_reduce, t_f64 = _best_times([gemm, gemm_bf16, reduce, f64])
    return Rates(
        gemm_flops=2.0 * t * t * dim / t_gemm,
        per_element=t_reduce / (t * t),
        per_f64_element=t_f64 / (pairs * dim),
        gemm_bf16_flops=2.0 * t * t * dim / t_bf16,
    )


def calibrate(device: torch.device, dim: int) -> Rates:
    """This machine's rates for ``dim``-dimensional data (cached per device and dimension bucket, a power of
    two from 64 to 4096; wider data is measured at 4096)."""
    key = (str(device), _bucket(dim))
    if key not in _RATES:
        _RATES[key] = _measure(*key)
    return _RATES[key]


def _cached_rates(device: torch.device, dim: int) -> Optional[Rates]:
    """Rates measured earlier in this process, if any (no measurement)."""
    return _RATES.get((str(device), _bucket(dim)))


@dataclasses.dataclass
class Choice:
    """The chosen path, why, and its predicted cost per stage (seconds)."""

    path: str  # "exact" | "sampled" | "hubness"
    reason: str
    backends: dict[str, str]
    predicted: dict[str, float]
    alternative: dict[str, float]  # the predicted cost of the path not taken (total per path)
    precision: str = "fp32"  # the GEMM precision of the sampled path's exact decisions (decision_precision)


# A reduced-precision GEMM is taken for the sampled decisions only when measured this much faster: its wider
# rounding band sends more pairs to the float64 re-check and keeps more candidates per true radius.
BF16_SPEEDUP = 1.5


def decision_precision(precision: str, rates: Rates) -> str:
    """The GEMM precision of the sampled path's exact decisions (the query scans and true-radius rows, whose
    GEMMs are nearly all of its cost on data no screen can prune): bf16 where this device's bf16 GEMM was
    measured at least :data:`BF16_SPEEDUP` times the fp32 one, else ``precision`` (the call's). Either way the
    decisions equal a float64 brute force: the rounding bound widens with the precision."""
    if precision == "fp32" and rates.gemm_bf16_flops >= BF16_SPEEDUP * rates.gemm_flops:
        return "bf16"
    return precision


def _sample_size(size: SampleSize, confidence: float, population: int) -> float:
    if isinstance(size, int):
        return float(min(size, population))
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    s0 = z * z * 0.25 * STRATIFICATION_GAIN / (size * size)
    return min(float(population), max(float(min(PILOT, population)), s0 / (1 + s0 / population)))


def _ivf_gemm_cost(n: int, dim: int, k: int, rates: Rates) -> float:
    """ivf-gemm: k-means in full dimension, each list against ``nprobe`` lists, float64 upper radii."""
    p = get_backend("ivf-gemm")().resolve_params(n, dim)
    nlist, frac = p["nlist"], p["nprobe"] / p["nlist"]
    train = min(n, nlist * p["train_per_list"])
    build = p["kmeans_iters"] * rates.tile(train, nlist, dim) + rates.tile(n, nlist, dim)
    search = IVF_SLOWDOWN * rates.tile(n, n * frac, dim) + nlist * LIST_OVERHEAD_S
    upper = n * k * dim * rates.per_f64_element
    return build + search + upper


def _ivf_pca_cost(n: int, dim: int, k: int, rates: Rates) -> float:
    """ivf-pca: the embedding (one GEMM per row), k-means and the list scans in ``dims + 1`` dimensions,
    then ``rescore·(k + 1)`` gathered full-dimension pairs per point (at the float64 element rate, a
    stand-in for a gather's memory traffic); the measured distances give the upper radii."""
    p = get_backend("ivf-pca")().resolve_params(n, dim)
    m, nlist = p["dims"] + 1, p["nlist"]
    train = min(n, nlist * p["train_per_list"])
    embed = rates.tile(n, p["dims"], dim)
    build = embed + p["kmeans_iters"] * rates.tile(train, nlist, m) + rates.tile(n, nlist, m)
    search = IVF_SLOWDOWN * rates.tile(n, n * p["nprobe"] / nlist, m) + nlist * LIST_OVERHEAD_S
    rescore = n * p["rescore"] * (k + 1) * dim * rates.per_f64_element
    return build + search + rescore


def _ivf_gemm_queries(n_q: int, n_r: int, dim: int, rates: Rates) -> float:
    """ivf-gemm's search of foreign queries: each against its ``query_nprobe`` lists, in full dimension."""
    p = get_backend("ivf-gemm")().resolve_params(n_r, dim)
    return IVF_SLOWDOWN * rates.tile(n_q, n_r * p["query_nprobe"] / p["nlist"], dim)


def _ivf_pca_queries(n_q: int, n_r: int, dim: int, rates: Rates) -> float:
    """ivf-pca's search of foreign queries: the embedding, the list scans in ``dims + 1`` dimensions, and
    ``rescore`` full-dimension pairs per query."""
    p = get_backend("ivf-pca")().resolve_params(n_r, dim)
    search = IVF_SLOWDOWN * rates.tile(n_q, n_r * p["query_nprobe"] / p["nlist"], p["dims"] + 1)
    return rates.tile(n_q, p["dims"], dim) + search + n_q * p["rescore"] * dim * rates.per_f64_element


@dataclasses.dataclass(frozen=True)
class GraphCost:
    """One backend's cost model: its graph of a set ``(n, dim, k, rates)`` and its search of foreign
    queries for the approximate membership ``(n_queries, n_reference, dim, rates)``."""

    graph: Callable[[int, int, int, Rates], float]
    queries: Callable[[int, int, int, Rates], float]


# The graph backends the sampled path chooses from above EXACT_GRAPH_UP_TO, with their cost models.
_GRAPH_COSTS: dict[str, GraphCost] = {
    "ivf-gemm": GraphCost(_ivf_gemm_cost, _ivf_gemm_queries),
    "ivf-pca": GraphCost(_ivf_pca_cost, _ivf_pca_queries),
}


def _graph_cost(n: int, dim: int, k: int, rates: Rates) -> tuple[str, float]:
    """(backend, seconds) of one set's graph for the sampled path: the exact self pass for small sets,
    else the backend predicted cheapest."""
    if n <= EXACT_GRAPH_UP_TO:
        return "exact", 0.75 * rates.tile(n, n, dim)
    costs = {name: model.graph(n, dim, k, rates) for name, model in _GRAPH_COSTS.items()}
    best = min(costs, key=costs.__getitem__)
    return best, costs[best]


def exact_cost(
    n_real: int, n_fake: int, dim: int, rates: Rates, known: frozenset[str] = frozenset()
) -> dict[str, float]:
    """Predicted seconds of exact P&R (no density/coverage): self passes (none for the sets whose radii
    are ``known``, e.g. a reference manifold) and the cross pass."""
    passes = [n for name, n in (("real", n_real), ("fake", n_fake)) if name not in known]
    return {
        "prepare": _prepare_cost(n_real + n_fake, dim, rates),
        "radii": sum(0.75 * rates.tile(n, n, dim) + PASS_OVERHEAD_S for n in passes),
        "cross pass": rates.tile(n_real, n_fake, dim) + PASS_OVERHEAD_S,
    }


def _prepare_cost(rows: int, dim: int, rates: Rates) -> float:
    """The centre and norms: two float64 scans of every row, plus a fixed start-up share."""
    return 3.0 * rows * dim * rates.per_f64_element + FIXED_OVERHEAD_S


def sampled_cost(
    sets: dict[str, FeatureSet],
    k: int,
    size: SampleSize,
    confidence: float,
    rates: Rates,
    known: frozenset[str] = frozenset(),
    precision: str = "fp32",
) -> tuple[dict[str, str], dict[str, float]]:
    """Predicted backends and seconds per stage of the sampled estimator (a set whose radii are ``known``
    brings its exact graph: no cost)."""
    dim = sets["real"].dim
    graphs = {name: ("exact", 0.0) if name in known else _graph_cost(fs.n, dim, k, rates) for name, fs in sets.items()}
    cost = {
        "prepare": _prepare_cost(sets["real"].n + sets["fake"].n, dim, rates),
        "graphs": sum(c for _, c in graphs.values()),
        "approximate membership": 0.0,
        "sampled membership": 0.0,
    }
    for q, r in (("fake", "real"), ("real", "fake")):
        n_q, n_r = sets[q].n, sets[r].n
        if graphs[r][0] in _GRAPH_COSTS:  # only a phase one of the queries is searched on large sets
            n_search = phase_one_size(size, confidence, n_q)
            cost["approximate membership"] += _GRAPH_COSTS[graphs[r][0]].queries(n_search, n_r, dim, rates)
        s = _sample_size(size, confidence, n_q)
        rows = 0.0 if graphs[r][0] == "exact" else RADIUS_ROWS_PER_QUERY * s
        cost["sampled membership"] += rates.tile(s + rows, n_r, dim, precision)
    return {name: b for name, (b, _) in graphs.items()}, cost


def plan_sampled(
    sets: dict[str, FeatureSet],
    k: int,
    backend: str,
    size: SampleSize,
    confidence: float,
    device: torch.device,
    known: frozenset[str] = frozenset(),
    precision: str = "fp32",
) -> Choice:
    """Exact or sampled for a ``method="sampled"`` call, from the predicted costs of both (``known``: the
    sets whose exact radii were computed before the call, as by a reference manifold)."""
    n_r, n_f, dim = sets["real"].n, sets["fake"].n, sets["real"].dim
    if backend == "auto" and max(n_r, n_f) <= EXACT_GRAPH_UP_TO:
        # The sampled path would build its graphs by the same exact self passes: it cannot be cheaper, so no
        # measurement is spent on the decision (the prediction uses rates measured earlier, if any).
        measured = _cached_rates(device, dim)
        predicted = {} if measured is None else exact_cost(n_r, n_f, dim, measured, known)
        reason = f"both sets ≤ {EXACT_GRAPH_UP_TO:,}: sampling would run the same exact self passes, so exact"
        return Choice("exact", reason, {n: "exact" for n in sets}, predicted, {})
    start = time.perf_counter()
    rates = calibrate(device, dim)
    planning = {"plan": time.perf_counter() - start}  # the measurement (none when cached), part of this call's cost
    exact = {**planning, **exact_cost(n_r, n_f, dim, rates, known)}
    decisions = decision_precision(precision, rates)
    backends, sampled = sampled_cost(sets, k, size, confidence, rates, known, decisions)
    sampled = {**planning, **sampled}
    if backend != "auto":  # the user's backend: sampled, whatever the cost
        return Choice(
            "sampled",
            f"backend={backend!r} requested",
            {n: "exact" if n in known else backend for n in sets},
            sampled,
            {"exact": sum(exact.values())},
            decisions,
        )
    # The measurement is spent either way: the choice compares the rest.
    t_exact, t_sampled = sum(exact.values()) - planning["plan"], sum(sampled.values()) - planning["plan"]
    if t_sampled <= SAMPLED_MARGIN * t_exact:
        reason = f"sampled predicted {t_sampled:.3g} s vs exact {t_exact:.3g} s"
        return Choice("sampled", reason, backends, sampled, {"exact": t_exact}, decisions)
    reason = (
        f"exact predicted {t_exact:.3g} s, sampled {t_sampled:.3g} s (taken only below "
        f"{SAMPLED_MARGIN:.0%} of exact): the exact answer, zero-width intervals"
    )
    return Choice("exact", reason, {n: "exact" for n in sets}, exact, {"sampled": t_sampled})


# Stage names of a run → the cost model's stages.
_STAGE_GROUPS = (
    ("approximate membership", "approximate membership"),
    ("exact membership of sampled", "sampled membership"),
    ("k-NN graph", "graphs"),
    ("subspace construction", "graphs"),
    ("distances + top-k → radii", "radii"),
    ("real↔fake", "cross pass"),
    ("prepare", "prepare"),
    ("plan (", "plan"),
)


def actual_costs(stages: list[Stage]) -> dict[str, float]:
    """Measured seconds per cost-model stage, summed from a run's stages."""
    out: dict[str, float] = {}
    for s in stages:
        group = next((g for key, g in _STAGE_GROUPS if key in s.name), "other")
        out[group] = out.get(group, 0.0) + s.seconds
    return out
