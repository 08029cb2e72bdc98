"""The sampled P&R estimator: exact membership of a random sample of queries, with an interval.

Precision is the mean over fakes of ``1[fake inside some real ball]`` (recall
symmetric), so a random sample of queries, each decided *exactly* against
every reference ball, estimates it without bias (:mod:`eprmetrics.estimators.design`).
What stays cheap as n grows:

* **Radii from the k-NN graph.** A backend that reports the k points it found
  gives, from their float64 distances, an *upper bound* ``U`` of every true
  radius (a missed neighbour can only make the k-th found one farther). A query
  outside every ``U`` ball is certainly outside every true ball.
* **True radii on demand.** A query inside some ``U`` ball needs that ball's
  true radius, which one tiled owner-vs-all row gives exactly
  (:class:`~eprmetrics.neighbours.Radii` with ``owners``). Candidates are tried
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
from typing import Any, Optional, Union, cast

import numpy as np
import torch

from ..engine import Prepared, TileEngine, up32
from ..neighbours import GraphRequest, SetGraph, UpperRadii, build_graph
from ..result import KResult, Plan, SideSampling
from ..validation import SampleSize
from .context import RunContext
from .design import PILOT, Estimate, StratifiedSample, hubness_bins
from .exact import ExactSpec, run_exact
from .pipeline import Outcome
from .planner import Choice, plan_sampled

__all__ = [
    "SampledSpec",
    "SampleRequest",
    "run_sampled",
    "sample_both",
    "SIDES",
    "SideDesign",
    "side_design",
    "sample_side",
    "sampled_hits",
    "approximate_hits",
    "SideEstimate",
    "estimate_side",
    "side_sampling",
    "graph_plan",
    "PILOT",
    "APPROX_NEIGHBOURS",
]

# fp32 candidate balls kept per query and tile, deepest first.
CANDIDATES_PER_TILE = 8
# Reference points found per query by the ANN search behind the approximate membership.
APPROX_NEIGHBOURS = 8
# (side, query set, reference set)
SIDES = (("precision", "fake", "real"), ("recall", "real", "fake"))


def _candidates(
    engine: TileEngine, queries: Prepared, q_index: torch.Tensor, radii: UpperRadii, per_tile: Optional[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs (query position, ball owner, exact d²) with ``d² ≤ U²``, and per query whether
    ``per_tile`` left out some candidate whose true radius is still unknown.

    Balls whose true radius is known cost no radius row: every one of them that may hold a query is
    kept. Only the others are capped at ``per_tile`` per tile (deepest first), so each round turns
    at least one unknown radius of every unfinished query into a known one: the rounds end.
    """
    ref = radii.ref
    hi = up32(radii.upper2 + engine.bound(ref.norm, queries.max_norm))
    known = radii.known
    seen = torch.zeros(q_index.numel(), dtype=torch.int64, device=engine.device)
    kept = torch.zeros_like(seen)

    def select(d: torch.Tensor, q_pos: torch.Tensor, cs: slice) -> torch.Tensor:
        h = hi[None, cs]
        cand = d <= h
        if per_tile is None or d.shape[1] <= per_tile:
            return cand
        unknown = cand & ~known[None, cs]
        seen[q_pos] += unknown.sum(1)
        depth = torch.where(unknown, d / h.clamp_min(torch.finfo(torch.float32).tiny), math.inf)
        j = depth.topk(per_tile, dim=1, largest=False).indices
        chosen = torch.zeros_like(cand).scatter_(1, j, True) & unknown
        kept[q_pos] += chosen.sum(1)
        return chosen | (cand & known[None, cs])

    parts = list(engine.collect_pairs(queries, q_index, ref, select))
    if not parts:
        empty = torch.empty(0, dtype=torch.int64, device=engine.device)
        return empty, empty, empty.double(), seen > kept
    pos = torch.cat([p for p, _, _ in parts])
    own = torch.cat([o for _, o, _ in parts])
    d2 = torch.cat([v for _, _, v in parts])
    inside = d2 <= radii.upper2[own]
    return pos[inside], own[inside], d2[inside], seen > kept


