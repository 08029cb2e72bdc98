"""Figures people look at (matplotlib, the ``bench`` extra; without it each function prints one message
and returns False).

* :func:`hubness_histogram` — k-occurrence ``N_k`` histograms of both sets, the hub threshold marked;
* :func:`realism_grid` — the most and least realistic generated images by realism score;
* :func:`nearest_pairs` — the fakes closest to a real sample beside it (a memorisation check);
* :func:`pr_curve_plot` — precision and recall against a setting (truncation ψ…) and their frontier;
* :func:`error_vs_cost` — error against wall time per method, log-log;
* :func:`demo_plot` — the demo's bars; :func:`plot_run` — the figures of one CLI run (``--plot DIR``).

Each writes a PNG to ``path`` and returns the path. The selections behind the grids are functions of
their own (:func:`realism_extremes`, :func:`nearest_real_pairs`, :func:`hub_histograms`).
"""

from .charts import demo_plot, error_vs_cost, frontier_labels, pr_curve_plot
from .figure import MISSING
from .grids import nearest_pairs, realism_extremes, realism_grid
from .hubness import hub_histograms, hubness_histogram
from .run import PLOT_HELP, plot_features_dir, plot_run
from .search import NearestPairs, nearest_real_pairs

__all__ = [
    "hubness_histogram",
    "hub_histograms",
    "realism_grid",
    "realism_extremes",
    "nearest_pairs",
    "nearest_real_pairs",
    "NearestPairs",
    "pr_curve_plot",
    "frontier_labels",
    "error_vs_cost",
    "demo_plot",
    "plot_run",
    "plot_features_dir",
    "PLOT_HELP",
    "MISSING",
]
