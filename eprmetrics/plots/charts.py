"""Line and scatter charts: the demo's bars, P&R against a setting (ψ) with its frontier, error against cost."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Optional, Union, cast

from ..curves import frontier
from ..result import Result
from ..validation import fail
from .figure import check_png_path, pyplot, save_figure, wrap

__all__ = ["demo_plot", "pr_curve_plot", "error_vs_cost", "frontier_labels"]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def demo_plot(rows: list[dict[str, Any]], path: str) -> bool:
    """Write a PNG of P and R per defect to ``path``; False (and a message) when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    names = [f"{r['defect']}\n{r['strength']:g}" for r in rows]
    x = list(range(len(rows)))
    for ax, key in zip(axes, ("precision", "recall")):
        ax.bar([i - 0.27 for i in x], [r["exact"][key] for r in rows], 0.27, label="exact")
        ax.bar(x, [r["epr"][key] for r in rows], 0.27, label="eP&R (hubness)")
        values = [r["sampled"][key] for r in rows]
        ci = [r["sampled"][f"{key}_ci"] for r in rows]
        err = [[v - c[0] for v, c in zip(values, ci)], [c[1] - v for v, c in zip(values, ci)]]
        ax.bar([i + 0.27 for i in x], values, 0.27, label="sampled (95% CI)", yerr=err)
        ax.set_xticks(x, names, fontsize=7)
        ax.set_title(key)
    axes[0].legend()
    fig.tight_layout()
    save_figure(fig, path)
    print(f"plot: {path}")
    return True


def _is_number(label: Any) -> bool:
    return isinstance(label, numbers.Real) and not isinstance(label, bool) and math.isfinite(label)


def _curve(curve: Any) -> list[tuple[Hashable, Result]]:
    if not isinstance(curve, Mapping):
        raise fail(
            "curve",
            "a mapping label → Result (e.g. eprmetrics.pr_curve(...))",
            type(curve).__name__,
            error=TypeError,
            show=False,
        )
    if not curve:
        raise fail("curve", "at least one label → Result", "an empty mapping", show=False)
    bad = [label for label, res in curve.items() if not isinstance(res, Result)]
    if bad:
        raise fail(
            "curve",
            "Result values (from compute_pr / compute_epr)",
            f"{type(curve[bad[0]]).__name__} at label {bad[0]!r}",
            error=TypeError,
            show=False,
        )
    return list(curve.items())


def frontier_labels(curve: Mapping[Hashable, Result]) -> list[Hashable]:
    """The labels no other point beats on both precision and recall (the precision–recall frontier)."""
    return frontier(dict(_curve(curve)))


def _label_text(label: Hashable) -> str:
    """``0.1``, ``1.0``, ``500``, ``"ckpt-3"``: numbers without float noise, floats keep a decimal point."""
    if not _is_number(label):
        return str(label)
    text = f"{label:.6g}"
    return text + ".0" if isinstance(label, float) and text.lstrip("-").isdigit() else text


def _groups(items: list[tuple[Hashable, Result]], close: float = 0.02) -> list[tuple[str, float, float]]:
    """Consecutive points closer than ``close`` to the first of their run share one annotation
    (``"0.1–0.4"``), so labels of coinciding points do not print over each other."""
    out: list[tuple[str, float, float]] = []
    run: list[tuple[Hashable, Result]] = []
    for label, r in [*items, (None, None)]:
        if (
            r is not None
            and run
            and abs(r.recall - run[0][1].recall) < close
            and abs(r.precision - run[0][1].precision) < close
        ):
            run.append((label, r))
            continue
        if run:
            text = _label_text(run[0][0]) + ("" if len(run) == 1 else f"–{_label_text(run[-1][0])}")
            out.append((text, run[0][1].recall, run[0][1].precision))
        run = [] if r is None else [(label, r)]
    return out


def _error_bars(results: list[Result], key: str) -> Optional[list[list[float]]]:
    cis = [getattr(r, f"{key}_ci") for r in results]
    if all(ci is None for ci in cis):
        return None
    values = [getattr(r, key) for r in results]
    lo = [v - ci[0] if ci is not None else 0.0 for v, ci in zip(values, cis)]
    hi = [ci[1] - v if ci is not None else 0.0 for v, ci in zip(values, cis)]
    return [lo, hi]


