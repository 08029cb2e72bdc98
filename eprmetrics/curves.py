"""P&R of many fake sets against one real set: truncation (ψ) sweeps, checkpoints, sampler settings.

:func:`pr_curve` fits (or takes) a :class:`~eprmetrics.Manifold` of the real set once and evaluates
every fake set against it, so the real self pass runs once instead of once per point; the numbers are
identical to independent calls. The returned :class:`PRCurve` maps each label to its
:class:`~eprmetrics.Result`, in the order given; :func:`eprmetrics.plots.pr_curve_plot` draws P&R
against the label and the precision–recall frontier.

Example (a ψ sweep: fakes drawn around the mean with spread ψ):
    >>> import numpy as np
    >>> from eprmetrics import pr_curve
    >>> rng = np.random.default_rng(0)
    >>> real = rng.normal(size=(500, 8)).astype("float32")
    >>> fakes = {psi: (psi * rng.normal(size=(400, 8))).astype("float32") for psi in (0.25, 0.5, 1.0)}
    >>> curve = pr_curve(real, fakes, k=3)
    >>> [round(p, 2) for p in curve.precision], [round(r, 2) for r in curve.recall]
    ([1.0, 1.0, 0.9], [0.0, 0.16, 0.86])
    >>> curve.frontier()
    [0.5, 1.0]
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Hashable, Mapping
from typing import Any

from .api import compute_epr, compute_pr
from .defaults import DEFAULTS
from .manifold import Manifold
from .result import Result
from .validation import check_keywords

__all__ = ["pr_curve", "PRCurve", "frontier", "CURVE_METHODS"]

CURVE_METHODS = ("exact", "sampled", "hubness")
# Options of Manifold.fit that a curve's calls share (device, precision, image extraction, ...).
_FIT_OPTIONS = frozenset(inspect.signature(Manifold.fit).parameters) - {"cls", "real", "k"}


class PRCurve(dict):
    """``label → Result`` for each fake set of a :func:`pr_curve`, in the order given.

    Attributes:
        manifold: the reference manifold every point was computed against.
        fit_seconds: time spent fitting it (0 when one was passed in).
        seconds: time of each point's call, by label.
    """

    manifold: Manifold
    fit_seconds: float
    seconds: dict[Hashable, float]

    @property
    def labels(self) -> list[Hashable]:
        return list(self)

    @property
    def precision(self) -> list[float]:
        return [r.precision for r in self.values()]

    @property
    def recall(self) -> list[float]:
        return [r.recall for r in self.values()]

    def frontier(self) -> list[Hashable]:
        """The labels on the precision–recall frontier, in label order (see :func:`frontier`)."""
        return frontier(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: one row per label (values, intervals where sampled, seconds) and the fit time."""
        rows = []
        for label, r in self.items():
            row: dict[str, Any] = {
                "label": label if isinstance(label, (int, float, str)) else repr(label),
                "seconds": self.seconds[label],
            }
            row.update({key: getattr(r, key) for key in ("precision", "recall", "density", "coverage")})
            if r.precision_ci is not None and r.recall_ci is not None:
                row.update(precision_ci=list(r.precision_ci), recall_ci=list(r.recall_ci))
            rows.append(row)
        return {"fit_seconds": self.fit_seconds, "n_real": self.manifold.n, "points": rows}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def table(self) -> str:
        """A Markdown table: label, precision, recall (with intervals where sampled), seconds."""
        lines = ["| label | precision | recall | seconds |", "|---|---|---|---|"]
        for label, r in self.items():
            p, rc = f"{r.precision:.4f}", f"{r.recall:.4f}"
            if r.precision_ci is not None and r.recall_ci is not None:
                p += f" [{r.precision_ci[0]:.4f}, {r.precision_ci[1]:.4f}]"
                rc += f" [{r.recall_ci[0]:.4f}, {r.recall_ci[1]:.4f}]"
            lines.append(f"| {label} | {p} | {rc} | {self.seconds[label]:.2f} |")
        return "\n".join(lines)


def frontier(results: Mapping[Hashable, Result]) -> list[Hashable]:
    """The labels whose result no other beats on both precision and recall (the precision–recall frontier),
    in the mapping's order; of points with equal values, each is kept."""
    points = [(label, r.precision, r.recall) for label, r in results.items()]
    return [
        label for label, p, r in points if not any(p2 >= p and r2 >= r and (p2, r2) != (p, r) for _, p2, r2 in points)
    ]


def _call_options(call: Any) -> list[str]:
    """The keyword options ``call`` takes besides the inputs and those ``pr_curve`` sets itself."""
    return [name for name in inspect.signature(call).parameters if name not in ("real", "fake", "k", "method")]


def pr_curve(
    real: Any,
    fakes: Mapping[Hashable, Any],
    *,
    method: str = "exact",
    k: int = DEFAULTS["k"],
    distributed: bool = False,
    process_group: Any = None,
    **options: Any,
) -> PRCurve:
    """P&R of every fake set in ``fakes`` (``{label: features or images}``) against one real set.

    Args:
        real: a :class:`~eprmetrics.Manifold`, or anything :meth:`Manifold.fit` accepts (fitted here, once).
        fakes: a mapping from a label (e.g. the truncation ψ) to a fake set; evaluated in its order.
        method: ``"exact"`` (:func:`~eprmetrics.compute_pr`), ``"sampled"`` or ``"hubness"``
            (:func:`~eprmetrics.compute_epr`).
        k: neighbourhood size of every point.
        options: passed to each call (e.g. ``device``, ``density_coverage``, ``sample_size``); those
            :meth:`Manifold.fit` takes also configure the fit.
        distributed, process_group: share the fit and every call over ``torch.distributed`` ranks (each rank
            passes the same real and fake sets), as for :func:`~eprmetrics.compute_pr`; by default this process
            computes alone.

    Raises:
        ValueError: an unknown method, an empty ``fakes``, or a manifold fitted without ``k``.
    """
    if method not in CURVE_METHODS:
        raise ValueError(f"method: expected one of {CURVE_METHODS}, got {method!r}")
    if not isinstance(fakes, Mapping) or not fakes:
        raise ValueError(
            f"fakes: expected a non-empty mapping {{label: fake features or images}}, got {type(fakes).__name__}"
            f"{' (empty)' if isinstance(fakes, Mapping) else ''}; e.g. {{0.5: fake_05, 1.0: fake_10}}"
        )
    call = compute_pr if method == "exact" else compute_epr
    check_keywords(options, _call_options(call), f"{call.__name__} (method={method!r})", "drop them or change method")
    options.update(distributed=distributed, process_group=process_group)  # forwarded to the fit and every call
    curve = PRCurve()
    start = time.perf_counter()
    if isinstance(real, Manifold):
        real.check_k(k)
        curve.manifold, curve.fit_seconds = real, 0.0
    else:
        fit = {key: v for key, v in options.items() if key in _FIT_OPTIONS}
        curve.manifold = Manifold.fit(real, k=k, **fit)
        curve.fit_seconds = time.perf_counter() - start
    curve.seconds = {}
    for label, fake in fakes.items():
        start = time.perf_counter()
        try:
            if method == "exact":
                res: Result = compute_pr(curve.manifold, fake, k=k, **options)
            else:
                res = compute_epr(curve.manifold, fake, method=method, k=k, **options)
        except (ValueError, TypeError, FileNotFoundError) as exc:  # which fake set, when several were given
            raise type(exc)(f"fakes[{label!r}]: {exc}") from exc
        curve[label], curve.seconds[label] = res, time.perf_counter() - start
    return curve
