"""torch-fidelity: :func:`calculate_metrics`, torch-fidelity's own call with exact P&R added.

``input1`` is the **generated** set and ``input2`` the **real** one, as torch-fidelity defines them
(its docs: "Precision is the fraction of input1 samples falling within the input2 manifold").
Inputs (registered datasets, image folders, ``Dataset`` objects, generative models), the feature
extractor (``feature_extractor``, ``feature_layer_prc``; VGG-16 fc2 by default, as its ``prc``)
and the feature cache (``cache``, ``cache_root``, ``input1_cache_name``, …) are torch-fidelity's,
through the helpers of ``torch_fidelity.utils``. Its own metrics (``isc``, ``fid``, ``kid``,
``prc``, ``ppl``) are computed as it computes them; ``prc`` reuses the features extracted for ours.

Added keys: ``eprmetrics_precision``, ``eprmetrics_recall``, ``eprmetrics_density``,
``eprmetrics_coverage`` (exact method), or ``eprmetrics_precision``, ``eprmetrics_recall`` and
``eprmetrics_precision_ci_low``/``_high``, ``eprmetrics_recall_ci_low``/``_high`` (sampled).

Needs torch-fidelity ≥ 0.4 (``pip install 'eprmetrics[fidelity]'``): 0.3 has neither P&R nor its
VGG-16 extractor, and its unreleased P&R before 0.4.0 had precision and recall swapped — the values
here are computed with real and generated named explicitly, whatever the installed version does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, Optional, Union

from ..defaults import DEFAULTS
from ..validation import require
from .common import check_method, check_options, evaluate, flat_values

__all__ = ["calculate_metrics", "KEY_PREFIX"]

KEY_PREFIX = "eprmetrics_"
_OWN_METRICS = ("isc", "fid", "kid", "ppl")  # torch-fidelity metrics computed by its own call


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


def _features(kwargs: dict[str, Any]) -> tuple[dict, dict, str]:
    """torch-fidelity's P&R features (its extractor, its cache): ``(input1's, input2's, layer)``, as dicts by layer."""
    from torch_fidelity import utils

    prc_only = {**kwargs, "isc": False, "fid": False, "kid": False, "ppl": False, "prc": True}
    name = utils.resolve_feature_extractor(**prc_only)
    layer = utils.resolve_feature_layer_for_metric("prc", **prc_only)
    extractor = utils.create_feature_extractor(name, [layer], **prc_only)
    generated = utils.extract_featuresdict_from_input_id_cached(1, extractor, **prc_only)
    real = utils.extract_featuresdict_from_input_id_cached(2, extractor, **prc_only)
    return generated, real, layer


def calculate_metrics(
    input1: Any = None,
    input2: Any = None,
    *,
    eprmetrics_method: str = "exact",
    eprmetrics_k: Optional[Union[int, Sequence[int]]] = None,
    eprmetrics_sample_size: Union[int, float] = DEFAULTS["sample_size"],
    eprmetrics_options: Optional[Mapping[str, Any]] = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """torch-fidelity's ``calculate_metrics(input1, input2, **kwargs)`` plus eprmetrics' P&R of input1 vs input2.

    Args:
        input1: the **generated** samples (anything torch-fidelity takes: a registered input, a
            folder, a ``Dataset`` of uint8 3×H×W tensors, a generative model).
        input2: the **real** samples.
        eprmetrics_method: ``"exact"`` (:func:`eprmetrics.compute_pr`) or ``"sampled"``
            (:func:`eprmetrics.compute_epr` with confidence intervals).
        eprmetrics_k: neighbourhood size (several for the exact method, e.g. ``(3, 5, 10)``);
            default: torch-fidelity's ``prc_neighborhood`` (3).
        eprmetrics_sample_size: sampled method: queries per set (int) or target half-width (float).
        eprmetrics_options: more arguments for ``compute_pr`` / ``compute_epr`` (e.g.
            ``{"strict": True}``); the device follows torch-fidelity's ``cuda``.
        kwargs: torch-fidelity's keyword arguments (``cuda``, ``batch_size``, ``feature_extractor``,
            ``cache_root``, ``isc``/``fid``/``kid``/``prc``/``ppl``, …), with its defaults.

    Returns:
        torch-fidelity's result keys for the metrics it was asked for, and ``eprmetrics_*`` keys.

    Example (two image folders; torch-fidelity downloads its VGG-16 once, or pass
    ``feature_extractor_weights_path``)::

        from eprmetrics.integrations.fidelity import calculate_metrics
        out = calculate_metrics(input1="generated/", input2="real/", cuda=False, prc=True)
        out["precision"], out["eprmetrics_precision"]   # torch-fidelity's value and ours
    """
    tf = _torch_fidelity()
    from torch_fidelity.helpers import get_kwarg
    from torch_fidelity.metric_prc import prc_featuresdict_to_metric

    kwargs = {**kwargs, "input1": input1, "input2": input2}
    k = get_kwarg("prc_neighborhood", kwargs) if eprmetrics_k is None else eprmetrics_k
    method, ks, sample_size = check_method(eprmetrics_method, k, eprmetrics_sample_size)
    verbose = bool(get_kwarg("verbose", kwargs))
    options = {
        "device": "cuda" if get_kwarg("cuda", kwargs) else "cpu",
        "progress": None if verbose else False,
        **check_options(eprmetrics_options, method, "eprmetrics_options"),
    }
    generated, real, layer = _features(kwargs)
    out: dict[str, Any] = {}
    if any(get_kwarg(m, kwargs) for m in _OWN_METRICS):
        out.update(tf.calculate_metrics(**{**kwargs, "prc": False}))
    if get_kwarg("prc", kwargs):  # torch-fidelity's own P&R, on the features extracted above
        out.update(prc_featuresdict_to_metric(generated, real, layer, **kwargs))
    res = evaluate(real[layer], generated[layer], method=method, ks=ks, sample_size=sample_size, options=options)
    out.update({KEY_PREFIX + key: value for key, value in flat_values(res, ks).items()})
    return out
