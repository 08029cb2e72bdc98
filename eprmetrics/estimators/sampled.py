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
* **Two phases.** On a large set that search would cost more than deciding the
  sample (it grows like ``n^1.5``). Only a random *phase one* of the queries,
  sized by :func:`~eprmetrics.estimators.design.phase_one_size` from the target
  (192,073 queries for a half-width of 0.01), is searched and stratified; the
  interval carries the phase one's variance (:mod:`~eprmetrics.estimators.design`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional, Union, cast

import numpy as np
import torch

from ..engine import Prepared, TileEngine
from ..neighbours import GraphRequest, SetGraph, UpperRadii, build_graph
from ..neighbours.screen import ScreenReport, build_screen
from ..profiling import note_read
from ..result import KResult, Plan, SideSampling
from ..validation import SampleSize
from .context import RunContext
from .decisions import sampled_hits
from .design import PILOT, Estimate, StratifiedSample, hubness_bins, phase_one_size
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

# Reference points found per query by the ANN search behind the approximate membership.
APPROX_NEIGHBOURS = 8
# Bytes of phase-one query rows gathered from the input (a memmap) and searched together.
_PHASE_ONE_BYTES = 256 << 20
# (side, query set, reference set)
SIDES = (("precision", "fake", "real"), ("recall", "real", "fake"))


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
    screen: object = "auto"  # the projection screen of the exact decisions: "auto", True or False


@dataclasses.dataclass
class SideEstimate:
    """One side's estimate (precision: fakes against real balls; recall: reals against fake balls)."""

    estimate: Estimate
    n_true_radii: int  # reference radii computed exactly on demand
    strata: int
    approximate: Optional[float]  # mean of the approximate membership, when one was used
    screen: Optional[dict] = None  # what the projection screen decided and let through (None: not tried)
    candidates: Optional[int] = None  # (query, ball) pairs inside an upper bound that the decisions examined
    scans: Optional[int] = None  # query scans over every ball (one per round a query took part in)
    pilot: Optional[dict] = None  # {"queries", "seconds"} of the pilot that sized the sample


@dataclasses.dataclass
class SideDesign:
    """What one side's sampling needs before any query is decided (built once, reusable across seeds)."""

    upper: UpperRadii  # the reference balls' upper-bound radii (true ones filled in as computed)
    strata: np.ndarray  # stratum of every phase-one query
    approx: Optional[np.ndarray]  # approximate membership of every phase-one query, when the index gave one
    near: Optional[np.ndarray]  # reference points found near every phase-one query (-1 padded)
    screen: Optional[ScreenReport] = None  # what the projection screen's pilot decided (None: not tried)
    phase: Optional[np.ndarray] = None  # the phase-one queries (sorted indices; None: one phase, every query)


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
    radii, strata, near, phase = side.upper, side.strata, side.near, side.phase
    design = StratifiedSample(strata, seed, population=queries.n if phase is not None else None)
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
            q = torch.from_numpy(new if phase is None else phase[new]).to(engine.device)
            h = sampled_hits(engine, queries, q, radii, strict, nb).cpu().numpy()
            known.update(zip(new.tolist(), h.tolist()))
        return np.array([known[i] for i in index], dtype=np.float64)

    timed = None
    if isinstance(request.size, float):
        pilot = design.draw(min(PILOT, design.N))
        start = time.perf_counter()
        s = design.size_for(request.size, pilot, observe(pilot), request.confidence)
        timed = {"queries": int(pilot.size), "seconds": time.perf_counter() - start}
        index = design.draw(max(s, pilot.size)) if s > pilot.size else pilot
    else:
        index = design.draw(request.size)
    est = design.estimate(index, observe(index), request.confidence)
    return SideEstimate(
        est,
        radii.n_true,
        len(design.units),
        None,
        candidates=radii.n_candidates,
        scans=radii.n_scanned,
        pilot=timed,
    )


