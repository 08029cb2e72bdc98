"""Public entry points: inputs → tiled engine → metrics → :class:`Result`."""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any, Iterator, Optional, Sequence, Union

import torch

from .defaults import DEFAULTS
from .features.images import is_image_input
from .inputs import FeatureSet, FeaturesLike, as_feature_set, validate_pair
from .metrics import Radii, exact_membership
from .profiling import Profiler
from .result import KResult, Result
from .tiles import ERROR_BOUNDS, PRECISIONS, TileEngine, default_memory_budget, resolve_device

__all__ = ["compute_pr", "normalize_k"]


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
           error_bound: str, precision: str, device: Union[str, torch.device], images: _ImageOptions, progress: bool
           ) -> tuple[torch.device, FeatureSet, FeatureSet, TileEngine]:
    """Validate the options and inputs shared by every entry point; build the tile engine."""
    if not isinstance(strict, bool):
        raise ValueError(f"strict: expected True or False, got {strict!r}")
    if memory_budget is not None and (isinstance(memory_budget, bool) or not isinstance(memory_budget, int)
                                      or memory_budget <= 0):
        raise ValueError(f"memory_budget: expected a positive int (bytes) or None, got {memory_budget!r}")
    if error_bound not in ERROR_BOUNDS:
        raise ValueError(f"error_bound: expected one of {ERROR_BOUNDS}, got {error_bound!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {tuple(PRECISIONS)}, got {precision!r}")
    dev = resolve_device(device)
    # Open both image inputs (cheap checks: paths, empty folders) before the costly extraction.
    real, fake = images.open(real, "real"), images.open(fake, "fake")
    real = images.features(real, "real", dev, progress)
    fake = images.features(fake, "fake", dev, progress)
    real_fs, fake_fs = as_feature_set(real, "real"), as_feature_set(fake, "fake")
    validate_pair(real_fs, fake_fs, k_max)
    engine = TileEngine(real_fs.dim, dev, memory_budget or default_memory_budget(dev), error_bound=error_bound,
                        precision=precision)
    return dev, real_fs, fake_fs, engine


@contextlib.contextmanager
def _matmul_precision(engine: TileEngine) -> Iterator[None]:
    """fp32 GEMMs for the duration — TF32 only when the engine asked for it (its bound covers it)."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if engine.precision == "tf32" else "highest")
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
    precision: str = DEFAULTS["precision"],
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
    dev, real_fs, fake_fs, engine = _setup(real, fake, max(ks), strict, memory_budget, error_bound, precision, device,
                                           images, progress)
    k_max = max(ks)

    def run() -> tuple:
        prof = Profiler(dev)
        with _matmul_precision(engine), torch.inference_mode():
            with prof.stage("prepare (centre, norms)"):
                center = engine.center_of(real_fs)
                real_p, fake_p = engine.prepare(real_fs, center), engine.prepare(fake_fs, center)
            radii = {}
            for name, p in (("real", real_p), ("fake", fake_p)):
                with prof.stage(f"{name}↔{name} distances + top-k → radii"), \
                        _progress(progress, p.n, f"radii {name}") as bar:
                    radii[name] = Radii(engine, p, k_max, progress=bar.update if bar else None)
            with prof.stage("real↔fake distances + ratios"), _progress(progress, real_p.n, "real↔fake") as bar:
                member, realism_scores = exact_membership(
                    engine, radii["real"], radii["fake"], ks, strict=strict,
                    density_coverage=density_coverage, realism_k=ks[0] if realism else None,
                    progress=bar.update if bar else None)
        return prof, radii, member, realism_scores

    prof, radii, member, realism_scores = engine.run_shrinking(run)

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
        device=str(dev), memory_budget=engine.memory_budget, tile=engine.tile, n_redecided=n_redecided,
        error_bound=error_bound, gemm_precision=engine.precision, stages=prof.stages,
    )
