"""The figures of :mod:`eprmetrics.plots` on synthetic data, with the data behind them.

Writes ``benchmarks/results/plots_{hubness,realism_grid,nearest_pairs,pr_vs_psi,error_vs_cost}.png`` and
``plots.{json,md}``:

* images: rendered coloured blobs (32×32). The real set is one blob per image (six hues, random place and
  size); the generated set mixes good samples of the same distribution, a few memorised real images (a
  copy plus faint noise) and defective samples (two blobs in off-palette colours, or heavy pixel noise).
  Features from a small random convolutional network through ``extract_features``; realism from
  ``compute_pr(realism=True)``. The grids should show the defects as least realistic and the copies as
  the nearest pairs (the counts are in ``plots.md``);
* hubness: VGG-like synthetic features (``eprmetrics.synthetic``), real vs a truncated fake set;
* P&R vs ψ: one real set and fakes drawn with the truncation trick at ψ = 0.1 … 1.0, each through compute_pr;
* error vs cost: compute_pr (exact) against compute_epr sampled at several sample sizes and hubness.

From the repository root (one to two minutes on 2 CPU cores)::

    python -m benchmarks.bench_plots
    python -m benchmarks.bench_plots --n-images 1000 --n 4000    # smaller
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from typing import Any, Optional

import numpy as np
import torch

from benchmarks.common import RESULTS, machine, save
from eprmetrics import AuditWarning, compute_epr, compute_pr
from eprmetrics.features import extract_features
from eprmetrics.plots import (
    error_vs_cost,
    hub_histograms,
    hubness_histogram,
    nearest_pairs,
    nearest_real_pairs,
    pr_curve_plot,
    realism_extremes,
    realism_grid,
)
from eprmetrics.synthetic import SyntheticSpec, generate

warnings.simplefilter("ignore", AuditWarning)  # the audit's verdict is not what these figures show

# Six hues of the real blobs (RGB); defective fakes use the off-palette ones.
PALETTE = np.array([[220, 50, 47], [38, 139, 210], [133, 153, 0], [211, 54, 130], [181, 137, 0], [42, 161, 152]])
OFF_PALETTE = np.array([[90, 90, 90], [120, 80, 40], [30, 30, 30]])
KINDS = ("good", "copy", "two blobs", "noisy")


def _blob_masks(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """n Gaussian blobs, random centre and width: n × size × size weights in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = rng.uniform(0.28 * size, 0.72 * size, (2, n))
    sigma = rng.uniform(0.09 * size, 0.17 * size, n)
    d2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
    return np.exp(-d2 / (2 * sigma[:, None, None] ** 2))


def render(rng: np.random.Generator, n: int, size: int = 32, palette: np.ndarray = PALETTE) -> np.ndarray:
    """n images of one coloured blob on a light background: uint8 n × size × size × 3."""
    colour = palette[rng.integers(0, len(palette), n)] + rng.normal(0, 10, (n, 3))
    w = _blob_masks(rng, n, size)[..., None]
    background = 236 + rng.normal(0, 3, (n, size, size, 3))
    return np.clip(np.rint(background * (1 - w) + colour[:, None, None, :] * w), 0, 255).astype(np.uint8)