def _decide(
    radii: UpperRadii,
    pos: torch.Tensor,
    own: torch.Tensor,
    d2: torch.Tensor,
    hits: torch.Tensor,
    strict: bool,
    first_only: bool = False,
) -> None:
    """Set ``hits[q]`` when some candidate ball of q truly holds it: deepest candidate first, then the rest
    (``first_only``: the deepest alone)."""
    if pos.numel() == 0:
        return
    depth = d2 / radii.upper2[own].clamp_min(torch.finfo(torch.float64).tiny)
    o = depth.argsort(stable=True)  # sort by (query, depth)
    pos, own, d2 = pos[o], own[o], d2[o]
    o = pos.argsort(stable=True)
    pos, own, d2 = pos[o], own[o], d2[o]
    first = torch.ones_like(pos, dtype=torch.bool)
    first[1:] = pos[1:] != pos[:-1]
    for sel in (first,) if first_only else (first, ~first):
        sel = sel & ~hits[pos]
        if sel.any():
            r2 = radii.true2(own[sel])
            inside = d2[sel] < r2 if strict else d2[sel] <= r2
            hits[pos[sel][inside]] = True


def _refined(
    radii: UpperRadii, pos: torch.Tensor, own: torch.Tensor, d2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The candidate pairs ``d² ≤ U²`` left once the bounds of their owners are tightened by the index
    (:meth:`UpperRadii.refine`: a wider search and a few measured rows per owner, far cheaper than the
    true-radius row each candidate would otherwise cost)."""
    inside = d2 <= radii.upper2[own]
    pos, own, d2 = pos[inside], own[inside], d2[inside]
    if radii.refine(own):
        inside = d2 <= radii.upper2[own]
        pos, own, d2 = pos[inside], own[inside], d2[inside]
    return pos, own, d2


def _presolve(
    engine: TileEngine,
    queries: Prepared,
    q_index: torch.Tensor,
    radii: UpperRadii,
    near: torch.Tensor,
    strict: bool,
) -> torch.Tensor:
    """Hits proven from a few reference points already known to be near each query (``near``: indices,
    ``-1`` for none): the deepest of them whose upper-bound ball holds the query gets its true radius.
    Only a query left undecided is scanned against every ball."""
    hits = torch.zeros(q_index.numel(), dtype=torch.bool, device=engine.device)
    near = near.to(engine.device)
    pos = torch.arange(q_index.numel(), device=engine.device).repeat_interleave(near.shape[1])
    own = near.reshape(-1)
    pos, own = pos[own >= 0], own[own >= 0]
    if not own.numel():
        return hits
    d2 = engine.exact_sqdist_pairs(queries, q_index[pos], radii.ref, own)
    pos, own, d2 = _refined(radii, pos, own, d2)
    _decide(radii, pos, own, d2, hits, strict, first_only=True)
    return hits


def sampled_hits(
    engine: TileEngine,
    queries: Prepared,
    q_index: torch.Tensor,
    radii: UpperRadii,
    strict: bool,
    near: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Exact membership of the queries ``q_index`` in the union of all reference balls.

    Equals the float64 brute-force decision: candidates come from the upper-bound
    radii with an fp32 rounding margin, are confirmed by float64 distances, and
    decided against true radii. ``near`` (per query, indices of reference points
    found near it, ``-1`` padded) lets most hits be proven before that scan.
    """
    hits = torch.zeros(q_index.numel(), dtype=torch.bool, device=engine.device)
    per_tile = None if radii.is_exact else CANDIDATES_PER_TILE
    todo = torch.arange(q_index.numel(), device=engine.device)
    if near is not None and not radii.is_exact:
        hits = _presolve(engine, queries, q_index, radii, near, strict)
        radii.tighten()
        todo = todo[~hits]
    while todo.numel():
        pos, own, d2, more = _candidates(engine, queries, q_index[todo], radii, per_tile)
        pos, own, d2 = _refined(radii, pos, own, d2)
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
    return cast(np.ndarray, (found & (d2 <= u[np.where(found, idx, 0)])).any(1))


@dataclasses.dataclass(frozen=True)
class SampleRequest:
    """How many queries to decide per side and at what confidence.

    ``size``: an int (queries drawn per set) or a float in (0, 1), the target
    half-width: a pilot of :data:`PILOT` queries sizes the sample.
    ``approximate``: also stratify by an ANN-based approximate membership when
    the reference index can search foreign points. ``label`` prefixes stage names.
    """

    size: SampleSize
    confidence: float
    approximate: bool = True
    label: str = ""
    option: str = "sample_size"  # the option that set ``size``, for messages


@dataclasses.dataclass
class SideEstimate:
    """One side's estimate (precision: fakes against real balls; recall: reals against fake balls)."""

    estimate: Estimate
    n_true_radii: int  # reference radii computed exactly on demand
    strata: int
    approximate: Optional[float]  # mean of the approximate membership, when one was used


@dataclasses.dataclass
class SideDesign:
    """What one side's sampling needs before any query is decided (built once, reusable across seeds)."""

    upper: UpperRadii  # the reference balls' upper-bound radii (true ones filled in as computed)
    strata: np.ndarray  # stratum of every query
    approx: Optional[np.ndarray]  # approximate membership of every query, when the index gave one
    near: Optional[np.ndarray]  # reference points found near every query (-1 padded)


def estimate_side(
    engine: TileEngine,
    queries: Prepared,
    side: SideDesign,
    request: SampleRequest,
    seed: Union[int, list[int]],
    strict: bool,
) -> SideEstimate:
    """Stratified sampled estimate of the share of ``queries`` inside the reference balls of ``side.upper``
    (``side.near``: reference points found near every query, which prove most hits cheaply)."""
    radii, strata, near = side.upper, side.strata, side.near
    design = StratifiedSample(strata, seed)
    need = min(design.N, 2 * len(design.units))  # two per stratum, or everything: a variance for each stratum
    if isinstance(request.size, int) and request.size < need:
        hint = " or a target half-width such as 0.01" if request.option == "sample_size" else ""
        raise ValueError(
            f"{request.option}: expected at least {need} queries per set here (2 in each of {len(design.units)} "
            f"strata), got {request.size}; pass {request.option}={need} or more{hint}"
        )
    known: dict[int, bool] = {}

    def observe(index: np.ndarray) -> np.ndarray:
        new = np.array([i for i in index if i not in known], dtype=np.int64)
        if new.size:
            nb = None if near is None else torch.from_numpy(near[new])
            q = torch.from_numpy(new).to(engine.device)
            h = sampled_hits(engine, queries, q, radii, strict, nb).cpu().numpy()
            known.update(zip(new.tolist(), h.tolist()))
        return np.array([known[i] for i in index], dtype=np.float64)

    if isinstance(request.size, float):
        pilot = design.draw(min(PILOT, design.N))
        s = design.size_for(request.size, pilot, observe(pilot), request.confidence)
        index = design.draw(max(s, pilot.size)) if s > pilot.size else pilot
    else:
        index = design.draw(request.size)
    est = design.estimate(index, observe(index), request.confidence)
    return SideEstimate(est, radii.n_true, len(design.units), None)


def _strata(
    ctx: RunContext, graphs: dict[str, SetGraph], side: tuple[str, str, str], upper: UpperRadii, request: SampleRequest
) -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """Stratum of every query: its hubness bin, × the approximate membership where the index can give it;
    and the reference points that search found near each query."""
    name, q, r = side
    strata = hubness_bins(graphs[q].occurrence, upper.k)
    index = graphs[r].index
    if not (request.approximate and index is not None and index.supports_queries):
        return strata, None, None
    with ctx.stage(f"{name}: approximate membership ({q} → {r} {graphs[r].backend} index)"):
        x = ctx.sets[q].numpy_rows(keep_float16=index.accepts_float16)
        dist, idx, squared = index.search_queries(x, min(APPROX_NEIGHBOURS, ctx.sets[r].n))
        approx = approximate_hits(dist, idx, squared, upper.upper2)
        del x
    return strata * 2 + approx.astype(np.int64), approx, np.asarray(idx, dtype=np.int64)


def side_design(
    ctx: RunContext, graphs: dict[str, SetGraph], side: tuple[str, str, str], k: int, request: SampleRequest
) -> SideDesign:
    """The upper radii, strata and near points of one of :data:`SIDES`."""
    upper = graphs[side[2]].upper(ctx.engine, ctx.prepared[side[2]], k)
    return SideDesign(upper, *_strata(ctx, graphs, side, upper, request))


def sample_side(
    ctx: RunContext, design: SideDesign, side: tuple[str, str, str], request: SampleRequest
) -> SideEstimate:
    """One side's estimate from its design, seeded by the context's seed and the side."""
    name, q, _ = side
    with ctx.stage(f"{request.label}{name}: exact membership of sampled {q} queries"):
        seed = [ctx.seed, SIDES.index(side)]
        est = estimate_side(ctx.engine, ctx.prepared[q], design, request, seed, ctx.strict)
    est.approximate = None if design.approx is None else float(np.mean(design.approx))
    return est


def sample_both(
    ctx: RunContext, graphs: dict[str, SetGraph], k: int, request: SampleRequest
) -> dict[str, SideEstimate]:
    """Sampled estimates of precision and recall from the two sets' graphs."""
    return {side[0]: sample_side(ctx, side_design(ctx, graphs, side, k, request), side, request) for side in SIDES}


def side_sampling(e: SideEstimate) -> SideSampling:
    """The typed, JSON-ready record of one side's estimate."""
    est = e.estimate
    return SideSampling(
        estimate=est.value,
        interval=est.interval,
        half_width=est.half_width,
        sample_size=est.sample_size,
        population=est.population,
        strata=e.strata,
        approximate_membership=e.approximate,
        true_radii_computed=e.n_true_radii,
    )


def graph_plan(method: str, graphs: dict[str, SetGraph], choice: Optional[Choice] = None) -> Plan:
    """The plan of a graph-based method: the backend of each set (one name when both agree) and why."""
    used = {name: g.backend for name, g in graphs.items()}
    backend = used["real"] if len(set(used.values())) == 1 else f"{used['real']}+{used['fake']}"
    if choice is None:
        return Plan(
            method=method,
            backend=backend,
            reason=graphs["real"].reason,
            params=graphs["real"].params,
            path=method,
            backends=used,
        )
    return Plan(
        method=method,
        backend=backend,
        reason=choice.reason,
        params=graphs["real"].params,
        path=choice.path,
        backends=used,
        predicted=choice.predicted,
        alternative=choice.alternative,
    )


@dataclasses.dataclass(frozen=True)
class SampledSpec:
    """The sampled estimator's options (see :func:`eprmetrics.compute_epr`)."""

    k: int
    backend: str
    backend_options: Optional[dict[str, Any]]
    sample: SampleRequest


def _exact_instead(ctx: RunContext, spec: SampledSpec, choice: Choice) -> Outcome:
    """The exact answer where the planner predicted it cheaper: every query decided, zero-width intervals."""
    out = run_exact(ctx, ExactSpec((spec.k,), density_coverage=False))
    kr = out.per_k[spec.k]
    sides = (("precision", kr.precision, ctx.fake.n), ("recall", kr.recall, ctx.real.n))
    sampling = {
        side: SideSampling(
            estimate=v,
            interval=(v, v),
            half_width=0.0,
            sample_size=n,
            population=n,
            strata=1,
            approximate_membership=None,
            true_radii_computed=0,
        )
        for side, v, n in sides
    }
    plan = Plan(
        method="sampled",
        backend="exact",
        reason=choice.reason,
        path="exact",
        backends=choice.backends,
        predicted=choice.predicted,
        alternative=choice.alternative,
    )
    return Outcome(
        "sampled", out.per_k, out.n_redecided, plan=plan, sampling=sampling, confidence=spec.sample.confidence
    )


def run_sampled(ctx: RunContext, spec: SampledSpec) -> Outcome:
    """Sampled P&R with intervals, or the exact answer when the planner predicts it cheaper
    (run inside :meth:`RunContext.run`)."""
    with ctx.stage("plan (cost model, calibrated once per process)"):
        choice = plan_sampled(ctx.sets, spec.k, spec.backend, spec.sample.size, spec.sample.confidence, ctx.device)
    if choice.path == "exact":
        return _exact_instead(ctx, spec, choice)
    graphs = {}
    for name, fs in ctx.sets.items():
        request = GraphRequest(choice.backends[name], "sampled", spec.k, ctx.seed, spec.backend_options, choice.reason)
        graphs[name] = build_graph(ctx.engine, fs, ctx.prepared[name], request, ctx.prof, ctx.progress)
    est = sample_both(ctx, graphs, spec.k, spec.sample)
    kr = KResult(k=spec.k, precision=est["precision"].estimate.value, recall=est["recall"].estimate.value)
    return Outcome(
        "sampled",
        {spec.k: kr},
        sum(e.n_true_radii for e in est.values()),
        plan=graph_plan("sampled", graphs, choice),
        sampling={side: side_sampling(e) for side, e in est.items()},
        confidence=spec.sample.confidence,
    )
