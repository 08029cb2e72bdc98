"""Public entry points: inputs → tiled engine → metrics → :class:`Result`."""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from .ann import as_float32_rows, get_backend, resolve_backend
from .ann.base import finish_graph
from .defaults import DEFAULTS
from .features.images import is_image_input
from .hubs import hub_mask, hub_stats, k_occurrence
from .inputs import FeatureSet, FeaturesLike, as_feature_set, validate_pair
from .metrics import GivenRadii, Radii, exact_membership
from .profiling import Profiler
from .result import KResult, Result
from .tiles import ERROR_BOUNDS, TileEngine, default_memory_budget, resolve_device

__all__ = ["compute_pr", "compute_epr", "normalize_k", "RADII_MODES"]


def normalize_k(k: Union[int, Sequence[int]]) -> tuple[int, ...]:
    """``k`` as a tuple of distinct positive ints, in the order given."""
    ks = (k,) if isinstance(k, int) and not isinstance(k, bool) else tuple(k) if isinstance(k, (list, tuple)) else None
    if not ks or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in ks):
        raise ValueError(f"k: expected a positive int or a non-empty sequence of them, got {k!r}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"k: values must be distinct, got {k!r}")
    return ks


@dataclasses.dataclass
class _ImageOptions:
    """How image inputs become features (shared by both entry points)."""

    extractor: Any = DEFAULTS["extractor"]
    weights: Optional[str] = None
    batch_size: int = DEFAULTS["batch_size"]
    num_workers: int = DEFAULTS["num_workers"]
    cache_dir: Optional[str] = None
    save_features: Optional[str] = None
    on_error: str = DEFAULTS["on_error"]

    def open(self, value: Any, name: str) -> Any:
        """An :class:`~eprmetrics.features.ImageSource` for image inputs; other inputs pass through."""
        if isinstance(value, (str, os.PathLike)) and not os.path.exists(value):
            raise FileNotFoundError(f"{name}: no such file or directory: {os.fspath(value)!r}")
        if not is_image_input(value):
            return value
        from .features import as_image_source

        return as_image_source(value, name, self.on_error)

    def features(self, value: Any, name: str, device: torch.device, progress: bool) -> Any:
        """Features for an image input (folder, zip, file list, uint8 images); other inputs pass through."""
        if not is_image_input(value):
            return value
        from .features import extract_features

        save_to = None if self.save_features is None else os.path.join(os.fspath(self.save_features), f"{name}.npy")
        return extract_features(value, name=name, extractor=self.extractor, weights=self.weights, device=device,
                                batch_size=self.batch_size, num_workers=self.num_workers, cache_dir=self.cache_dir,
                                save_to=save_to, on_error=self.on_error, progress=progress)


def _setup(real: FeaturesLike, fake: FeaturesLike, k_max: int, strict: bool, memory_budget: Optional[int],
           error_bound: str, device: Union[str, torch.device], images: _ImageOptions, progress: bool
           ) -> tuple[torch.device, FeatureSet, FeatureSet, TileEngine]:
    """Validate the options and inputs shared by every entry point; build the tile engine."""
    if not isinstance(strict, bool):
        raise ValueError(f"strict: expected True or False, got {strict!r}")
    if memory_budget is not None and (isinstance(memory_budget, bool) or not isinstance(memory_budget, int)
                                      or memory_budget <= 0):
        raise ValueError(f"memory_budget: expected a positive int (bytes) or None, got {memory_budget!r}")
    if error_bound not in ERROR_BOUNDS:
        raise ValueError(f"error_bound: expected one of {ERROR_BOUNDS}, got {error_bound!r}")
    dev = resolve_device(device)
    # Open both image inputs (cheap checks: paths, empty folders) before the costly extraction.
    real, fake = images.open(real, "real"), images.open(fake, "fake")
    real = images.features(real, "real", dev, progress)
    fake = images.features(fake, "fake", dev, progress)
    real_fs, fake_fs = as_feature_set(real, "real"), as_feature_set(fake, "fake")
    validate_pair(real_fs, fake_fs, k_max)
    engine = TileEngine(real_fs.dim, dev, memory_budget or default_memory_budget(dev), error_bound=error_bound)
    return dev, real_fs, fake_fs, engine


@contextlib.contextmanager
def _fp32_matmul() -> Iterator[None]:
    """Exact fp32 GEMMs for the duration (no TF32/bf16 shortcuts): the error bound assumes them."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return contextlib.nullcontext(None)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", leave=False)


def compute_pr(
    real: FeaturesLike,
    fake: FeaturesLike,
    *,
    k: Union[int, Sequence[int]] = DEFAULTS["k"],
    strict: bool = DEFAULTS["strict"],
    device: Union[str, torch.device] = DEFAULTS["device"],
    memory_budget: Optional[int] = DEFAULTS["memory_budget"],
    density_coverage: bool = DEFAULTS["density_coverage"],
    realism: bool = DEFAULTS["realism"],
    error_bound: str = DEFAULTS["error_bound"],
    extractor: Any = DEFAULTS["extractor"],
    weights: Optional[str] = None,
    batch_size: int = DEFAULTS["batch_size"],
    num_workers: int = DEFAULTS["num_workers"],
    cache_dir: Optional[str] = None,
    save_features: Optional[str] = None,
    on_error: str = DEFAULTS["on_error"],
    progress: bool = False,
) -> Result:
    """Exact precision & recall (Kynkäänniemi et al., 2019) of ``fake`` against ``real``.

    ``precision = mean_g 1[∃ r: ‖g − r‖ ≤ r_k(r)]`` and
    ``recall = mean_r 1[∃ g: ‖r − g‖ ≤ r_k(g)]``, where ``r_k(x)`` is the distance
    from ``x`` to its k-th nearest other point of its own set. Decisions equal a
    float64 brute force: borderline fp32 cases are re-checked in float64.

    Args:
        real: real features, n_real × d (numpy, torch, or a ``.npy``/``.npz`` path).
        fake: generated features, n_fake × d.
        k: neighbourhood size, or several (e.g. ``(3, 5, 10)``) computed in one pass;
            the first is the headline value.
        strict: use ``<`` instead of ``≤`` for ball membership (the ``prdc`` package's rule).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        memory_budget: bytes a tile may use; default half of free CUDA memory, or
            1/8 of available RAM capped at 1 GiB.
        density_coverage: also compute density and coverage (Naeem et al., 2020).
        realism: also return the realism score of every fake sample (first k).
        error_bound: how fp32 rounding is bounded when deciding which cases to
            re-check in float64: ``"probabilistic"`` (Higham & Mary; fails with
            probability < 1e-16 per run) or ``"worst-case"`` (holds for any
            summation order; re-checks far more points). See
            :func:`eprmetrics.tiles.rounding_factor`.
        extractor, weights, batch_size, num_workers, cache_dir, save_features, on_error:
            for image inputs (a folder, ``.zip``, list of image files, or uint8
            images N×3×H×W / N×H×W×3): the feature network (``"vgg16"`` fc2,
            ``"inception"`` pool3, or an ``nn.Module``), an offline state-dict
            file, DataLoader settings, an opt-in feature cache folder, a folder
            to keep ``real.npy``/``fake.npy``, and ``"raise"``/``"skip"`` for
            unreadable images. See :func:`eprmetrics.features.extract_features`.
        progress: show tqdm progress bars.

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
    ks = normalize_k(k)
    images = _ImageOptions(extractor, weights, batch_size, num_workers, cache_dir, save_features, on_error)
    dev, real_fs, fake_fs, engine = _setup(real, fake, max(ks), strict, memory_budget, error_bound, device, images,
                                           progress)
    prof = Profiler(dev)
    k_max = max(ks)

    with _fp32_matmul(), torch.inference_mode():
        with prof.stage("prepare (centre, norms)"):
            center = engine.center_of(real_fs)
            real_p, fake_p = engine.prepare(real_fs, center), engine.prepare(fake_fs, center)
        radii = {}
        for name, p in (("real", real_p), ("fake", fake_p)):
            with prof.stage(f"{name}↔{name} distances + top-k → radii"), _progress(progress, p.n, f"radii {name}") as bar:
                radii[name] = Radii(engine, p, k_max, progress=bar.update if bar else None)
        with prof.stage("real↔fake distances + ratios"), _progress(progress, real_p.n, "real↔fake") as bar:
            member, realism_scores = exact_membership(
                engine, radii["real"], radii["fake"], ks, strict=strict,
                density_coverage=density_coverage, realism_k=ks[0] if realism else None,
                progress=bar.update if bar else None)

    per_k = {}
    for kk in ks:
        m = member[kk]
        per_k[kk] = KResult(
            k=kk,
            precision=float(m.precision_hits.double().mean()),
            recall=float(m.recall_hits.double().mean()),
            density=None if m.density_counts is None else float(m.density_counts.double().sum() / (kk * fake_fs.n)),
            coverage=None if m.coverage_hits is None else float(m.coverage_hits.double().mean()),
        )
    head = per_k[ks[0]]
    n_redecided = sum(v.n_redecided for v in radii.values()) + sum(m.n_redecided for m in member.values())
    return Result(
        precision=head.precision, recall=head.recall, k=ks[0], n_real=real_fs.n, n_fake=fake_fs.n,
        dim=real_fs.dim, per_k=per_k, method="exact", strict=strict, density=head.density,
        coverage=head.coverage, realism=None if realism_scores is None else realism_scores.cpu().numpy(),
        device=str(dev), memory_budget=engine.memory_budget, tile=engine.tile, n_redecided=n_redecided, error_bound=error_bound, stages=prof.stages,
    )


RADII_MODES = ("exact", "ann")


def _hubs_of(name: str, occurrence: np.ndarray, t: int) -> torch.Tensor:
    hubs = np.flatnonzero(hub_mask(occurrence, t))
    if hubs.size == 0:
        raise ValueError(f"{name}: no hubs at t={t} (largest k-occurrence is {int(occurrence.max())}); use a lower t")
    return torch.from_numpy(hubs)


def compute_epr(
    real: FeaturesLike,
    fake: FeaturesLike,
    *,
    k: int = DEFAULTS["k"],
    t: int = DEFAULTS["t"],
    backend: str = DEFAULTS["backend"],
    radii: str = DEFAULTS["radii"],
    seed: int = DEFAULTS["seed"],
    strict: bool = DEFAULTS["strict"],
    device: Union[str, torch.device] = DEFAULTS["device"],
    memory_budget: Optional[int] = DEFAULTS["memory_budget"],
    error_bound: str = DEFAULTS["error_bound"],
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
    """Efficient P&R (thesis Eqs. 4.4–4.5): P&R computed on hubs only.

    ``precision_hub = mean_{g ∈ H(G)} 1[∃ r ∈ H(R): ‖g − r‖ ≤ r_k(r; R)]`` and
    symmetrically for recall, where ``H(S) = {x : N_k(x) ≥ t}`` are the hubs of
    ``S`` found from a (possibly approximate) k-NN graph, and each hub's radius
    is measured against the *full* set.

    Args:
        real, fake: features as for :func:`compute_pr`.
        k: neighbourhood size for hubness and radii (one value).
        t: hub threshold on the k-occurrence ``N_k``.
        backend: k-NN backend for hub identification: ``"auto"`` (see
            :func:`eprmetrics.ann.resolve_backend`; recorded on the result) or a
            registered name (:func:`eprmetrics.ann.backend_names`).
        radii: ``"exact"`` — hub radii from a tiled hub-vs-all pass (exact
            decisions) — or ``"ann"`` — radii read off the ANN graph (skips that
            pass; a backend that misses neighbours makes radii larger).
        seed: seeds index training.
        strict, device, memory_budget, error_bound, progress: as for :func:`compute_pr`.
        backend_options: parameters for the backend (e.g. ``{"efSearch": 256}``).
        extractor, weights, batch_size, num_workers, cache_dir, save_features, on_error:
            image inputs, as for :func:`compute_pr`.

    Returns:
        :class:`Result` with ``method="epr"``, hub counts, backend and per-stage time and memory.

    Raises:
        ValueError: bad options or inputs, or no hubs at ``t`` (use a lower ``t``).
        ModuleNotFoundError: the backend's library is missing (names the extra).

    Example:
        >>> from eprmetrics import compute_epr
        >>> from eprmetrics.synthetic import make_pair
        >>> real, fake = make_pair(600, 600, dim=32, seed=1)
        >>> res = compute_epr(real, fake, backend="exact", t=0)   # every point a hub: exact P&R
        >>> res.method, res.hubs["real"]["fraction"]
        ('epr', 1.0)
    """
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
    images = _ImageOptions(extractor, weights, batch_size, num_workers, cache_dir, save_features, on_error)
    dev, real_fs, fake_fs, engine = _setup(real, fake, k, strict, memory_budget, error_bound, device, images, progress)
    prof = Profiler(dev)
    hub_radii, hub_info, used = {}, {}, {}

    with _fp32_matmul(), torch.inference_mode():
        with prof.stage("prepare (centre, norms)"):
            center = engine.center_of(real_fs)
            prepared = {"real": engine.prepare(real_fs, center), "fake": engine.prepare(fake_fs, center)}
        for name, fs in (("real", real_fs), ("fake", fake_fs)):
            p = prepared[name]
            chosen, reason = resolve_backend(backend, fs.n, fs.dim, dev, radii)
            used[name] = (chosen, reason)
            if chosen == "exact":
                # One symmetric pass gives the exact graph and every radius: no hub-vs-all pass needed.
                with prof.stage(f"{name}: exact k-NN graph (distances + top-k → radii, hubs)"), \
                        _progress(progress, fs.n, f"k-NN {name}") as bar:
                    full = Radii(engine, p, k, progress=bar.update if bar else None)
                    occ = k_occurrence(full.neighbours(k), fs.n)
                    hubs = _hubs_of(name, occ, t).to(dev)
                    hub_radii[name] = full.restrict(hubs)
                params: dict[str, Any] = {}
            else:
                impl = get_backend(chosen)(**(backend_options or {}))
                x = as_float32_rows(fs.data, name)
                impl.used_params = impl.resolve_params(*x.shape)
                params = impl.used_params
                with prof.stage(f"{name}: subspace construction ({chosen} build)"):
                    impl.build(x, seed=seed, device=dev)
                with prof.stage(f"{name}: approximate hubs ({chosen} search, k-occurrence)"):
                    dist, idx, squared = impl.search(x, k + 1)
                    dist, idx = finish_graph(np.asarray(dist), np.asarray(idx), k, squared)
                    occ = k_occurrence(idx, fs.n)
                    hubs = _hubs_of(name, occ, t).to(dev)
                del x
                if radii == "exact":
                    with prof.stage(f"{name}: hub-vs-all distances + top-k → radii"), \
                            _progress(progress, hubs.numel(), f"hub radii {name}") as bar:
                        hub_radii[name] = Radii(engine, p, k, progress=bar.update if bar else None,
                                                owners=engine.subset(p, hubs), owner_ids=hubs)
                else:
                    r2 = torch.from_numpy(dist[hubs.cpu().numpy(), k - 1]).to(dev, torch.float64) ** 2
                    hub_radii[name] = GivenRadii(engine.subset(p, hubs), {k: r2})
            stats = hub_stats(occ, t)
            hub_info[name] = {"n_hubs": stats.n_hubs, "fraction": stats.fraction, "backend": chosen,
                              "reason": reason, "params": params, "max_k_occurrence": int(occ.max())}
        with prof.stage("hub↔hub distances + ratios"), \
                _progress(progress, hub_radii["real"].p.n, "hub↔hub") as bar:
            member, _ = exact_membership(engine, hub_radii["real"], hub_radii["fake"], (k,), strict=strict,
                                         density_coverage=False, progress=bar.update if bar else None)

    m = member[k]
    kr = KResult(k=k, precision=float(m.precision_hits.double().mean()), recall=float(m.recall_hits.double().mean()))
    backends = {c for c, _ in used.values()}
    n_redecided = sum(r.n_redecided for r in hub_radii.values()) + m.n_redecided
    return Result(
        precision=kr.precision, recall=kr.recall, k=k, n_real=real_fs.n, n_fake=fake_fs.n, dim=real_fs.dim,
        per_k={k: kr}, method="epr", strict=strict, device=str(dev), memory_budget=engine.memory_budget,
        tile=engine.tile, n_redecided=n_redecided, error_bound=error_bound, stages=prof.stages, t=t,
        backend=used["real"][0] if len(backends) == 1 else "+".join(c for c, _ in used.values()),
        backend_reason=used["real"][1], backend_params=hub_info["real"]["params"],
        radii=radii if backends != {"exact"} else "exact", hubs=hub_info,
    )
