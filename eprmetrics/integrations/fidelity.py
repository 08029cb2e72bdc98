"""torch-fidelity: :func:`calculate_metrics`, torch-fidelity's own call with exact P&R added.

``input1`` is the **generated** set and ``input2`` the **real** one, as torch-fidelity defines them
(its docs: "Precision is the fraction of input1 samples falling within the input2 manifold").
Inputs (registered datasets, image folders, ``Dataset`` objects, generative models), the feature
extractor (``feature_extractor``, ``feature_layer_prc``; VGG-16 fc2 after ReLU by default, as its
``prc``) and the feature cache (``cache``, ``cache_root``, ``input1_cache_name``, …) are torch-fidelity's,
through the helpers of ``torch_fidelity.utils``.

P&R is computed when asked for, as in torch-fidelity: ``prc=True``. Each image then goes through each
feature extractor once: the metrics that share P&R's extractor (all of them with ``feature_extractor=``;
none by default, where ISC/FID/KID use Inception and P&R VGG-16) are computed by torch-fidelity's own
functions from the features extracted for P&R; the others, and ``ppl``, by torch-fidelity's call.
Without ``prc=True`` this is torch-fidelity's ``calculate_metrics`` and nothing more.

Added keys (``prc=True``): ``eprmetrics_precision``, ``eprmetrics_recall``, ``eprmetrics_f_score``
(torch-fidelity's F-score of those two), ``eprmetrics_density``, ``eprmetrics_coverage`` (exact
method), or ``eprmetrics_precision``, ``eprmetrics_recall``, ``eprmetrics_f_score`` and the
intervals' bounds ``eprmetrics_precision_ci_low``/``_high``, ``eprmetrics_recall_ci_low``/``_high``
(sampled method), each a float.

Needs torch-fidelity ≥ 0.4 (``pip install 'eprmetrics[fidelity]'``): 0.3 has neither P&R nor its
VGG-16 extractor, and its unreleased P&R before 0.4.0 had precision and recall swapped — the values
here are computed with real and generated named explicitly, whatever the installed version does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, Optional, Union

from ..defaults import DEFAULTS
from ..validation import check_bool, fail, require
from .common import check_method, check_options, evaluate, flat_values

__all__ = ["calculate_metrics", "KEY_PREFIX"]

KEY_PREFIX = "eprmetrics_"
_FEATURE_METRICS = ("isc", "fid", "kid")  # torch-fidelity's metrics on extracted features, besides prc


def _torch_fidelity() -> ModuleType:
    """torch-fidelity, imported now; one that predates its P&R (< 0.4) is refused with the extra to install."""
    tf = require("torch_fidelity", "fidelity", "fidelity", kind="integration")
    utils = require("torch_fidelity.utils", "fidelity", "fidelity", kind="integration")
    if not hasattr(utils, "resolve_feature_extractor"):
        raise ModuleNotFoundError(
            f"integration 'fidelity' needs torch-fidelity >= 0.4 (P&R and its VGG-16 extractor), found "
            f"{getattr(tf, '__version__', 'an older one')}: pip install 'eprmetrics[fidelity]'"
        )
    return tf


def _asked(kwargs: dict[str, Any], metrics: Sequence[str]) -> list[str]:
    from torch_fidelity.helpers import get_kwarg

    return [m for m in metrics if get_kwarg(m, kwargs)]


def _sharing_prc_extractor(kwargs: dict[str, Any]) -> tuple[str, list[str]]:
    """P&R's extractor (torch-fidelity's resolution) and the asked-for isc/fid/kid that use the same one."""
    from torch_fidelity import utils

    alone = {m: False for m in (*_FEATURE_METRICS, "ppl", "prc")}
    name = utils.resolve_feature_extractor(**{**kwargs, **alone, "prc": True})
    asked = _asked(kwargs, _FEATURE_METRICS)
    return name, [m for m in asked if utils.resolve_feature_extractor(**{**kwargs, **alone, m: True}) == name]


def _shared_features(kwargs: dict[str, Any], name: str, metrics: Sequence[str]) -> dict[str, Any]:
    """One extraction of both inputs with extractor ``name``, for every layer ``metrics`` need.

    Returns the arguments of that group (``metrics`` asked for, no other), the extractor, each metric's
    layer and both inputs' features by layer (through torch-fidelity's feature cache).
    """
    from torch_fidelity import utils

    group = {**kwargs, **{m: m in metrics for m in (*_FEATURE_METRICS, "prc", "ppl")}}
    layers = {m: utils.resolve_feature_layer_for_metric(m, **group) for m in metrics}
    extractor = utils.create_feature_extractor(name, sorted(set(layers.values())), **group)
    generated = utils.extract_featuresdict_from_input_id_cached(1, extractor, **group)
    real = utils.extract_featuresdict_from_input_id_cached(2, extractor, **group)
    return {"kwargs": group, "extractor": extractor, "layers": layers, "generated": generated, "real": real}


def _fidelity_values(shared: dict[str, Any], metrics: Sequence[str]) -> dict[str, Any]:
    """torch-fidelity's own isc / fid / kid / prc, each by its own function, on the features in ``shared``."""
    from torch_fidelity.helpers import get_kwarg
    from torch_fidelity.metric_fid import fid_featuresdict_to_statistics_cached, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_featuresdict_to_metric
    from torch_fidelity.metric_kid import kid_featuresdict_to_metric
    from torch_fidelity.metric_prc import prc_featuresdict_to_metric
    from torch_fidelity.utils import get_cacheable_input_name

    generated, real, layers, kwargs = shared["generated"], shared["real"], shared["layers"], shared["kwargs"]
    out: dict[str, Any] = {}
    if "isc" in metrics:
        out.update(isc_featuresdict_to_metric(generated, layers["isc"], **kwargs))
    if "fid" in metrics:
        stats = [
            fid_featuresdict_to_statistics_cached(
                feats, get_cacheable_input_name(i, **kwargs), shared["extractor"], layers["fid"], **kwargs
            )
            for i, feats in ((1, generated), (2, real))
        ]
        out.update(fid_statistics_to_metric(*stats, get_kwarg("verbose", kwargs)))
    if "kid" in metrics:
        out.update(kid_featuresdict_to_metric(generated, real, layers["kid"], **kwargs))
    if "prc" in metrics:
        out.update(prc_featuresdict_to_metric(generated, real, layers["prc"], **kwargs))
    return out


