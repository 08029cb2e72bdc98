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

import numpy as np
import torch

from ..api import compute_epr, compute_pr
from ..defaults import DEFAULTS
from ..result import Result
from ..validation import check_choice, check_k, check_sample_size, check_single_k, fail

__all__ = [
    "METHODS",
    "VALUES",
    "canonical_order",
    "check_method",
    "check_options",
    "evaluate",
    "f_score",
    "flat_values",
]

METHODS = ("exact", "sampled")
F_SCORE_FLOOR = 1e-5  # torch-fidelity's floor on P + R in its F-score
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


def check_options(
    options: Optional[Mapping[str, Any]], method: str, name: str = "options", own: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``options``: a dict of keyword arguments for compute_pr (exact) / compute_epr (sampled), less those set
    here and those in ``own`` (what the calling adapter sets itself)."""
    if options is None:
        return {}
    target = compute_pr if method == "exact" else compute_epr
    allowed = sorted(set(inspect.signature(target).parameters) - OWN - own)
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
    """:func:`~eprmetrics.compute_pr` (``method="exact"``, every k) or the sampled :func:`~eprmetrics.compute_epr`.

    ``options`` may hold ``distributed`` / ``process_group``, the ranks sharing the work (each holding the
    same sets)."""
    opts = dict(options or {})
    if method == "exact":
        return compute_pr(real, fake, k=tuple(ks), **opts)
    return compute_epr(real, fake, method="sampled", k=ks[0], sample_size=sample_size, **opts)


def f_score(precision: float, recall: float) -> float:
    """torch-fidelity's F-score: ``2PR / max(P + R, 1e-5)``, the harmonic mean of precision and recall (its floor
    on the denominator makes it 0 when both are 0, and is kept so that the two packages agree on every input)."""
    return 2.0 * precision * recall / max(precision + recall, F_SCORE_FLOOR)


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


# Canonical row order: exact integer keys of each row's float32 bits, whatever the layout of the data.
ORDER_SEED = 20190807
_KEY_WEIGHT = 1 << 20  # weights < 2**20 times 16-bit halves: a row's key is below 2 * d * 2**36, exact in int64
_KEY_ELEMENTS = 1 << 22  # elements per chunk of the key computation


def canonical_order(feats: torch.Tensor) -> torch.Tensor:
    """A permutation putting the rows of float32 N×D ``feats`` in an order that depends only on the rows,
    not on where they were.

    Gathered from ranks, the rows of one set arrive in an order that depends on how the data were sharded;
    a sampled estimate draws its queries by position, so it would depend on the sharding too. Each row's
    key is a seeded random weighting of its bits taken as 16-bit halves, summed in int64 (integer sums:
    the same on every device, in every position, in any summation order); rows are sorted by key, and
    rows whose keys tie by their bits. Rows that tie on both are identical, hence interchangeable.
    """
    if feats.dtype != torch.float32 or feats.ndim != 2 or feats.shape[1] >= 1 << 26:
        raise ValueError(f"canonical_order: expected float32 N×D features, got {feats.dtype} {tuple(feats.shape)}")
    n, d = feats.shape
    gen = torch.Generator().manual_seed(ORDER_SEED)
    weights = torch.randint(1, _KEY_WEIGHT, (2, d), generator=gen, dtype=torch.int64).to(feats.device)
    bits = feats.contiguous().view(torch.int32)
    keys = torch.empty(n, dtype=torch.int64, device=feats.device)
    step = max(1, _KEY_ELEMENTS // max(d, 1))
    for start in range(0, n, step):
        chunk = bits[start : start + step].to(torch.int64)
        low, high = chunk & 0xFFFF, (chunk >> 16) & 0xFFFF
        keys[start : start + step] = (low * weights[0]).sum(1) + (high * weights[1]).sum(1)
    order = torch.sort(keys, stable=True).indices.cpu().numpy()
    sorted_keys = keys.cpu().numpy()[order]
    ties = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    for run in np.split(ties, np.flatnonzero(np.diff(ties) > 1) + 1) if ties.size else ():
        span = slice(int(run[0]), int(run[-1]) + 2)  # a run of equal keys: order its rows by their bits
        idx = order[span]
        rows = bits[torch.from_numpy(idx).to(feats.device)].cpu().numpy()
        order[span] = idx[np.lexsort(rows.T[::-1])]
    return torch.from_numpy(order).to(feats.device)