def pr_curve_plot(
    curve: Mapping[Hashable, Result],
    path: Union[str, os.PathLike] = "pr_curve.png",
    *,
    xlabel: str = "setting",
    title: str = "",
) -> Union[str, bool]:
    """A PNG of precision and recall against the curve's labels (left; error bars from ``precision_ci`` /
    ``recall_ci`` where the results have them) and the precision–recall frontier (right: recall on x,
    precision on y, each point labelled; hollow points are beaten on both by another point).

    ``curve``: ``label → Result`` in order, e.g. ``eprmetrics.pr_curve(real, {psi: fake})``. Numeric labels
    (truncation ψ, a step count) are placed on a numeric axis, other labels in their order.
    Returns the path written, or False (and one message) when matplotlib is missing.
    """
    out = check_png_path(path)
    items = _curve(curve)
    plt = pyplot()
    if plt is None:
        return False
    labels, results = [label for label, _ in items], [r for _, r in items]
    numeric = all(_is_number(label) for label in labels)
    x = [float(cast(float, label)) for label in labels] if numeric else list(range(len(labels)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    for key, marker, colour in (("precision", "o", "tab:blue"), ("recall", "s", "tab:orange")):
        y = [getattr(r, key) for r in results]
        err = _error_bars(results, key)
        level = next((r.confidence for r in results if r.confidence is not None), None)
        interval = f" ({100 * level:.0f}% interval)" if err and level else " (interval)" if err else ""
        left.errorbar(x, y, yerr=err, marker=marker, color=colour, capsize=3, label=key + interval)
    if not numeric:
        left.set_xticks(
            x,
            [_label_text(label) for label in labels],
            rotation=30 if len(labels) > 5 else 0,
            ha="right" if len(labels) > 5 else "center",
        )
    left.set_ylim(-0.02, 1.05)
    left.set_xlabel(xlabel)
    left.set_ylabel("value")
    left.set_title(f"Precision and recall against {xlabel}")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=9)
    _frontier_panel(right, items)
    methods = sorted({r.method for r in results})
    ks = sorted({r.k for r in results})
    default = f"P&R of {len(items)} generated sets ({', '.join(methods)}; k = {', '.join(map(str, ks))})"
    fig.suptitle(wrap(title or default, 110))
    fig.tight_layout()
    return save_figure(fig, out)


def _frontier_panel(ax: Any, items: list[tuple[Hashable, Result]]) -> None:
    on = frontier_labels(dict(items))
    recall, precision = [r.recall for _, r in items], [r.precision for _, r in items]
    ax.plot(recall, precision, color="grey", linewidth=1, zorder=1)
    for label, r in items:
        face = "tab:green" if label in on else "white"
        ax.scatter([r.recall], [r.precision], s=40, facecolor=face, edgecolor="tab:green", zorder=2)
    for text, x, y in _groups(items):
        right = x > 0.75  # near the right edge the label goes to the left of its point
        offset = (-6 if right else 6, -12 if y > 0.9 else 5)
        ax.annotate(
            text, (x, y), textcoords="offset points", xytext=offset, ha="right" if right else "left", fontsize=8
        )
    ax.scatter([], [], s=40, facecolor="tab:green", edgecolor="tab:green", label="on the frontier")
    ax.scatter([], [], s=40, facecolor="white", edgecolor="tab:green", label="dominated (another has ≥ P and ≥ R)")
    ax.set_xlim(-0.02, 1.05)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision–recall frontier (points in label order)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")


def _cost_rows(rows: Any) -> list[tuple[str, float, float, str]]:
    """``(method, seconds, error[, point label])`` rows (or mappings with those keys), checked."""
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise fail("rows", "a list of (method, seconds, error) rows", type(rows).__name__, show=False)
    rows = list(rows)
    if not rows:
        raise fail("rows", "at least one (method, seconds, error) row", "an empty list", show=False)
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            row = (row.get("method"), row.get("seconds"), row.get("error"), row.get("label", ""))
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) not in (3, 4):
            raise fail(f"rows[{i}]", "(method, seconds, error) or (method, seconds, error, point label)", row)
        method, seconds, error, label = (*row, "")[:4]
        if not isinstance(method, str) or not method:
            raise fail(f"rows[{i}]", "a method name (str) first", method)
        if not _is_number(seconds) or seconds <= 0:
            raise fail(f"rows[{i}]", "a positive number of seconds second", seconds)
        if not _is_number(error) or error < 0:
            raise fail(f"rows[{i}]", "a non-negative finite error third", error)
        out.append((method, float(seconds), float(error), str(label)))
    return out