def _check_eprmetrics_args(given: Mapping[str, Any], kwargs: dict[str, Any]) -> None:
    """P&R is asked for with ``prc=True``: eprmetrics' own arguments without it would go unused, silently."""
    from torch_fidelity.helpers import get_kwarg

    unused = sorted(name for name, value in given.items() if value is not None)
    if not get_kwarg("prc", kwargs) and unused:
        fix = "add prc=True, or leave the eprmetrics_* arguments out"
        raise fail(unused[0], "to come with prc=True (P&R is computed only when asked for)", given[unused[0]], fix)
    if get_kwarg("prc", kwargs) and kwargs.get("input2") is None:
        expected = "the real samples (P&R compares input1, the generated ones, with them)"
        raise fail("input2", expected, None, "pass input2=, e.g. a folder of real images")


def calculate_metrics(
    input1: Any = None,
    input2: Any = None,
    *,
    eprmetrics_method: Optional[str] = None,
    eprmetrics_k: Optional[Union[int, Sequence[int]]] = None,
    eprmetrics_sample_size: Optional[Union[int, float]] = None,
    eprmetrics_options: Optional[Mapping[str, Any]] = None,
    eprmetrics_fidelity_prc: Optional[bool] = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """torch-fidelity's ``calculate_metrics(input1, input2, **kwargs)``; with ``prc=True`` also eprmetrics' P&R.

    Args:
        input1: the **generated** samples (anything torch-fidelity takes: a registered input, a
            folder, a ``Dataset`` of uint8 3×H×W tensors, a generative model).
        input2: the **real** samples.
        eprmetrics_method: ``"exact"`` (default; :func:`eprmetrics.compute_pr`) or ``"sampled"``
            (:func:`eprmetrics.compute_epr` with confidence intervals).
        eprmetrics_k: neighbourhood size (several for the exact method, e.g. ``(3, 5, 10)``);
            default: torch-fidelity's ``prc_neighborhood`` (3).
        eprmetrics_sample_size: sampled method: queries per set (int) or target half-width (float).
        eprmetrics_options: more arguments for ``compute_pr`` / ``compute_epr`` (e.g.
            ``{"strict": True}``); the device follows torch-fidelity's ``cuda``.
        eprmetrics_fidelity_prc: also run torch-fidelity's own P&R on the same features (its keys
            ``precision``, ``recall``, ``f_score``; default True). False leaves it out: it holds N×N
            distance matrices in memory, ours never does.
        kwargs: torch-fidelity's keyword arguments (``cuda``, ``batch_size``, ``feature_extractor``,
            ``cache_root``, ``isc``/``fid``/``kid``/``prc``/``ppl``, …), with its defaults.

    Returns:
        torch-fidelity's result keys for the metrics it was asked for, and with ``prc=True`` the
        ``eprmetrics_*`` keys (floats).

    Raises:
        ValueError: an ``eprmetrics_*`` argument without ``prc=True``, ``prc=True`` without ``input2``,
            bad ``eprmetrics_*`` values (one line naming the argument).

    Example (two image folders; torch-fidelity downloads its VGG-16 once, or pass
    ``feature_extractor_weights_path``)::

        from eprmetrics.integrations.fidelity import calculate_metrics
        out = calculate_metrics(input1="generated/", input2="real/", cuda=False, prc=True)
        out["precision"], out["eprmetrics_precision"], out["eprmetrics_f_score"]   # theirs and ours
    """
    tf = _torch_fidelity()
    from torch_fidelity.helpers import get_kwarg, process_deprecations

    kwargs = {**kwargs, "input1": input1, "input2": input2}
    process_deprecations(kwargs)
    given: dict[str, Any] = dict(
        eprmetrics_method=eprmetrics_method,
        eprmetrics_k=eprmetrics_k,
        eprmetrics_sample_size=eprmetrics_sample_size,
        eprmetrics_options=eprmetrics_options,
        eprmetrics_fidelity_prc=eprmetrics_fidelity_prc,
    )
    _check_eprmetrics_args(given, kwargs)
    if not get_kwarg("prc", kwargs):
        return dict(tf.calculate_metrics(**kwargs))
    k = get_kwarg("prc_neighborhood", kwargs) if eprmetrics_k is None else eprmetrics_k
    sample_size = DEFAULTS["sample_size"] if eprmetrics_sample_size is None else eprmetrics_sample_size
    method, ks, sample_size = check_method(eprmetrics_method or "exact", k, sample_size)
    theirs = check_bool(True if eprmetrics_fidelity_prc is None else eprmetrics_fidelity_prc, "eprmetrics_fidelity_prc")
    options = {
        "device": "cuda" if get_kwarg("cuda", kwargs) else "cpu",
        "progress": None if get_kwarg("verbose", kwargs) else False,
        **check_options(eprmetrics_options, method, "eprmetrics_options"),
    }
    name, shared = _sharing_prc_extractor(kwargs)
    others = [m for m in _asked(kwargs, (*_FEATURE_METRICS, "ppl")) if m not in shared]
    out: dict[str, Any] = {}
    if others:  # another extractor (default ISC/FID/KID: Inception), or ppl: torch-fidelity's call, without prc
        out.update(tf.calculate_metrics(**{**kwargs, "prc": False, **{m: False for m in shared}}))
    features = _shared_features(kwargs, name, ["prc", *shared])
    out.update(_fidelity_values(features, [*shared, "prc"] if theirs else shared))
    layer = features["layers"]["prc"]
    res = evaluate(
        features["real"][layer],
        features["generated"][layer],
        method=method,
        ks=ks,
        sample_size=sample_size,
        options=options,
    )
    out.update({KEY_PREFIX + key: value for key, value in flat_values(res, ks).items()})
    return out