def image_sets(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real images, generated images and the kind of each generated one (index into :data:`KINDS`)."""
    rng = np.random.default_rng(seed)
    real = render(rng, n, size)
    kinds = rng.choice(len(KINDS), size=n, p=[0.86, 0.02, 0.06, 0.06])
    fake = render(rng, n, size)
    copies = np.flatnonzero(kinds == 1)
    source = rng.choice(n, size=copies.size, replace=False)
    noise = rng.normal(0, 1.5, (copies.size, size, size, 3))
    fake[copies] = np.clip(np.rint(real[source] + noise), 0, 255).astype(np.uint8)
    two = np.flatnonzero(kinds == 2)
    first, second = render(rng, two.size, size, OFF_PALETTE), render(rng, two.size, size, OFF_PALETTE)
    fake[two] = np.minimum(first, second)  # both blobs show (darker wins)
    noisy = np.flatnonzero(kinds == 3)
    fake[noisy] = np.clip(fake[noisy] + rng.normal(0, 45, (noisy.size, size, size, 3)), 0, 255).astype(np.uint8)
    return real, fake, kinds


class RandomConvNet(torch.nn.Module):
    """A small untrained convolutional network (fixed seed): images in [0, 1] → 256 features."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 24, 5, stride=2, padding=2),
            torch.nn.ReLU(),
            torch.nn.Conv2d(24, 32, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(4),
            torch.nn.Flatten(),
            torch.nn.Linear(512, 256),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def image_figures(args: argparse.Namespace) -> dict[str, Any]:
    """Realism grid and nearest pairs of the blob images; which kinds of fakes each figure picked."""
    real, fake, kinds = image_sets(args.n_images, args.seed)
    net = RandomConvNet(args.seed)
    feats = [
        extract_features(x, name=name, extractor=net, progress=False) for x, name in ((real, "real"), (fake, "fake"))
    ]
    res = compute_pr(feats[0], feats[1], k=args.k, realism=True, device=args.device)
    assert res.realism is not None
    png = os.path.join(RESULTS, "plots_realism_grid.png")
    title = f"Blob images by realism score, k = {args.k} (under each: score, #index; ≥ 1: inside a real k-NN ball)"
    realism_grid(fake, res.realism, png, n=args.grid, title=title)
    most, least = realism_extremes(res.realism, args.grid)
    nearest_pairs(
        real, fake, feats[0], feats[1], os.path.join(RESULTS, "plots_nearest_pairs.png"), n=args.grid, k=args.k
    )
    pairs = nearest_real_pairs(feats[0], feats[1], args.grid, k=args.k)
    share = {kind: float(np.mean(kinds == i)) for i, kind in enumerate(KINDS)}
    return {
        "n_real": len(real),
        "n_fake": len(fake),
        "precision": res.precision,
        "recall": res.recall,
        "kind_share": share,
        "most_realistic": [{"index": int(i), "score": float(res.realism[i]), "kind": KINDS[kinds[i]]} for i in most],
        "least_realistic": [{"index": int(i), "score": float(res.realism[i]), "kind": KINDS[kinds[i]]} for i in least],
        "nearest_pairs": [
            {"fake": int(f), "real": int(r), "distance": float(d), "ratio": float(q), "kind": KINDS[kinds[f]]}
            for f, r, d, q in zip(pairs.fake, pairs.real, pairs.distance, pairs.ratio)
        ],
    }


def hubness_figure(args: argparse.Namespace) -> dict[str, Any]:
    spec = SyntheticSpec(dim=args.dim, seed=args.seed)
    real = generate(args.n_hub, spec, stream=0).numpy()
    fake = generate(args.n_hub, spec, stream=1, defect="truncation", strength=0.3).numpy()
    title = (
        f"Hubness of VGG-like synthetic features (n = {args.n_hub:,} per set, d = {args.dim})\n"
        f"real vs a truncated fake (ψ = 0.7), k = {args.k}"
    )
    png = os.path.join(RESULTS, "plots_hubness.png")
    hubness_histogram(real, fake, k=args.k, path=png, t=args.t, device=args.device, title=title)
    stats = hub_histograms(real, fake, args.k, args.t, device=args.device)
    return {
        "n": args.n_hub,
        "dim": args.dim,
        "fake": "truncation ψ = 0.7",
        "t": args.t,
        "sets": {name: {"hub_fraction": s.fraction, "histogram": s.histogram} for name, s in stats.items()},
    }


def psi_figure(args: argparse.Namespace) -> dict[str, Any]:
    spec = SyntheticSpec(dim=args.dim, seed=args.seed)
    real = generate(args.n_psi, spec, stream=0).numpy()
    curve = {}
    for psi in np.round(np.arange(0.1, 1.01, 0.1), 1):
        fake = generate(args.n_psi, spec, stream=1, defect="truncation", strength=float(1.0 - psi)).numpy()
        curve[float(psi)] = compute_pr(real, fake, k=args.k, density_coverage=False, device=args.device)
    title = f"Truncation sweep: exact P&R of fakes drawn at ψ (synthetic, n = {args.n_psi:,} per set, d = {args.dim})"
    pr_curve_plot(curve, os.path.join(RESULTS, "plots_pr_vs_psi.png"), xlabel="truncation ψ", title=title)
    return {str(psi): {"precision": r.precision, "recall": r.recall, "seconds": r.seconds} for psi, r in curve.items()}


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def cost_figure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Largest absolute error of P and R against time: exact, sampled at several sizes, hubness.

    The methods run in turn, ``repeats`` rounds (a new seed of the sampled estimator each), after a warm-up
    call that calibrates the planner; a point's time is its fastest round, so that a burst of load on a
    shared machine hits every method alike and makes no point. Sampled errors are the mean over rounds."""
    spec = SyntheticSpec(dim=args.dim, seed=args.seed)
    real = generate(args.n, spec, stream=0).numpy()
    fake = generate(args.n, spec, stream=1, defect="truncation", strength=0.2).numpy()
    opts = dict(k=args.k, device=args.device)
    compute_epr(real[:2000], fake[:2000], backend="ivf-gemm", sample_size=100, **opts)  # warm-up, not timed
    calls = {"exact (compute_pr)": lambda s: compute_pr(real, fake, density_coverage=False, **opts)}
    for size in args.sample_sizes:
        calls[f"n={size}"] = lambda s, n=size: compute_epr(
            real, fake, backend="ivf-gemm", sample_size=n, seed=s, **opts
        )
    calls[f"hubness (eP&R, t={args.t})"] = lambda s: compute_epr(
        real, fake, method="hubness", t=args.t, audit=False, **opts
    )
    runs: dict[str, list[tuple[Any, float]]] = {name: [] for name in calls}
    for seed in range(args.repeats):
        for name, call in calls.items():
            runs[name].append(_timed(lambda c=call, s=seed: c(s)))
    exact = runs["exact (compute_pr)"][0][0]

    def error(r: Any) -> float:
        return max(abs(r.precision - exact.precision), abs(r.recall - exact.recall))

    sampled = f"sampled (ivf-gemm; error: mean of {args.repeats} seeds)"
    rows = []
    for name, done in runs.items():
        row = {"method": sampled if name.startswith("n=") else name, "label": name if name.startswith("n=") else ""}
        row.update(seconds=min(t for _, t in done), error=float(np.mean([error(r) for r, _ in done])))
        if name.startswith("n="):
            row["half_width"] = float(np.mean([(r.precision_ci[1] - r.precision_ci[0]) / 2 for r, _ in done]))
        rows.append(row)
    gpu = torch.cuda.is_available() and args.device != "cpu"
    where = torch.cuda.get_device_name() if gpu else f"{os.cpu_count()} shared CPU cores"
    title = (
        f"Error against cost: synthetic, n = {args.n:,} per set, d = {args.dim}, ψ = 0.8, k = {args.k}\n"
        f"time: fastest of {args.repeats} rounds of every method on {where}"
    )
    error_vs_cost(
        rows,
        os.path.join(RESULTS, "plots_error_vs_cost.png"),
        ylabel="max(|ΔP|, |ΔR|) against exact P&R",
        title=title,
    )
    return rows


def _markdown(args: argparse.Namespace, data: dict[str, Any], seconds: float) -> str:
    img = data["images"]
    least = sum(r["kind"] in ("two blobs", "noisy") for r in img["least_realistic"])
    copies = sum(r["kind"] == "copy" for r in img["nearest_pairs"])
    md = [
        f"# Figures of eprmetrics.plots on synthetic data ({seconds:.0f} s)",
        "",
        "| figure | shows |",
        "|---|---|",
        "| `plots_hubness.png` | k-occurrence histograms, real vs truncated fake, hub threshold |",
        "| `plots_realism_grid.png` | most / least realistic generated blob images |",
        "| `plots_nearest_pairs.png` | generated images closest to a real one (memorisation check) |",
        "| `plots_pr_vs_psi.png` | exact P&R against truncation ψ, and the P–R frontier |",
        "| `plots_error_vs_cost.png` | error vs wall time: exact, sampled at several sizes, hubness |",
        "",
        f"## Images ({img['n_real']} real, {img['n_fake']} generated, 32×32; P = {img['precision']:.3f}, "
        f"R = {img['recall']:.3f})",
        "",
        "Generated kinds: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in img["kind_share"].items()) + ".",
        f"Of the {len(img['least_realistic'])} least realistic, {least} are defective (two blobs or noisy); "
        f"of the {len(img['nearest_pairs'])} nearest pairs, {copies} are memorised copies.",
        "",
        "## Hubness",
        "",
        "| set | hub fraction (N_k ≥ t) |",
        "|---|---|",
    ]
    md += [f"| {name} | {100 * s['hub_fraction']:.1f}% |" for name, s in data["hubness"]["sets"].items()]
    md += ["", "## P&R vs ψ", "", "| ψ | precision | recall |", "|---|---|---|"]
    md += [f"| {psi} | {r['precision']:.4f} | {r['recall']:.4f} |" for psi, r in data["pr_vs_psi"].items()]
    md += ["", "## Error vs cost", "", f"Time: fastest of {args.repeats} rounds (every method in each round).", ""]
    md += ["| method | point | time s | max abs error of P, R |", "|---|---|---|---|"]
    md += [f"| {r['method']} | {r['label']} | {r['seconds']:.2f} | {r['error']:.4f} |" for r in data["error_vs_cost"]]
    md += [
        "",
        f"Times are wall-clock on a machine shared with other jobs (load average {data['load']['start']:.1f} at the "
        f"start, {data['load']['end']:.1f} at the end, {os.cpu_count()} cores): compare them within this run only.",
        "",
        f"Arguments: `{json.dumps(vars(args))}`",
        "",
        f"Machine: `{json.dumps(machine())}`",
        "",
    ]
    return "\n".join(md)


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=2000, help="real and generated images each")
    ap.add_argument("--grid", type=int, default=8, help="images per realism panel and nearest pairs")
    ap.add_argument("--n-hub", type=int, default=5000, help="hubness: samples per set")
    ap.add_argument("--n-psi", type=int, default=3000, help="ψ sweep: samples per set")
    ap.add_argument("--n", type=int, default=10000, help="error vs cost: samples per set")
    ap.add_argument("--dim", type=int, default=512, help="synthetic feature dimension")
    ap.add_argument("--sample-sizes", type=int, nargs="+", default=[250, 1000, 4000])
    ap.add_argument("--repeats", type=int, default=3, help="runs per point (seeds of the sampled estimator)")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--t", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    t0, load = time.perf_counter(), os.getloadavg()[0]
    data: dict[str, Any] = {"images": image_figures(args), "hubness": hubness_figure(args)}
    data["pr_vs_psi"] = psi_figure(args)
    data["error_vs_cost"] = cost_figure(args)
    data["load"] = {"start": load, "end": os.getloadavg()[0]}
    seconds = time.perf_counter() - t0
    md = _markdown(args, data, seconds)
    j, m = save("plots", {"args": vars(args), "machine": machine(), "seconds": seconds, **data}, md)
    print(md)
    print(f"wrote {j}, {m} and benchmarks/results/plots_*.png")


if __name__ == "__main__":
    main()
