"""The k-occurrence histogram of both sets: how often each point is among the k nearest neighbours of others."""

from __future__ import annotations

import os
from typing import Any, Union

import numpy as np

from ..defaults import DEFAULTS
from ..inputs import as_feature_set, validate_pair
from ..neighbours import HubStats, hub_stats, k_occurrence, knn_graph
from ..validation import check_int
from .figure import check_png_path, pyplot, save_figure, wrap
from .search import exact_graph_indices

__all__ = ["hub_histograms", "hubness_histogram"]


def hub_histograms(
    real: Any,
    fake: Any,
    k: int = DEFAULTS["k"],
    t: int = DEFAULTS["t"],
    *,
    backend: str = "auto",
    device: str = DEFAULTS["device"],
    seed: int = DEFAULTS["seed"],
) -> dict[str, HubStats]:
    """``N_k`` histogram and hub count at ``t`` of each set (``{"real": …, "fake": …}``), from its k-NN graph.

    ``real``, ``fake``: features (arrays, tensors, ``.npy``/``.npz`` paths); ``backend``: the k-NN backend
    (``"auto"`` or a name of :func:`eprmetrics.neighbours.backend_names`).
    """
    k = check_int(k, "k", fix="e.g. k=3")
    t = check_int(t, "t", minimum=0, fix="hubs are the points with N_k ≥ t, e.g. t=3")
    sets = [as_feature_set(v, name) for v, name in ((real, "real"), (fake, "fake"))]
    validate_pair(sets[0], sets[1], k)
    out = {}
    for fs in sets:  # the exact graph on this process alone; another backend as knn_graph runs it
        if backend == "exact":
            idx = exact_graph_indices(fs, k, device)
        else:
            _, idx = knn_graph(fs.data, k, backend=backend, seed=seed, device=device)
        out[fs.name] = hub_stats(k_occurrence(idx, fs.n), t)
    return out


def hubness_histogram(
    real: Any,
    fake: Any,
    k: int = DEFAULTS["k"],
    path: Union[str, os.PathLike] = "hubness.png",
    *,
    t: int = DEFAULTS["t"],
    backend: str = "auto",
    device: str = DEFAULTS["device"],
    title: str = "",
) -> Union[str, bool]:
    """A PNG of the k-occurrence ``N_k`` histograms of ``real`` and ``fake`` (log-scale counts), the hub
    threshold ``t`` marked and each set's hub fraction (``N_k ≥ t``) in the legend. The graphs are built
    as :func:`hub_histograms` builds them (an ANN backend seeded 0).

    Returns the path written, or False (and one message) when matplotlib is missing.

    Raises:
        ValueError: bad ``k``/``t``/``path`` or features (naming the argument).
    """
    out = check_png_path(path)
    k = check_int(k, "k", fix="e.g. k=3")
    t = check_int(t, "t", minimum=0, fix="hubs are the points with N_k ≥ t, e.g. t=3")
    plt = pyplot()
    if plt is None:
        return False
    stats = hub_histograms(real, fake, k, t, backend=backend, device=device)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    top = max(len(s.histogram) for s in stats.values())
    ax.axvspan(t - 0.5, max(top, t + 1) - 0.5, color="0.93", zorder=0)
    for (name, s), colour in zip(stats.items(), ("tab:blue", "tab:orange")):
        counts = np.zeros(top)
        counts[: len(s.histogram)] = s.histogram
        label = f"{name} (n = {s.n:,}): {100 * s.fraction:.1f}% hubs, largest $N_k$ = {len(s.histogram) - 1}"
        ax.stairs(counts, np.arange(top + 1) - 0.5, color=colour, linewidth=1.8, label=label)
    ax.axvline(
        t - 0.5, color="black", linestyle="--", linewidth=1.2, label=f"hub threshold t = {t} (hubs: $N_k$ ≥ t, shaded)"
    )
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)
    ax.set_xlim(-0.5, max(top, t + 1) - 0.5)
    ax.set_xlabel(f"$N_k$: times a point is among the k = {k} nearest neighbours of the other points of its set")
    ax.set_ylabel("number of points (log scale)")
    ax.set_title(wrap(title or f"Hubness: k-occurrence histogram of each set (k = {k})", 80), fontsize=11)
    ax.grid(True, which="major", axis="y", alpha=0.3)
    ax.legend(fontsize=8.5, loc="upper right")
    fig.tight_layout()
    return save_figure(fig, out)
