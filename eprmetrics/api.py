"""The public entry points: validate every option once, build the run context, delegate, assemble.

* :func:`compute_pr` — exact P&R (:mod:`eprmetrics.estimators.exact`);
* :func:`compute_epr` — the fast methods: the sampled estimator with intervals
  (:mod:`eprmetrics.estimators.sampled`) or the thesis's hub method, audited
  (:mod:`eprmetrics.estimators.hubness`).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union, cast

import torch

from .defaults import DEFAULTS
from .engine import FeatureSet, World, call_options, fingerprint
from .estimators import (
    FAST_METHODS,
    RADII_MODES,
    EngineOptions,
    ExactSpec,
    HubSpec,
    RunContext,
    SampledSpec,
    SampleRequest,
    assemble,
    run_exact,
    run_hubness,
    run_sampled,
)
from .inputs import FeaturesLike, ImageOptions, resolve_pair
from .manifold import Manifold
from .neighbours import RadiiState, get_backend
from .profiling import Profiler
from .result import Result
from .validation import (
    check_audit,
    check_bool,
    check_choice,
    check_confidence,
    check_int,
    check_k,
    check_sample_size,
    check_single_k,
)

__all__ = ["compute_pr", "compute_epr"]

RealLike = Union[FeaturesLike, Manifold]


def _context(
    real: Any, fake: Any, k_max: int, images: ImageOptions, options: EngineOptions, seed: int = 0
) -> RunContext:
    """The call's context, its inputs resolved in a timed stage of their own (opening files, features from
    images, and the checks: at 1.5M × 4096 per set the finite-value check alone reads 24.6 GB)."""
    prof = Profiler(cast(torch.device, options.device))
    with prof.stage("inputs (read and checked; features from images)"):
        # Sharing ranks check that they read the same inputs (an error on one rank is raised on all).
        real_fs, fake_fs, known = World.current().settle(
            lambda: _resolve(real, fake, k_max, images, options),
            lambda sets: {**fingerprint(sets[0]), **fingerprint(sets[1])},
        )
    return RunContext.build(real_fs, fake_fs, options, seed, known, prof)


def _resolve(
    real: Any, fake: Any, k_max: int, images: ImageOptions, options: EngineOptions
) -> tuple[FeatureSet, FeatureSet, dict[str, RadiiState]]:
    """Both sets of a call, and the radii known before it (a reference manifold passed as ``real``)."""
    device = cast(torch.device, options.device)
    if isinstance(fake, Manifold):
        raise TypeError(
            "fake: got a Manifold, which holds a real set's radii; pass it as real= and the features or images "
            "to evaluate as fake="
        )
    if isinstance(real, Manifold):
        return real.pair_with(fake, k_max, images, device, options.progress)
    return (*resolve_pair(real, fake, k_max, images, device, options.progress), {})


def compute_pr(
    real: RealLike,
    fake: FeaturesLike,
    *,
    k: Union[int, Sequence[int]] = DEFAULTS["k"],
    strict: bool = DEFAULTS["strict"],
    device: Union[str, torch.device] = DEFAULTS["device"],
    memory_budget: Optional[int] = DEFAULTS["memory_budget"],
    density_coverage: bool = DEFAULTS["density_coverage"],
    realism: bool = DEFAULTS["realism"],
    error_bound: str = DEFAULTS["error_bound"],
    precision: str = DEFAULTS["precision"],
    extractor: Any = DEFAULTS["extractor"],
    weights: Optional[str] = None,
    batch_size: int = DEFAULTS["batch_size"],
    num_workers: int = DEFAULTS["num_workers"],
    cache_dir: Optional[str] = None,
    save_features: Optional[str] = None,
    on_error: str = DEFAULTS["on_error"],
    progress: Optional[bool] = None,
    distributed: bool = False,
    process_group: Any = None,
    distributed_timeout: float = DEFAULTS["distributed_timeout"],
) -> Result:
    """Exact precision & recall (Kynkäänniemi et al., 2019) of ``fake`` against ``real``.

    ``precision = mean_g 1[∃ r: ‖g − r‖ ≤ r_k(r)]`` and
    ``recall = mean_r 1[∃ g: ‖r − g‖ ≤ r_k(g)]``, where ``r_k(x)`` is the distance
    from ``x`` to its k-th nearest other point of its own set. Decisions equal a
    float64 brute force: borderline fp32 cases are re-checked in float64.

    Args:
        real: real features, n_real × d (numpy, torch, or a ``.npy``/``.npz`` path), or a
            :class:`~eprmetrics.Manifold` fitted on them once (its radii replace the real self pass;
            identical numbers).
        fake: generated features, n_fake × d.
        k: neighbourhood size, or several (e.g. ``(3, 5, 10)``) computed in one pass;
            the first is the headline value.
        strict: use ``<`` instead of ``≤`` for ball membership (the ``prdc`` package's rule).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        memory_budget: bytes the tiles' workspace may use; default half of free CUDA memory, or
            1/8 of available RAM capped at 1 GiB. Inputs, k-NN graphs and ANN indexes come on top;
            ``Result.stages`` reports the peak RSS and RSS growth of every stage.
        density_coverage: also compute density and coverage (Naeem et al., 2020).
        realism: also return the realism score of every fake sample (first k).
        error_bound: how fp32 rounding is bounded when deciding which cases to
            re-check in float64: ``"probabilistic"`` (Higham & Mary; fails with
            probability < 1e-16 per run) or ``"worst-case"`` (holds for any
            summation order; re-checks far more points). See
            :func:`eprmetrics.engine.rounding_factor`.
        precision: GEMM precision: ``"fp32"`` (default), ``"tf32"`` (CUDA tensor
            cores; fp32 on other devices) or ``"bf16"``. The rounding bound widens
            with it, so decisions stay exact and more of them are re-checked in
            float64 (``n_redecided``).
        extractor, weights, batch_size, num_workers, cache_dir, save_features, on_error:
            for image inputs (a folder, ``.zip``, list of image files, or uint8
            images N×3×H×W / N×H×W×3): the feature network (``"vgg16"`` fc2,
            ``"inception"`` pool3, or an ``nn.Module``), an offline state-dict
            file, DataLoader settings, an opt-in feature cache folder, a folder
            to keep ``real.npy``/``fake.npy``, and ``"raise"``/``"skip"`` for
            unreadable images. See :func:`eprmetrics.features.extract_features`.
        progress: tqdm progress bars: True, False, or None (default) for a bar on a terminal when
            the work lasts longer than a few seconds (tqdm's convention).
        distributed: share the work over the ranks of the default ``torch.distributed`` process group
            (every rank calls with the same data and options, every rank gets the single-process result;
            ``memory_budget`` may differ, the smallest is used). False (default): this process alone, even
            when a process group is initialised. See :mod:`eprmetrics.engine.distributed`.
        process_group: share the work over this ``torch.distributed`` group instead (implies ``distributed``).
        distributed_timeout: seconds a distributed call waits for every rank to join it before raising.

    Returns:
        :class:`Result` with values, counts, per-stage time and peak memory.

    Raises:
        ValueError: bad shapes, dimensions, non-finite values, too few samples for k.
        TypeError: an unsupported input type.

    Example:
        >>> import numpy as np
        >>> from eprmetrics import compute_pr
        >>> rng = np.random.default_rng(0)
        >>> real = rng.normal(size=(500, 16)).astype("float32")
        >>> res = compute_pr(real, real[:250], k=3)
        >>> res.precision, res.recall < 1.0
        (1.0, True)
    """
    params = dict(locals())  # the call's arguments, which sharing ranks compare
    world = World.of(distributed, process_group, distributed_timeout)
    spec = ExactSpec(check_k(k), check_bool(density_coverage, "density_coverage"), check_bool(realism, "realism"))
    options = EngineOptions(strict, device, memory_budget, error_bound, precision, progress)
    images = ImageOptions(extractor, weights, batch_size, num_workers, cache_dir, save_features, on_error)
    with world.joined(call_options("compute_pr", params)):
        ctx = _context(real, fake, max(spec.ks), images, options)
        return assemble(ctx, ctx.run(lambda c: run_exact(c, spec)))


def compute_epr(
    real: RealLike,
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
    screen: Union[str, bool] = DEFAULTS["screen"],
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
    progress: Optional[bool] = None,
    distributed: bool = False,
    process_group: Any = None,
    distributed_timeout: float = DEFAULTS["distributed_timeout"],
) -> Result:
    """Fast P&R: the sampled estimator with confidence intervals (default), or the thesis's hub method.

    ``method="sampled"`` (default): a stratified random sample of queries (strata: hubness
    and an ANN-based approximate membership) is decided *exactly* against every
    reference ball; the estimate is unbiased and comes with ``precision_ci`` /
    ``recall_ci`` (finite-population corrected). Radii come from the k-NN graph
    as upper bounds; the true radius of a ball is computed only when a sampled
    query falls inside its upper bound. A planner (:mod:`eprmetrics.estimators.planner`)
    predicts the cost of this and of exact P&R from a short measurement of the machine;
    where exact is cheaper (small sets) it computes the exact answer and returns it with
    zero-width intervals. ``res.plan`` says which path ran, why, and its predicted and
    measured cost per stage.

    ``method="hubness"`` (thesis Eqs. 4.4–4.5), for comparison with published eP&R figures:
    ``precision_hub = mean_{g ∈ H(G)} 1[∃ r ∈ H(R): ‖g − r‖ ≤ r_k(r; R)]`` and
    symmetrically for recall, where ``H(S) = {x : N_k(x) ≥ t}`` are the hubs of
    ``S`` found from a (possibly approximate) k-NN graph and each hub's radius is
    measured against the *full* set. Its error is data-dependent, so a sampled
    audit (below) is attached and warns when it disagrees.

    Args:
        real, fake: features as for :func:`~eprmetrics.compute_pr` (``real`` may be a
            :class:`~eprmetrics.Manifold`: its exact graph serves as the real set's, no real graph is built).
        method: ``"sampled"`` (default) or ``"hubness"``.
        k: neighbourhood size for hubness and radii (one value).
        t: hub threshold on the k-occurrence ``N_k`` (hubness method).
        backend: k-NN backend: ``"auto"`` (sampled: the planner's choice; hubness:
            :func:`eprmetrics.neighbours.ann.resolve_backend`; recorded on the result) or a registered
            name (:func:`eprmetrics.neighbours.backend_names`), which also makes the sampled method sample.
        radii: hubness method only: ``"exact"`` — hub radii from a tiled hub-vs-all
            pass — or ``"ann"`` — radii read off the ANN graph (a backend that
            misses neighbours makes radii larger).
        sample_size: sampled method: queries drawn per set (int), or the target
            half-width of the intervals (float in (0, 1); default 0.01): a pilot of
            1,000 queries per set sizes the sample. At least the whole set gives
            the exact values with zero-width intervals.
        confidence: level of the intervals.
        audit: hubness method: queries per set of the sampled audit (``True``: the
            default 800), or ``False`` to skip it.
        seed: seeds index training and sampling. With a named ``backend`` the same seed gives the
            same estimate at any thread count; ``"auto"`` lets the planner's timings choose the backend
            (and path), so name ``res.backend`` to repeat a run exactly elsewhere.
        screen: how sampled queries are decided against every ball: ``"auto"`` (default) projects each
            reference set on its leading principal directions and skips, with proof, the balls and
            points a projected distance rules out — when a pilot shows few pairs pass
            (:mod:`eprmetrics.neighbours.screen`); ``True`` always, ``False`` never (full rows). The
            decisions are exact either way; only their cost differs.
        strict, device, memory_budget, error_bound, precision, progress: as for :func:`~eprmetrics.compute_pr`.
        distributed, process_group, distributed_timeout: sharing the work over torch.distributed ranks, as for
            :func:`~eprmetrics.compute_pr`.
        backend_options: parameters for the backend (e.g. ``{"efSearch": 256}``).
        extractor, weights, batch_size, num_workers, cache_dir, save_features, on_error:
            image inputs, as for :func:`~eprmetrics.compute_pr`.

    Returns:
        :class:`Result` with ``method="hubness"`` (hub counts and ``audit``)
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
        >>> res = compute_epr(real, fake)                       # small sets: the planner computes exactly
        >>> res.plan.path, res.precision_ci[1] - res.precision_ci[0]
        ('exact', 0.0)
        >>> res = compute_epr(real, fake, backend="ivf-gemm", sample_size=300)   # a sample, with intervals
        >>> res.plan.path, res.precision_ci[0] < res.precision < res.precision_ci[1]
        ('sampled', True)
        >>> res = compute_epr(real, fake, method="hubness", backend="exact", t=0)   # every point a hub
        >>> res.method, res.hubs["real"].fraction
        ('hubness', 1.0)
    """
    params = dict(locals())  # the call's arguments, which sharing ranks compare
    world = World.of(distributed, process_group, distributed_timeout)
    check_choice(method, "method", FAST_METHODS, "or use compute_pr for exact values")
    k, t = check_single_k(k), check_int(t, "t", minimum=0, fix="hubs are the points with N_k ≥ t, e.g. t=3")
    check_choice(radii, "radii", RADII_MODES)
    if backend != "auto":
        get_backend(backend)
    if backend_options is not None and not isinstance(backend_options, dict):
        raise TypeError(
            f"backend_options: expected a dict of backend parameters or None, got "
            f"{type(backend_options).__name__}; e.g. backend_options={{'nprobe': 32}}"
        )
    if not (screen == "auto" or screen is True or screen is False):
        raise ValueError(f"screen: expected 'auto', True or False, got {screen!r}; e.g. screen=False for full rows")
    sample = SampleRequest(check_sample_size(sample_size), check_confidence(confidence), screen=screen)
    audit_size = check_audit(audit, DEFAULTS["audit_size"])
    check_int(seed, "seed", minimum=0)
    options = EngineOptions(strict, device, memory_budget, error_bound, precision, progress)
    images = ImageOptions(extractor, weights, batch_size, num_workers, cache_dir, save_features, on_error)
    with world.joined(call_options("compute_epr", params)):
        ctx = _context(real, fake, k, images, options, seed)
        if method == "sampled":
            smp = SampledSpec(k, backend, backend_options, sample)
            return assemble(ctx, ctx.run(lambda c: run_sampled(c, smp)))
        hub = HubSpec(k, t, backend, radii, backend_options, audit_size, sample.confidence, screen)
        return assemble(ctx, ctx.run(lambda c: run_hubness(c, hub)))
