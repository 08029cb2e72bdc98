"""StyleGAN2-ADA / StyleGAN3: exact P&R as metrics for their ``metrics/metric_main.py``.

NVlabs' ``pr50k3_full`` decides ball membership on float16 features; the metrics here take the very
same features (``metric_utils.compute_feature_stats_for_dataset`` / ``..._for_generator`` with the
VGG-16 detector and the feature cache of the checkout that runs them) and decide every membership
exactly (:func:`eprmetrics.compute_pr`), or estimate with confidence intervals (``..._sampled``).

The two checkouts load different detector files: StyleGAN2-ADA's ``get_feature_detector`` reads a
TorchScript file (``torch.jit.load``, ``vgg16.pt``), StyleGAN3's a pickle (``pickle.load``,
``vgg16.pkl``); either fails on the other's file. So the detector URL is not a constant here: when a
metric runs it takes the URL the checkout's own ``precision_recall.compute_pr`` passes (read from that
function's constants; failing that, the URL that matches the checkout's loader). Its call to
``compute_feature_stats_for_dataset`` has the same arguments as NVlabs' ``pr50k3_full`` (the
``_full`` dataset options, the URL, ``return_features=True``, ``capture_all=True``), so the
feature-cache file (``gan-metrics/<dataset>-vgg16-<md5 of those arguments>.pkl``) is the very one
NVlabs' P&R writes and reads: whichever runs first, the other reuses it.
``benchmarks/bench_stylegan.py`` runs both checkouts' real ``calc_metric`` side by side.

Register them with one line at the end of ``metrics/metric_main.py`` in the StyleGAN checkout::

    from eprmetrics.integrations.stylegan import register; register(register_metric)

then ``python calc_metrics.py --metrics=pr50k3_full_exact --network=... --data=...`` (or
``train.py --metrics=pr50k3_full_exact``). ``metric_utils`` is imported from the checkout when a
metric runs (a module named ``metrics.metric_utils``); nothing of NVlabs is shipped here.

Metrics (results keyed ``<metric>_<value>``, as NVlabs does, e.g. ``pr50k3_full_exact_precision``):

* ``pr50k3_full_exact`` / ``pr50k3_full_sampled``: 200k reals at most, no x-flips, 50k generated, k = 3;
* ``pr50k3_exact`` / ``pr50k3_sampled``: 50k reals (the dataset's own options), 50k generated, k = 3.

Values: those of :func:`eprmetrics.integrations.common.flat_values`, each a separate float —
``precision``, ``recall``, ``f_score`` (2PR/(P+R)), and ``density``, ``coverage`` (exact method) or
``precision_ci_low``/``_high``, ``recall_ci_low``/``_high`` (sampled method). Every rank computes
(torch.distributed shares the tiles); rank 0 reports, the others return NaN, as NVlabs' do.
:func:`make_metric` builds others (other sizes, k, detector).

NVlabs' cache key leaves out the number of reals, so ``pr50k3`` and ``pr50k3_full`` of one dataset
share a file. A metric here checks the count it gets back: more reals than it asked for are cut to
the first ``max_real`` (the ones a fresh computation takes); fewer than the dataset holds raise an
error naming the cache folder.

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
from ..validation import check_int, fail
from .common import check_method, evaluate, flat_values

__all__ = [
    "CHECKOUTS",
    "DETECTOR_URLS",
    "METRICS",
    "checkout_detector_url",
    "checkout_kind",
    "make_metric",
    "register",
    "metric_utils",
    "pr50k3_full_exact",
    "pr50k3_full_sampled",
    "pr50k3_exact",
    "pr50k3_sampled",
]

# The VGG-16 detector each checkout's precision_recall.py names, and how its metric_utils loads it.
DETECTOR_URLS = {
    "stylegan2-ada": "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt",
    "stylegan3": "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/vgg16.pkl",
}
CHECKOUTS = {
    "stylegan2-ada": "StyleGAN2-ADA (torch.jit.load: a TorchScript file)",
    "stylegan3": "StyleGAN3 (pickle.load: a pickled module)",
}

MetricFn = Callable[[Any], dict[str, float]]


def _checkout_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or name.split(".")[0] != exc.name.split(".")[0]:
            raise  # the checkout is there but misses one of its own dependencies: say which
        raise ModuleNotFoundError(
            f"integration 'stylegan' needs NVlabs' {name}: run it from a StyleGAN2-ADA or StyleGAN3 "
            "checkout (the folder that holds metrics/ and dnnlib/ on sys.path, e.g. cd stylegan3 && python "
            "calc_metrics.py --metrics=pr50k3_full_exact ...)"
        ) from exc


def metric_utils() -> ModuleType:
    """NVlabs' ``metrics.metric_utils``, from the StyleGAN2-ADA or StyleGAN3 checkout on ``sys.path``."""
    return _checkout_module("metrics.metric_utils")


