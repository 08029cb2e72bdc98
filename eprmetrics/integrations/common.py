"""What the adapters share: the two methods they offer, their option checks, one run, flat values.

Example:
    >>> import numpy as np
    >>> from eprmetrics.integrations.common import evaluate, flat_values
    >>> x = np.random.default_rng(0).normal(size=(200, 8)).astype("float32")
    >>> res = evaluate(x, x[:100], method="exact", ks=(3,))
    >>> flat_values(res, (3,))["precision"]
    1.0
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

from ..api import compute_epr, compute_pr
from ..defaults import DEFAULTS
from ..result import Result
from ..validation import check_choice, check_k, check_sample_size, check_single_k, fail

__all__ = ["METHODS", "VALUES", "check_method", "check_options", "evaluate", "f_score", "flat_values"]

METHODS = ("exact", "sampled")
# The values an adapter reports, in this order (each where the method computes it).
VALUES = ("precision", "recall", "density", "coverage")
# compute_pr / compute_epr arguments an adapter sets itself; the others may travel in ``options``.
OWN = frozenset(
    {"real", "fake", "k", "method", "sample_size", "extractor", "weights", "batch_size", "num_workers"}
    | {"cache_dir", "save_features", "on_error"}
)


def check_method(method: Any, k: Any, sample_size: Any) -> tuple[str, tuple[int, ...], Union[int, float]]:
    """``(method, ks, sample_size)`` checked: several ``k`` for the exact method, one for the sampled one."""
    check_choice(method, "method", METHODS, "exact values, or estimates with confidence intervals")
    ks = check_k(k) if method == "exact" else (check_single_k(k),)
    return method, ks, check_sample_size(sample_size)


def check_options(options: Optional[Mapping[str, Any]], method: str, name: str = "options") -> dict[str, Any]:
    """``options``: a dict of keyword arguments for compute_pr (exact) / compute_epr (sampled), less those set here."""
    if options is None:
        return {}
    target = compute_pr if method == "exact" else compute_epr
    allowed = sorted(set(inspect.signature(target).parameters) - OWN)
    if not isinstance(options, Mapping):
        raise fail(name, f"a dict of {target.__name__} arguments", type(options).__name__, show=False)
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise fail(name, f"{target.__name__} arguments among {allowed}", bad, f"e.g. {name}={{'strict': True}}")
    return dict(options)


def evaluate(
    real: Any,
    fake: Any,
    *,
    method: str,
    ks: Sequence[int],
    sample_size: Union[int, float] = DEFAULTS["sample_size"],
    options: Optional[Mapping[str, Any]] = None,
) -> Result:
    """:func:`~eprmetrics.compute_pr` (``method="exact"``, every k) or the sampled :func:`~eprmetrics.compute_epr`."""
    opts = dict(options or {})
    if method == "exact":
        return compute_pr(real, fake, k=tuple(ks), **opts)
    return compute_epr(real, fake, method="sampled", k=ks[0], sample_size=sample_size, **opts)


def f_score(precision: float, recall: float) -> float:
    """torch-fidelity's F-score: the harmonic mean ``2PR / (P + R)`` of precision and recall, 0 when both are 0."""
    return 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)


def flat_values(res: Result, ks: Sequence[int]) -> dict[str, float]:
    """The values computed, as separate floats (what a logger accepts): ``precision``, ``recall``, ``f_score``,
    ``density`` and ``coverage`` where computed, and for each value with an interval (sampled method) its
    bounds ``precision_ci_low``, ``precision_ci_high``, ``recall_ci_low``, …; with several k, also
    ``precision_k5``, ``recall_k5``, ``f_score_k5``, … for each."""
    out = {name: float(getattr(res, name)) for name in VALUES if getattr(res, name) is not None}
    out["f_score"] = f_score(out["precision"], out["recall"])
    for name in VALUES:
        interval = getattr(res, f"{name}_ci", None)
        if interval is not None:
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = float(interval[0]), float(interval[1])
    if len(ks) > 1:
        for k in ks:
            part = res.per_k[k]
            for name in VALUES:
                value = getattr(part, name)
                if value is not None:
                    out[f"{name}_k{k}"] = float(value)
            out[f"f_score_k{k}"] = f_score(float(part.precision), float(part.recall))
    return out
