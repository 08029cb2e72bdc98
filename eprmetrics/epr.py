"""Fast P&R: the thesis's hub method (eP&R) with its audit, and the sampled estimator.

Both start from a k-NN graph of each set (an ANN backend, or the exact tiled
pass for small sets):

* ``method="hubness"`` (thesis Eqs. 4.4–4.5): P&R over the hubs only, hub radii
  against the full set. Fast, but its error is data-dependent and unknown, so a
  small sampled estimate with its interval rides along (``audit``) and a
  :class:`AuditWarning` fires when the hub value falls outside it.
* ``method="sampled"``: an unbiased stratified estimate with a confidence
  interval (:mod:`eprmetrics.sampled`).
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Optional, Union

import numpy as np
import torch

from .ann import ANNBackend, as_float32_rows, get_backend, resolve_backend
from .ann.base import finish_graph
from .api import _ImageOptions, _matmul_precision, _progress, _setup
from .defaults import DEFAULTS
from .hubs import hub_mask, hub_stats, k_occurrence
from .inputs import FeatureSet, FeaturesLike
from .metrics import GivenRadii, Radii, exact_membership
from .profiling import Profiler
from .result import KResult, Result
from .sampled import SideEstimate, UpperRadii, approximate_hits, estimate_side
from .sampling import check_confidence, check_sample_size
from .tiles import Prepared, TileEngine

__all__ = ["compute_epr", "AuditWarning", "METHODS", "RADII_MODES"]

METHODS = ("hubness", "sampled")
RADII_MODES = ("exact", "ann")
# Reference points found per query by the ANN search behind the approximate membership.
APPROX_NEIGHBOURS = 8


class AuditWarning(UserWarning):
    """The hub-method value lies outside the interval of its sampled audit."""


@dataclasses.dataclass
class _Graph:
    """What the k-NN graph of one set yields."""

    backend: str
    reason: str
    params: dict[str, Any]
    occurrence: np.ndarray
    full: Optional[Radii] = None  # exact backend: every radius, exactly
    dist: Optional[np.ndarray] = None  # ANN backend: distances and indices of the k found
    idx: Optional[np.ndarray] = None
    index: Optional[ANNBackend] = None
    _upper: Optional[UpperRadii] = None

    def upper(self, engine: TileEngine, p: Prepared, k: int) -> UpperRadii:
        if self._upper is None:
            nb = None if self.idx is None else torch.from_numpy(self.idx)
            self._upper = UpperRadii(engine, p, k, neighbours=nb, exact=self.full)
        return self._upper


def _graph(name: str, fs: FeatureSet, p: Prepared, engine: TileEngine, backend: str, mode: str, k: int, seed: int,
           options: Optional[dict[str, Any]], prof: Profiler, progress: bool) -> _Graph:
    chosen, reason = resolve_backend(backend, fs.n, fs.dim, engine.device, mode)
    if chosen == "exact":
        # One symmetric pass gives the exact graph and every radius at once.
        with prof.stage(f"{name}: exact k-NN graph (distances + top-k → radii, hubs)"), \
                _progress(progress, fs.n, f"k-NN {name}") as bar:
            full = Radii(engine, p, k, progress=bar.update if bar else None)
            return _Graph(chosen, reason, {}, k_occurrence(full.neighbours(k), fs.n), full=full)
    impl = get_backend(chosen)(**(options or {}))
    x = as_float32_rows(fs.data, name, keep_float16=impl.accepts_float16)
    impl.used_params = impl.resolve_params(*x.shape)
    with prof.stage(f"{name}: subspace construction ({chosen} build)"):
        impl.build(x, seed=seed, device=engine.device)
    with prof.stage(f"{name}: approximate k-NN graph ({chosen} search, k-occurrence)"):
        dist, idx, squared = impl.search(x, k + 1)
        dist, idx = finish_graph(np.asarray(dist), np.asarray(idx), k, squared)
    return _Graph(chosen, reason, impl.used_params, k_occurrence(idx, fs.n), dist=dist, idx=idx, index=impl)


def _hubs_of(name: str, occurrence: np.ndarray, t: int) -> torch.Tensor:
    hubs = np.flatnonzero(hub_mask(occurrence, t))
    if hubs.size == 0:
        raise ValueError(f"{name}: no hubs at t={t} (largest k-occurrence is {int(occurrence.max())}); use a lower t")
    return torch.from_numpy(hubs)


# (side, query set, reference set)
_SIDES = (("precision", "fake", "real"), ("recall", "real", "fake"))


def _sampled(engine: TileEngine, sets: dict[str, FeatureSet], prepared: dict[str, Prepared], graphs: dict[str, _Graph],
             k: int, *, strict: bool, sample_size: Union[int, float], confidence: float, seed: int,
             approximate: bool, prof: Profiler, label: str) -> dict[str, SideEstimate]:
    """Sampled estimates of precision and recall from the two graphs."""
    out = {}
    for j, (side, q, r) in enumerate(_SIDES):
        upper = graphs[r].upper(engine, prepared[r], k)
        approx = None
        index = graphs[r].index
        if approximate and index is not None and index.supports_queries:
            with prof.stage(f"{side}: approximate membership ({q} → {r} {graphs[r].backend} index)"):
                x = as_float32_rows(sets[q].data, q, keep_float16=index.accepts_float16)
                approx = approximate_hits(*index.search_queries(x, min(APPROX_NEIGHBOURS, sets[r].n)), upper.upper2)
                del x
        with prof.stage(f"{label}{side}: exact membership of sampled {q} queries"):
            out[side] = estimate_side(engine, prepared[q], upper, graphs[q].occurrence, approx, strict=strict,
                                      sample_size=sample_size, confidence=confidence, seed=[seed, j])
    return out


def _sampling_info(est: dict[str, SideEstimate]) -> dict[str, Any]:
    return {side: {"estimate": e.estimate.value, "interval": list(e.estimate.interval),
                   "half_width": e.estimate.half_width, "sample_size": e.estimate.sample_size,
                   "population": e.estimate.population, "strata": e.strata,
                   "approximate_membership": e.approximate, "true_radii_computed": e.n_true_radii}
            for side, e in est.items()}


def compute_epr(
    real: FeaturesLike,
    fake: FeaturesLike,
    *,
    method: str = DEFAULTS["method"],
    k: int = DEFAULTS["k"],
    t: int = DEFAULTS["t"],
    backend: str = DEFAULTS["backend"],
    radii: str = DEFAULTS["radii"],
    sample_size: Union[int, float] = DEFAULTS["sample_size"],
    confidence: float = DEFAULTS["confidence"],
    audit: Union[bool, int] = DEFAULTS["audit"],
    seed: int = DEFAULTS["seed"],
    strict: bool = DEFAULTS["strict"],
    device: Union[str, torch.device] = DEFAULTS["device"],
    memory_budget: Optional[int] = DEFAULTS["memory_budget"],
    error_bound: str = DEFAULTS["error_bound"],
    precision: str = DEFAULTS["precision"],
    backend_options: Optional[dict[str, Any]] = None,
    extractor: Any = DEFAULTS["extractor"],
    weights: Optional[str] = None,
    batch_size: int = DEFAULTS["batch_size"],
    num_workers: int = DEFAULTS["num_workers"],
    cache_dir: Optional[str] = None,
    save_features: Optional[str] = None,
    on_error: str = DEFAULTS["on_error"],
    progress: bool = False,
) -> Result:
    """Fast P&R: the hub method (eP&R, audited) or the sampled estimator with confidence intervals.

    ``method="hubness"`` (thesis Eqs. 4.4–4.5):
    ``precision_hub = mean_{g ∈ H(G)} 1[∃ r ∈ H(R): ‖g − r‖ ≤ r_k(r; R)]`` and
    symmetrically for recall, where ``H(S) = {x : N_k(x) ≥ t}`` are the hubs of
    ``S`` found from a (possibly approximate) k-NN graph and each hub's radius is
    measured against the *full* set. Its error is data-dependent, so a sampled
    audit (below) is attached and warns when it disagrees.

    ``method="sampled"``: a stratified random sample of queries (strata: hubness
    and an ANN-based approximate membership) is decided *exactly* against every
    reference ball; the estimate is unbiased and comes with ``precision_ci`` /
    ``recall_ci`` (finite-population corrected). Radii come from the k-NN graph
    as upper bounds; the true radius of a ball is computed only when a sampled
    query falls inside its upper bound.

    Args:
        real, fake: features as for :func:`~eprmetrics.compute_pr`.
        method: ``"hubness"`` or ``"sampled"``.
        k: neighbourhood size for hubness and radii (one value).
        t: hub threshold on the k-occurrence ``N_k`` (hubness method).
        backend: k-NN backend: ``"auto"`` (see :func:`eprmetrics.ann.resolve_backend`;
            recorded on the result) or a registered name (:func:`eprmetrics.ann.backend_names`).
        radii: hubness method only: ``"exact"`` — hub radii from a tiled hub-vs-all
            pass — or ``"ann"`` — radii read off the ANN graph (a backend that
            misses neighbours makes radii larger).
        sample_size: sampled method: queries drawn per set (int), or the target
            half-width of the intervals (float in (0, 1); default 0.01): a pilot of
            1,000 queries per set sizes the sample. At least the whole set gives
            the exact values with zero-width intervals.
        confidence: level of the intervals.
        audit: hubness method: queries per set of the sampled audit (``True``: the
            default 1,000), or ``False`` to skip it.
        seed: seeds index training and sampling.
        strict, device, memory_budget, error_bound, precision, progress: as for :func:`~eprmetrics.compute_pr`.
        backend_options: parameters for the backend (e.g. ``{"efSearch": 256}``).
        extractor, weights, batch_size, num_workers, cache_dir, save_features, on_error:
            image inputs, as for :func:`~eprmetrics.compute_pr`.

    Returns:
        :class:`Result` with ``method="epr"`` (hubness: hub counts and ``audit``)
        or ``method="sampled"`` (``precision_ci``, ``recall_ci``, ``sampling``),
        backend and per-stage time and memory.

    Raises:
        ValueError: bad options or inputs, or no hubs at ``t`` (use a lower ``t``).
        ModuleNotFoundError: the backend's library is missing (names the extra).

    Warns:
        AuditWarning: the hub value lies outside the audit's interval.

    Example:
        >>> from eprmetrics import compute_epr
        >>> from eprmetrics.synthetic import make_pair
        >>> real, fake = make_pair(600, 600, dim=32, seed=1)
        >>> res = compute_epr(real, fake, backend="exact", t=0)   # every point a hub: exact P&R
        >>> res.method, res.hubs["real"]["fraction"]
        ('epr', 1.0)
        >>> res = compute_epr(real, fake, method="sampled", sample_size=600)   # everything sampled
        >>> res.precision_ci[1] - res.precision_ci[0]
        0.0
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive int (eP&R uses one k), got {k!r}")
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise ValueError(f"t: expected a non-negative int, got {t!r}")
    if radii not in RADII_MODES:
        raise ValueError(f"radii: expected one of {RADII_MODES}, got {radii!r}")
    if not isinstance(backend, str):
        raise ValueError(f"backend: expected a name such as 'auto' or 'faiss-hnsw', got {backend!r}")
    if backend != "auto":
        get_backend(backend)
    check_sample_size(sample_size)
    confidence = check_confidence(confidence)
    if isinstance(audit, bool):
        audit = DEFAULTS["audit_size"] if audit else 0
    elif not isinstance(audit, int) or audit < 0:
        raise ValueError(f"audit: expected True, False or a number of queries per set, got {audit!r}")
    images = _ImageOptions(extractor, weights, batch_size, num_workers, cache_dir, save_features, on_error)
    dev, real_fs, fake_fs, engine = _setup(real, fake, k, strict, memory_budget, error_bound, precision, device, images,
                                           progress)
    sets = {"real": real_fs, "fake": fake_fs}
    mode = "sampled" if method == "sampled" else radii

    def run() -> tuple:
        prof = Profiler(dev)
        with _matmul_precision(engine), torch.inference_mode():
            with prof.stage("prepare (centre, norms)"):
                center = engine.center_of(real_fs)
                prepared = {name: engine.prepare(fs, center) for name, fs in sets.items()}
            graphs = {name: _graph(name, fs, prepared[name], engine, backend, mode, k, seed, backend_options, prof,
                                   progress) for name, fs in sets.items()}
            if method == "sampled":
                est = _sampled(engine, sets, prepared, graphs, k, strict=strict, sample_size=sample_size,
                               confidence=confidence, seed=seed, approximate=True, prof=prof, label="")
                precision_, recall_ = est["precision"].estimate, est["recall"].estimate
                kr = KResult(k=k, precision=precision_.value, recall=recall_.value)
                extra = dict(method="sampled", precision_ci=precision_.interval, recall_ci=recall_.interval,
                             confidence=confidence, sampling=_sampling_info(est),
                             n_redecided=sum(e.n_true_radii for e in est.values()))
            else:
                kr, extra = _hubness(engine, sets, prepared, graphs, k, t, radii, strict, prof, progress)
                if audit:
                    est = _sampled(engine, sets, prepared, graphs, k, strict=strict, sample_size=audit,
                                   confidence=confidence, seed=seed, approximate=False, prof=prof, label="audit: ")
                    extra["audit"] = _audit(kr, est, confidence)
        return prof, graphs, kr, extra

    prof, graphs, kr, extra = engine.run_shrinking(run)

    used = {name: g.backend for name, g in graphs.items()}
    return Result(
        precision=kr.precision, recall=kr.recall, k=k, n_real=real_fs.n, n_fake=fake_fs.n, dim=real_fs.dim,
        per_k={k: kr}, strict=strict, device=str(dev), memory_budget=engine.memory_budget, tile=engine.tile,
        error_bound=error_bound, gemm_precision=engine.precision, stages=prof.stages,
        backend=used["real"] if len(set(used.values())) == 1 else f"{used['real']}+{used['fake']}",
        backend_reason=graphs["real"].reason, backend_params=graphs["real"].params, **extra)