def checkout_kind() -> Optional[str]:
    """``"stylegan2-ada"`` or ``"stylegan3"``: whose detector loader the checkout's ``metric_utils`` has.

    Read from the names ``get_feature_detector`` uses (``torch.jit.load`` in StyleGAN2-ADA, ``pickle.load``
    in StyleGAN3); None when it uses neither or both.
    """
    code = getattr(getattr(metric_utils(), "get_feature_detector", None), "__code__", None)
    names = set(code.co_names) if code is not None else set()
    found = [kind for kind, name in (("stylegan2-ada", "jit"), ("stylegan3", "pickle")) if name in names]
    return found[0] if len(found) == 1 else None


def _own_url() -> Optional[str]:
    """The one URL among the constants of the checkout's ``precision_recall.compute_pr``, if there is one."""
    try:
        compute_pr = _checkout_module("metrics.precision_recall").compute_pr
        consts = compute_pr.__code__.co_consts
    except (ModuleNotFoundError, AttributeError):
        return None
    urls = [c for c in consts if isinstance(c, str) and "://" in c]
    return urls[0] if len(urls) == 1 else None


def _check_url(url: str, kind: Optional[str]) -> str:
    """``url`` unless it is the other checkout's detector, which this checkout's loader cannot read."""
    other = [name for name, known in DETECTOR_URLS.items() if known == url and name != kind]
    if kind is not None and other:
        raise fail(
            "detector_url",
            f"a detector file that {CHECKOUTS[kind]} loads, such as {DETECTOR_URLS[kind]}",
            f"the {CHECKOUTS[other[0]].split(' (')[0]} detector {url}",
            "leave detector_url unset: the metric takes the URL of the checkout's own precision_recall.py",
            show=False,
        )
    return url


def checkout_detector_url(detector_url: Optional[str] = None) -> str:
    """The detector URL a metric passes to the checkout's ``metric_utils``.

    Args:
        detector_url: one given to :func:`make_metric`; None: the URL of the checkout's own
            ``precision_recall.compute_pr`` (so its feature-cache file is NVlabs' own), or failing that,
            :data:`DETECTOR_URLS` of :func:`checkout_kind`.

    Raises:
        ValueError: the URL is the other checkout's detector (its loader cannot read that file), or
            none can be told.
    """
    kind = checkout_kind()
    url = detector_url if detector_url is not None else _own_url()
    if url is None and kind is not None:
        url = DETECTOR_URLS[kind]
    if url is None:
        raise fail(
            "detector_url",
            "the VGG-16 detector of a StyleGAN2-ADA or StyleGAN3 checkout",
            "no URL in metrics/precision_recall.py and a get_feature_detector of neither kind",
            "pass make_metric(..., detector_url=URL) with a file the checkout's get_feature_detector loads",
            show=False,
        )
    return _check_url(url, kind)


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    max_real: Optional[int]
    num_gen: int
    ks: tuple[int, ...]
    method: str
    full: bool
    sample_size: Union[int, float]
    detector_url: Optional[str]


