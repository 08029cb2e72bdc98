"""StyleGAN2-ADA / StyleGAN3: exact P&R as metrics for their ``metrics/metric_main.py``.

NVlabs' ``pr50k3_full`` decides ball membership on float16 features; the metrics here take the very
same features (``metric_utils.compute_feature_stats_for_dataset`` / ``..._for_generator`` with the
VGG-16 detector, the feature cache of the checkout included) and decide every membership exactly
(:func:`eprmetrics.compute_pr`), or estimate with confidence intervals (``..._sampled``).

Register them with one line at the end of ``metrics/metric_main.py`` in the StyleGAN checkout::

    from eprmetrics.integrations.stylegan import register; register(register_metric)

then ``python calc_metrics.py --metrics=pr50k3_full_exact --network=... --data=...`` (or
``train.py --metrics=pr50k3_full_exact``). ``metric_utils`` is imported from the checkout when a
metric runs (a module named ``metrics.metric_utils``); nothing of NVlabs is shipped here.

Metrics (results keyed ``<metric>_<value>``, as NVlabs does, e.g. ``pr50k3_full_exact_precision``):

* ``pr50k3_full_exact`` / ``pr50k3_full_sampled``: 200k reals at most, no x-flips, 50k generated, k = 3;
* ``pr50k3_exact`` / ``pr50k3_sampled``: 50k reals (the dataset's own options), 50k generated, k = 3.

Exact values: ``precision``, ``recall``, ``density``, ``coverage``; sampled ones: ``precision``,
``recall`` and ``precision_ci_low``/``_high``, ``recall_ci_low``/``_high``. Every rank computes
(torch.distributed shares the tiles); rank 0 reports, the others return NaN, as NVlabs' do.
:func:`make_metric` builds others (other sizes, k, detector).

Example:
    >>> from eprmetrics.integrations.stylegan import make_metric
    >>> fn = make_metric("pr10k5_sampled", max_real=10000, num_gen=10000, k=5, method="sampled")
    >>> fn.__name__
    'pr10k5_sampled'
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Callable, Optional, Union

import torch

from ..defaults import DEFAULTS
from .common import check_method, evaluate, flat_values

__all__ = [
    "DETECTOR_URL",
    "METRICS",
    "make_metric",
    "register",
    "metric_utils",
    "pr50k3_full_exact",
    "pr50k3_full_sampled",
    "pr50k3_exact",
    "pr50k3_sampled",
]

# The VGG-16 detector of NVlabs' precision_recall.py (StyleGAN3's address; StyleGAN2-ADA's older one holds
# the same network): the same URL keys the same entry of the checkout's feature cache.
DETECTOR_URL = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/vgg16.pkl"

MetricFn = Callable[[Any], dict[str, float]]


def metric_utils() -> ModuleType:
    """NVlabs' ``metrics.metric_utils``, from the StyleGAN2-ADA or StyleGAN3 checkout on ``sys.path``."""
    try:
        return importlib.import_module("metrics.metric_utils")
    except ModuleNotFoundError as exc:
        if exc.name not in ("metrics", "metrics.metric_utils"):
            raise  # the checkout is there but misses one of its own dependencies: say which
        raise ModuleNotFoundError(
            "integration 'stylegan' needs NVlabs' metrics.metric_utils: run it from a StyleGAN2-ADA or StyleGAN3 "
            "checkout (the folder that holds metrics/ and dnnlib/ on sys.path, e.g. cd stylegan3 && python "
            "calc_metrics.py --metrics=pr50k3_full_exact ...)"
        ) from exc


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    max_real: Optional[int]
    num_gen: int
    ks: tuple[int, ...]
    method: str
    full: bool
    sample_size: Union[int, float]
    detector_url: str