def phase_one(n: int, request: SampleRequest, seed: list[int]) -> Optional[np.ndarray]:
    """The phase-one queries of a side (sorted random indices), or None where every query is stratified."""
    n1 = phase_one_size(request.size, request.confidence, n)
    if n1 >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, n1, replace=False))


def _search_phase(
    index: Any, x: np.ndarray, phase: Optional[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The index's search of the queries ``x`` (all, or the rows ``phase``, gathered a block at a time:
    never the phase one's full rows at once)."""
    if phase is None:
        return cast(tuple[np.ndarray, np.ndarray, bool], index.search_queries(x, k))
    step = max(1024, _PHASE_ONE_BYTES // max(1, x.shape[1] * x.dtype.itemsize))
    note_read(x, phase.size * x.shape[1] * x.dtype.itemsize)  # the phase one's rows, gathered once
    parts = [index.search_queries(np.asarray(x[phase[s : s + step]]), k) for s in range(0, phase.size, step)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), parts[0][2]


def _strata(
    ctx: RunContext,
    graphs: dict[str, SetGraph],
    side: tuple[str, str, str],
    upper: UpperRadii,
    request: SampleRequest,
) -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """Stratum of every (phase-one) query: its hubness bin, × the approximate membership where the index can
    give it; the reference points that search found near each query; and the phase one (None: every query).
    Without that search stratifying is free, and every query is stratified."""
    name, q, r = side
    index = graphs[r].index
    if not (request.approximate and index is not None and index.supports_queries):
        return hubness_bins(graphs[q].occurrence, upper.k), None, None, None
    phase = phase_one(ctx.sets[q].n, request, [ctx.seed, SIDES.index(side), 2])
    occurrence = graphs[q].occurrence
    strata = hubness_bins(occurrence if phase is None else np.asarray(occurrence)[phase], upper.k)
    part = "" if phase is None else f", a phase one of {phase.size:,} of {ctx.sets[q].n:,}"
    with ctx.stage(f"{name}: approximate membership ({q} → {r} {graphs[r].backend} index{part})"):
        x = ctx.sets[q].numpy_rows(keep_float16=index.accepts_float16)
        dist, idx, squared = _search_phase(index, x, phase, min(APPROX_NEIGHBOURS, ctx.sets[r].n))
        approx = approximate_hits(dist, idx, squared, upper.upper2)
        del x
    return strata * 2 + approx.astype(np.int64), approx, np.asarray(idx, dtype=np.int64), phase


def side_design(
    ctx: RunContext,
    graphs: dict[str, SetGraph],
    side: tuple[str, str, str],
    k: int,
    request: SampleRequest,
    reuse: Optional[SideDesign] = None,
) -> SideDesign:
    """The upper radii, strata and near points of one of :data:`SIDES`. The projection screen is built after
    the approximate membership, which does not use it: its n × m projections and the search's buffers are never
    held at once (at 1.5M × 4096 that was the run's anonymous-memory peak). ``reuse``: a design of the same
    side and graphs whose radii (true ones computed so far included) and screen are kept; its phase one and
    strata are drawn anew from the context's seed (a coverage study over seeds)."""
    name, _, r = side
    upper = graphs[r].upper(ctx.engine, ctx.prepared[r], k) if reuse is None else reuse.upper
    strata, approx, near, phase = _strata(ctx, graphs, side, upper, request)
    report = None if reuse is None else reuse.screen
    if upper.screen is None and not upper.is_exact and request.screen is not False:
        with ctx.stage(f"{request.label}{name}: projection screen of the {r} balls (pilot, then every {r} point)"):
            upper.screen, report = build_screen(ctx.engine, ctx.prepared[r], upper.upper2, request.screen, ctx.seed)
    return SideDesign(upper, strata, approx, near, screen=report, phase=phase)


def sample_side(
    ctx: RunContext,
    design: SideDesign,
    side: tuple[str, str, str],
    request: SampleRequest,
    engine: Optional[TileEngine] = None,
) -> SideEstimate:
    """One side's estimate from its design, seeded by the context's seed and the side (``engine``: that of the
    exact decisions, by default the context's)."""
    name, q, _ = side
    with ctx.stage(f"{request.label}{name}: exact membership of sampled {q} queries"):
        seed = [ctx.seed, SIDES.index(side)]
        est = estimate_side(engine or ctx.engine, ctx.prepared[q], design, request, seed, ctx.strict)
    est.approximate = None if design.approx is None else float(np.mean(design.approx))
    if design.screen is not None:
        screen = design.upper.screen
        est.screen = {
            **dataclasses.asdict(design.screen),
            "share": None if screen is None else screen.share,
        }
    return est


def sample_both(
    ctx: RunContext,
    graphs: dict[str, SetGraph],
    k: int,
    request: SampleRequest,
    engine: Optional[TileEngine] = None,
) -> dict[str, SideEstimate]:
    """Sampled estimates of precision and recall from the two sets' graphs (``engine``: that of the exact
    decisions, by default the context's). A side's projection screen (n × m bfloat16 values) is released once
    its queries are decided: the graphs, and their upper radii, outlive it."""
    out = {}
    for side in SIDES:
        design = side_design(ctx, graphs, side, k, request)
        out[side[0]] = sample_side(ctx, design, side, request, engine)
        design.upper.screen = None
        del design  # its strata and near points (n × 8 indices) before the next side's are made
    return out


def side_sampling(e: SideEstimate) -> SideSampling:
    """The typed, JSON-ready record of one side's estimate."""
    est = e.estimate
    return SideSampling(
        estimate=est.value,
        interval=est.interval,
        half_width=est.half_width,
        sample_size=est.sample_size,
        population=est.population,
        phase_one=est.phase_one,
        strata=e.strata,
        approximate_membership=e.approximate,
        true_radii_computed=e.n_true_radii,
        screen=e.screen,
        candidates=e.candidates,
        scans=e.scans,
        pilot=e.pilot,
    )


def revised_after_pilots(predicted: dict[str, float], est: dict[str, SideEstimate]) -> dict[str, float]:
    """The prediction made again once both pilots had run: each side's exact decisions take its pilot's
    seconds per query times the queries the pilot asked for (the whole sample, the pilot's own included);
    the other stages keep the up-front model. Empty where a side had no pilot (a sample given as a count)."""
    if not predicted:
        return {}
    total = 0.0
    for e in est.values():
        if e.pilot is None or not e.pilot["queries"]:
            return {}
        total += e.pilot["seconds"] / e.pilot["queries"] * e.estimate.sample_size
    return {**predicted, "sampled membership": total}


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
        params={**graphs["real"].params, "decision_precision": choice.precision},
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
        choice = plan_sampled(
            ctx.sets,
            spec.k,
            spec.backend,
            spec.sample.size,
            spec.sample.confidence,
            ctx.device,
            frozenset(ctx.known),
            ctx.engine.precision,
        )
        if ctx.engine.world:  # the rates are measured on each rank: every rank takes rank 0's plan
            choice = Choice(**ctx.engine.world.first(dataclasses.asdict(choice)))
    if choice.path == "exact":
        return _exact_instead(ctx, spec, choice)
    graphs = {}
    for name, fs in ctx.sets.items():
        request = GraphRequest(choice.backends[name], "sampled", spec.k, ctx.seed, spec.backend_options, choice.reason)
        known = ctx.known_graph(name, spec.k)
        graphs[name] = known or build_graph(ctx.engine, fs, ctx.prepared[name], request, ctx.prof, ctx.progress)
    est = sample_both(ctx, graphs, spec.k, spec.sample, ctx.engine.at_precision(choice.precision))
    kr = KResult(k=spec.k, precision=est["precision"].estimate.value, recall=est["recall"].estimate.value)
    plan = graph_plan("sampled", graphs, choice)
    plan.revised = revised_after_pilots(plan.predicted, est)
    return Outcome(
        "sampled",
        {spec.k: kr},
        sum(e.n_true_radii for e in est.values()),
        plan=plan,
        sampling={side: side_sampling(e) for side, e in est.items()},
        confidence=spec.sample.confidence,
    )
