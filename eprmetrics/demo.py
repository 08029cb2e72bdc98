"""The ``eprmetrics demo`` and ``eprmetrics bench`` jobs: synthetic pairs through every method, side by side.

* :func:`demo` — five defects (none, mode drop, truncation, outliers, noise):
  exact P&R vs eP&R (hubness, with its audit verdict) vs the sampled estimator
  (± its half-width, and whether its intervals hold the exact values);
* :func:`bench` — exact P&R against the fast methods on one pair: time,
  speed-up, peak memory and relative error.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Optional

from .api import compute_epr, compute_pr
from .estimators import AuditWarning
from .fileio import atomic_write
from .plots import demo_plot
from .report import format_bytes
from .result import Result
from .synthetic import make_pair
from .validation import fail

__all__ = ["demo", "bench", "bench_data", "DEMO_CASES"]

DEMO_CASES = [("none", 0.0), ("mode_drop", 0.5), ("truncation", 0.2), ("outliers", 0.3), ("noise", 0.1)]


def _write_json(path: str, rows: list[dict[str, Any]]) -> None:
    """The rows as JSON, written whole or not at all (a temporary file renamed over ``path``)."""
    with atomic_write(path, "--json", "w") as fh:
        json.dump(rows, fh, indent=2)


def _rel_err(exact: float, value: float) -> float:
    return abs(exact - value) / exact if exact else float("nan")


def _demo_row(real: Any, fake: Any, seed: int, opts: dict[str, Any]) -> tuple[Result, Result, Result, str]:
    exact = compute_pr(real, fake, **opts)
    with warnings.catch_warnings():  # the audit verdict is a column of the table
        warnings.simplefilter("ignore", AuditWarning)
        hub = compute_epr(real, fake, method="hubness", **opts)
    smp = compute_epr(real, fake, method="sampled", backend="ivf-gemm", seed=seed, **opts)  # sampled, not planned
    assert smp.precision_ci is not None and smp.recall_ci is not None and hub.audit is not None
    hw = [(hi - lo) / 2 for lo, hi in (smp.precision_ci, smp.recall_ci)]
    holds = all(lo <= v <= hi for v, (lo, hi) in ((exact.precision, smp.precision_ci), (exact.recall, smp.recall_ci)))
    line = (
        f"{exact.precision:>7.4f} {exact.recall:>7.4f} {exact.seconds:>6.2f}s | "
        f"{hub.precision:>7.4f} {hub.recall:>7.4f} {hub.seconds:>6.2f}s "
        f"{100 * _rel_err(exact.precision, hub.precision):>5.1f}% {100 * _rel_err(exact.recall, hub.recall):>5.1f}% "
        f"{'ok' if hub.audit.consistent else 'WARN':>6} | "
        f"{smp.precision:>7.4f}±{hw[0]:.4f} {smp.recall:>7.4f}±{hw[1]:.4f} {smp.seconds:>6.2f}s {str(holds):>8}"
    )
    return exact, hub, smp, line


def demo(
    n: int,
    dim: int,
    seed: int,
    k: int,
    opts: dict[str, Any],
    plot: Optional[str] = None,
    json_path: Optional[str] = None,
) -> list[dict[str, Any]]:
    """Print the demo table (and optionally plot it / write it as JSON); returns its rows.

    ``opts``: options for both entry points (strict, device, memory_budget, error_bound, precision, progress).
    """
    if n < 2 or dim < 1:
        raise fail("--n and --dim", "n ≥ 2 and dim ≥ 1", f"n={n}, dim={dim}", show=False)
    print(f"eprmetrics demo: synthetic VGG-like features, n={n} per set, dim={dim}, k={k}, t=3")
    print(
        f"{'defect':<12} {'strength':>8} | {'exact P':>7} {'exact R':>7} {'time':>7} | "
        f"{'eP&R P':>7} {'eP&R R':>7} {'time':>7} {'P err':>6} {'R err':>6} {'audit':>6} | "
        f"{'sampled P':>15} {'sampled R':>15} {'time':>7} {'CI holds':>8}"
    )
    rows = []
    for defect, strength in DEMO_CASES:
        real, fake = make_pair(n, n, dim=dim, defect=defect, strength=strength, seed=seed)
        exact, hub, smp, line = _demo_row(real, fake, seed, dict(opts, k=k))
        print(f"{defect:<12} {strength:>8.2f} | {line}")
        rows.append(
            {
                "defect": defect,
                "strength": strength,
                "exact": exact.to_dict(),
                "epr": hub.to_dict(),
                "sampled": smp.to_dict(),
            }
        )
    assert hub.hubs is not None
    print(
        f"\neP&R backend: {hub.backend} ({hub.backend_reason}); hubs: real {100 * hub.hubs['real'].fraction:.1f}%, "
        f"fake {100 * hub.hubs['fake'].fraction:.1f}%. eP&R is an estimate whose error depends on the data: "
        f"'audit' says whether it lies inside its sampled audit's 95% interval."
    )
    print(
        "sampled = compute_epr(backend='ivf-gemm'), the estimator itself (at this size the default compute_epr() "
        "computes exactly): unbiased, ± the 95% half-width; 'CI holds' = both intervals "
        "contain the exact values."
    )
    if plot:
        demo_plot(rows, plot)
    print("\nStages of the last exact run:")
    print(exact.stage_table())
    if json_path:
        _write_json(json_path, rows)
    return rows


def bench_data(real: Optional[str], fake: Optional[str], n: int, dim: int, seed: int) -> tuple[Any, Any, str]:
    """The bench's pair: two feature files, or a synthetic pair (truncation ψ = 0.9); and its description."""
    if bool(real) != bool(fake):
        raise fail(
            "--real and --fake",
            "both feature files, or neither for synthetic features",
            f"--real={real} --fake={fake}",
            show=False,
        )
    if real and fake:
        return real, fake, f"{real} vs {fake}"
    r, f = make_pair(n, n, dim=dim, defect="truncation", strength=0.1, seed=seed)
    return r, f, f"synthetic n={n} dim={dim} (truncation ψ=0.9)"