def error_vs_cost(
    rows: Iterable[Any],
    path: Union[str, os.PathLike] = "error_vs_cost.png",
    *,
    ylabel: str = "absolute error",
    title: str = "",
) -> Union[str, bool]:
    """A log-log PNG of error against wall time, one marker per method (its points joined in the order given).

    ``rows``: ``(method, seconds, error)`` or ``(method, seconds, error, point label)`` — e.g. the sampled
    estimator at several sample sizes (labels ``"n=500"`` …), hubness and exact P&R; or mappings with keys
    ``method``, ``seconds``, ``error``, ``label``. ``error`` may be an absolute error or an interval
    half-width (say which in ``ylabel``). A method whose errors are all 0 (exact P&R) is a vertical line at
    its time; a single 0 of another method sits on the axis floor as a hollow marker.
    Returns the path written, or False (and one message) when matplotlib is missing.
    """
    out = check_png_path(path)
    checked = _cost_rows(rows)
    plt = pyplot()
    if plt is None:
        return False
    positive = [e for _, _, e, _ in checked if e > 0]
    floor = min(positive) / 3 if positive else 1e-3
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for i, method in enumerate(dict.fromkeys(m for m, *_ in checked)):
        pts = [(s, e, lab) for m, s, e, lab in checked if m == method]
        _cost_method(ax, method, pts, i, floor)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(x=0.12, y=0.15)
    ax.autoscale_view()
    for axis in (ax.xaxis, ax.yaxis):
        _plain_log_ticks(axis)
    ax.set_xlabel("wall time (s, log scale)")
    ax.set_ylabel(wrap(f"{ylabel} (log scale)", 48))
    ax.set_title(wrap(title or "Error against cost", 80), fontsize=10.5)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8.5)
    fig.tight_layout()
    return save_figure(fig, out)


def _cost_method(ax: Any, method: str, pts: list[tuple[float, float, str]], i: int, floor: float) -> None:
    """One method's points (joined in order, labelled), or its vertical line when every error is 0."""
    colour, marker = f"C{i % 10}", MARKERS[i % len(MARKERS)]
    if all(e == 0 for _, e, _ in pts):
        for j, (s, _, _) in enumerate(pts):
            ax.axvline(s, color=colour, linestyle="--", label=f"{method}: error 0" if j == 0 else None)
            ax.update_datalim([(s, floor * 3)])  # the line's time inside the axis
        return
    ys = [max(e, floor) for _, e, _ in pts]
    ax.plot([s for s, _, _ in pts], ys, color=colour, linewidth=1, alpha=0.6)
    for (s, e, lab), y in zip(pts, ys):
        face = colour if e > 0 else "white"
        ax.scatter([s], [y], marker=marker, s=46, facecolor=face, edgecolor=colour, zorder=3)
        if lab:
            ax.annotate(lab, (s, y), textcoords="offset points", xytext=(6, 4), fontsize=7.5)
    ax.scatter([], [], marker=marker, s=46, color=colour, label=method)


def _plain_log_ticks(axis: Any) -> None:
    """Log-axis ticks as plain numbers (``0.5``, ``2``, ``0.001``) instead of ``2×10⁰``."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    lo, hi = sorted(axis.get_view_interval())
    subs = (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0) if lo > 0 and hi / lo < 12 else (2.0, 5.0)
    if lo > 0 and hi / lo < 40:  # about a decade or less: label minor ticks too
        axis.set_minor_locator(LogLocator(subs=subs))
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        axis.set_minor_formatter(NullFormatter())