def _real_count(opts: Any, max_real: Optional[int]) -> int:
    """How many reals NVlabs' helper takes when it computes: ``min(len(dataset), max_real)``."""
    dnnlib = _checkout_module("dnnlib")
    size = len(dnnlib.util.construct_class_by_name(**opts.dataset_kwargs))
    return size if max_real is None else min(size, max_real)


def _checked_reals(real: torch.Tensor, opts: Any, max_real: Optional[int]) -> torch.Tensor:
    """The reals a fresh computation gives, from what the feature cache may hold for other counts.

    NVlabs' cache key leaves out ``max_items``: a file written for more reals starts with the ones asked
    for (the helper takes dataset items in order), so it is cut; one written for fewer cannot be used.
    """
    if max_real is not None and real.shape[0] >= max_real:
        return real[:max_real]
    expected = _real_count(opts, max_real)
    if real.shape[0] < expected:
        folder = _checkout_module("dnnlib").make_cache_dir_path("gan-metrics")
        raise fail(
            "real features",
            f"{expected} (min(dataset size, max_real={max_real})) from the checkout's feature cache",
            f"{real.shape[0]}: a metric with fewer reals wrote that file (NVlabs' cache key leaves out their number)",
            f"delete the dataset's *-vgg16-*.pkl in {folder} or run with cache=False",
            show=False,
        )
    return real


def _features(opts: Any, spec: _Spec) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and generated VGG-16 features, through the checkout's helpers exactly as its precision_recall.py."""
    mu = metric_utils()
    url = checkout_detector_url(spec.detector_url)
    detector_kwargs = dict(return_features=True)
    real = mu.compute_feature_stats_for_dataset(
        opts=opts,
        detector_url=url,
        detector_kwargs=detector_kwargs,
        rel_lo=0,
        rel_hi=0,
        capture_all=True,
        max_items=spec.max_real,
    ).get_all_torch()
    real = _checked_reals(real, opts, spec.max_real)
    fake = mu.compute_feature_stats_for_generator(
        opts=opts,
        detector_url=url,
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
    # Every rank holds all features (NVlabs gathers them): the ranks of the run share the passes.
    options = {"device": opts.device, "progress": False, "distributed": opts.num_gpus > 1 and _group_ready()}
    res = evaluate(real, fake, method=spec.method, ks=spec.ks, sample_size=spec.sample_size, options=options)
    values = flat_values(res, spec.ks)
    if opts.rank != 0:  # calc_metric broadcasts rank 0's values
        values = {key: float("nan") for key in values}
    return {f"{spec.name}_{key}": value for key, value in values.items()}


def _group_ready() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def make_metric(
    name: str,
    *,
    max_real: Optional[int],
    num_gen: int,
    k: Union[int, Sequence[int]] = DEFAULTS["k"],
    method: str = "exact",
    full: bool = True,
    sample_size: Union[int, float] = DEFAULTS["sample_size"],
    detector_url: Optional[str] = None,
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
        detector_url: the feature network; None (default): the checkout's own VGG-16, as its
            ``pr50k3_full`` takes it (:func:`checkout_detector_url`), which shares NVlabs' feature cache.

    Raises:
        ValueError: a name that is not an identifier, a count that is not a positive int, a bad
            method/k/sample_size; when the metric runs, a detector the checkout cannot load.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: expected a Python identifier such as 'pr50k3_full_exact', got {name!r}")
    if max_real is not None:
        check_int(max_real, "max_real", fix="or None for the whole dataset")
    check_int(num_gen, "num_gen", fix="e.g. num_gen=50000")
    if detector_url is not None and not isinstance(detector_url, str):
        raise fail("detector_url", "a URL or path string, or None for the checkout's own", detector_url)
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
        register_metric = _checkout_module("metrics.metric_main").register_metric
    for fn in METRICS:
        register_metric(fn)
    return [fn.__name__ for fn in METRICS]
