"""Figures: the demo's precision and recall per defect (exact vs eP&R vs sampled with its interval).

Needs matplotlib (the ``bench`` extra); without it the plot is skipped with a message.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["demo_plot"]


def demo_plot(rows: list[dict[str, Any]], path: str) -> bool:
    """Write a PNG of P and R per defect to ``path``; False (and a message) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is missing (pip install 'eprmetrics[bench]')")
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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}")
    return True