def bench(
    data: tuple[Any, Any, str], k: int, t: int, opts: dict[str, Any], json_path: Optional[str] = None
) -> list[dict[str, Any]]:
    """Exact P&R and the fast methods on one pair, in one process: time, speed-up, memory, error."""
    real, fake, what = data
    exact = compute_pr(real, fake, k=k, density_coverage=False, **opts)
    runs = [("exact compute_pr", exact)]
    variants: tuple[tuple[str, dict[str, Any]], ...] = (
        ("compute_epr (default)", {}),
        ("compute_epr hubness", {"method": "hubness"}),
        ("compute_epr radii=ann", {"method": "hubness", "radii": "ann"}),
        ("compute_epr sampled", {"method": "sampled", "backend": "ivf-gemm"}),
    )
    for label, extra in variants:
        runs.append((label, compute_epr(real, fake, k=k, t=t, **extra, **opts)))
    print(f"eprmetrics bench: {what}, k={k}, t={t}, device={exact.device}")
    print(
        f"{'method':<24} {'backend':<10} {'time':>8} {'speed-up':>8} {'peak RSS':>10} {'P':>7} {'R':>7} "
        f"{'P err':>6} {'R err':>6}"
    )
    rows = []
    for label, r in runs:
        pe, re_ = _rel_err(exact.precision, r.precision), _rel_err(exact.recall, r.recall)
        print(
            f"{label:<24} {r.backend or '-':<10} {r.seconds:>7.2f}s {exact.seconds / r.seconds:>7.2f}× "
            f"{format_bytes(r.peak_rss):>10} {r.precision:>7.4f} {r.recall:>7.4f} {100 * pe:>5.1f}% {100 * re_:>5.1f}%"
        )
        rows.append({"method": label, **r.to_dict()})
    if json_path:
        _write_json(json_path, rows)
    return rows