def _hubness(engine: TileEngine, sets: dict[str, FeatureSet], prepared: dict[str, Prepared],
             graphs: dict[str, _Graph], k: int, t: int, radii: str, strict: bool, prof: Profiler,
             progress: bool) -> tuple[KResult, dict[str, Any]]:
    hub_radii, hub_info = {}, {}
    for name, g in graphs.items():
        p = prepared[name]
        hubs = _hubs_of(name, g.occurrence, t).to(engine.device)
        if g.full is not None:
            hub_radii[name] = g.full.restrict(hubs)
        elif radii == "exact":
            with prof.stage(f"{name}: hub-vs-all distances + top-k → radii"), \
                    _progress(progress, hubs.numel(), f"hub radii {name}") as bar:
                hub_radii[name] = Radii(engine, p, k, progress=bar.update if bar else None,
                                        owners=engine.subset(p, hubs), owner_ids=hubs)
        else:
            r2 = torch.from_numpy(g.dist[hubs.cpu().numpy(), k - 1]).to(engine.device, torch.float64) ** 2
            hub_radii[name] = GivenRadii(engine.subset(p, hubs), {k: r2})
        stats = hub_stats(g.occurrence, t)
        hub_info[name] = {"n_hubs": stats.n_hubs, "fraction": stats.fraction, "backend": g.backend,
                          "reason": g.reason, "params": g.params, "max_k_occurrence": int(g.occurrence.max())}
    with prof.stage("hub↔hub distances + ratios"), _progress(progress, hub_radii["real"].p.n, "hub↔hub") as bar:
        member, _ = exact_membership(engine, hub_radii["real"], hub_radii["fake"], (k,), strict=strict,
                                     density_coverage=False, progress=bar.update if bar else None)
    m = member[k]
    kr = KResult(k=k, precision=float(m.precision_hits.double().mean()), recall=float(m.recall_hits.double().mean()))
    all_exact = all(g.backend == "exact" for g in graphs.values())
    return kr, dict(method="epr", t=t, radii="exact" if all_exact else radii, hubs=hub_info,
                    n_redecided=sum(r.n_redecided for r in hub_radii.values()) + m.n_redecided)


def _audit(kr: KResult, est: dict[str, SideEstimate], confidence: float) -> dict[str, Any]:
    out: dict[str, Any] = {"confidence": confidence, **_sampling_info(est)}
    outside = [(side, getattr(kr, side), e.estimate) for side, e in est.items()
               if not e.estimate.contains(getattr(kr, side))]
    out["consistent"] = not outside
    if outside:
        detail = "; ".join(f"{side} {v:.4f} vs sampled {e.value:.4f} "
                           f"[{e.interval[0]:.4f}, {e.interval[1]:.4f}]" for side, v, e in outside)
        warnings.warn(f"eP&R (hubness) lies outside the {100 * confidence:.0f}% interval of its sampled audit: "
                      f"{detail}. Use compute_epr(method='sampled') for an estimate with an interval, "
                      f"or compute_pr for exact values.", AuditWarning, stacklevel=5)
    return out