def _features(opts: Any, spec: _Spec) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and generated VGG-16 features, through the checkout's helpers exactly as its precision_recall.py."""
    mu = metric_utils()
    detector_kwargs = dict(return_features=True)
    real = mu.compute_feature_stats_for_dataset(
        opts=opts,
        detector_url=spec.detector_url,
        detector_kwargs=detector_kwargs,
        rel_lo=0,
        rel_hi=0,
        capture_all=True,
        max_items=spec.max_real,
    ).get_all_torch()
    fake = mu.compute_feature_stats_for_generator(
        opts=opts,
        detector_url=spec.detector_url,
        detector_kwargs=detector_kwargs,
        rel_lo=0,
        rel_hi=1,
        capture_all=True,
        max_items=spec.num_gen,
    ).get_all_torch()
    return real, fake


def _run(opts: Any, spec: _Spec) -> dict[str, float]:
    if spec.full:
        opts.dataset_kwargs.update(max_size=None, xflip=False)
    else:
        opts.dataset_kwargs.update(max_size=None)
    real, fake = _features(opts, spec)
    options = {"device": opts.device, "progress": False}
    res = evaluate(real, fake, method=spec.method, ks=spec.ks, sample_size=spec.sample_size, options=options)
    values = flat_values(res, spec.ks)
    if opts.rank != 0:  # calc_metric broadcasts rank 0's values
        values = {key: float("nan") for key in values}
    return {f"{spec.name}_{key}": value for key, value in values.items()}


def make_metric(
    name: str,
    *,
    max_real: Optional[int],
    num_gen: int,
    k: Union[int, Sequence[int]] = DEFAULTS["k"],
    method: str = "exact",
    full: bool = True,
    sample_size: Union[int, float] = DEFAULTS["sample_size"],
    detector_url: str = DETECTOR_URL,
) -> MetricFn:
    """A metric function ``fn(opts) -> dict`` named ``name`` (``register_metric`` keys metrics by ``__name__``).

    Args:
        name: the metric's name, and the prefix of its result keys.
        max_real: reals to take from the dataset at most (None: all).
        num_gen: images to generate.
        k: neighbourhood size, or several for the exact method (``(3, 5)`` adds ``<name>_precision_k5``, …).
        method: ``"exact"`` or ``"sampled"`` (estimates with confidence intervals).
        full: NVlabs' ``_full`` convention: the whole dataset without x-flips
            (``dataset_kwargs.update(max_size=None, xflip=False)``); False leaves ``xflip`` as the dataset has it.
        sample_size: sampled method: queries per set (int) or target half-width (float).
        detector_url: the feature network (NVlabs' VGG-16 by default).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: expected a Python identifier such as 'pr50k3_full_exact', got {name!r}")
    method, ks, sample_size = check_method(method, k, sample_size)
    spec = _Spec(name, max_real, num_gen, ks, method, bool(full), sample_size, detector_url)

    def metric(opts: Any) -> dict[str, float]:
        return _run(opts, spec)

    metric.__name__ = metric.__qualname__ = name
    k_text = ",".join(map(str, ks))
    metric.__doc__ = f"{method} P&R, k={k_text}, {num_gen} generated vs {max_real or 'all'} real images."
    return metric


pr50k3_full_exact = make_metric("pr50k3_full_exact", max_real=200000, num_gen=50000)
pr50k3_full_sampled = make_metric("pr50k3_full_sampled", max_real=200000, num_gen=50000, method="sampled")
pr50k3_exact = make_metric("pr50k3_exact", max_real=50000, num_gen=50000, full=False)
pr50k3_sampled = make_metric("pr50k3_sampled", max_real=50000, num_gen=50000, full=False, method="sampled")
METRICS = (pr50k3_full_exact, pr50k3_full_sampled, pr50k3_exact, pr50k3_sampled)


def register(register_metric: Optional[Callable[[MetricFn], Any]] = None) -> list[str]:
    """Register :data:`METRICS` with StyleGAN's ``metric_main.register_metric`` (imported from the checkout
    when not given); returns their names."""
    if register_metric is None:
        try:
            register_metric = importlib.import_module("metrics.metric_main").register_metric
        except ModuleNotFoundError:
            metric_utils()  # the message that says where to run from
            raise
    for fn in METRICS:
        register_metric(fn)
    return [fn.__name__ for fn in METRICS]
