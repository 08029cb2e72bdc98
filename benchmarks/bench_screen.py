"""The projection screen against full rows, side by side: the same sampled decisions, and what they cost.

For each kind of data, ``compute_epr(method="sampled", backend="ivf-pca")`` runs three times in one process
with the same seed — ``screen=False`` (full rows), ``screen=True`` and ``screen="auto"`` (the pilot decides)
— so the graphs, strata and sample are the same and only the decisions' path differs. The estimates must be
identical (the screen only skips what cannot change a decision); the table gives the stages the screen
changes, the share of pairs it let through to a float64 distance, and the pilot's share that ``"auto"``
decided on.

Data: the synthetic generator's two spectra (``low``: a 32-dimensional latent manifold; ``long``: variance
spread like real embeddings) at ``--n`` × ``--dim``, and scikit-learn's digits (offline) through a fixed
random ReLU layer to ``--dim`` features (899 real, 898 fake images: small, a check of the pass share on
image-derived data rather than a timing).

    python -m benchmarks.bench_screen --n 100000 --dim 4096
    python -m benchmarks.bench_screen --n 20000 --dim 1024 --tag small
    python -m benchmarks.bench_screen --n 400000 --dim 4096 --device cuda --tag gpu

Results: ``benchmarks/results/screen_<n>_<dim>[_<tag>].{json,md}``.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

import numpy as np

from benchmarks.bench_sampled import synthetic
from benchmarks.common import machine, save
from eprmetrics import compute_epr

MODES = (("full rows", False), ("screen", True), ("auto", "auto"))


def digits_relu(dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits (offline) through a fixed random ReLU layer: even images real, odd fake."""
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float32) / 16.0
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(64, dim)).astype(np.float32) / 8.0
    feats = np.maximum(x @ w - 0.5, 0.0).astype(np.float32)
    return feats[0::2], feats[1::2]


def _stage(res: Any, words: str) -> float:
    return float(sum(s.seconds for s in res.stages if words in s.name))


def run_one(
    real: np.ndarray, fake: np.ndarray, mode: object, sample_size: object, seed: int, device: str
) -> dict[str, Any]:
    t0 = time.perf_counter()
    res = compute_epr(
        real, fake, method="sampled", backend="ivf-pca", sample_size=sample_size, seed=seed, screen=mode, device=device
    )
    wall = time.perf_counter() - t0
    sides = {}
    for side in ("precision", "recall"):
        s = res.sampling[side]
        sides[side] = {
            "estimate": s.estimate,
            "interval": list(s.interval),
            "sample_size": s.sample_size,
            "true_radii": s.true_radii_computed,
            "screen": s.screen,
            "screen_s": _stage(res, f"{side}: projection screen"),
            "membership_s": _stage(res, f"{side}: exact membership"),
        }
    return {"wall_s": wall, "path": res.plan.path if res.plan else None, "sides": sides}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    data = [
        (f"synthetic, low spectrum, truncation 0.1 ({args.n:,} per set)", "low"),
        (f"synthetic, long spectrum, truncation 0.1 ({args.n:,} per set)", "long"),
        ("sklearn digits through a random ReLU layer (899 / 898)", "digits"),
    ]
    rows = []
    for label, kind in data:
        if kind == "digits":
            real, fake = digits_relu(args.dim, args.seed)
            size: object = 400
        else:
            real, fake = synthetic(args.n, args.dim, "truncation", 0.1, args.seed, kind)
            size = 0.01
        runs = {}
        for name, mode in MODES:
            gc.collect()
            runs[name] = run_one(real, fake, mode, size, args.seed, args.device)
            r = runs[name]
            print(
                f"{label} | {name}: {r['wall_s']:.1f} s, P {r['sides']['precision']['estimate']:.4f} "
                f"R {r['sides']['recall']['estimate']:.4f}, membership "
                f"{r['sides']['precision']['membership_s']:.1f} / {r['sides']['recall']['membership_s']:.1f} s",
                flush=True,
            )
        est = {name: [(s["estimate"], s["interval"]) for s in r["sides"].values()] for name, r in runs.items()}
        identical = all(v == est["full rows"] for v in est.values())
        rows.append({"data": label, "kind": kind, "identical_estimates": identical, "runs": runs})
        del real, fake

    lines = [
        f"# Projection screen vs full rows — sampled decisions, d = {args.dim}, device {args.device}",
        "",
        "`compute_epr(method='sampled', backend='ivf-pca', seed=0)` three times per data set in one process: "
        "`screen=False` (full rows), `True`, `'auto'` (the pilot decides). Times in seconds; *membership* is "
        "the stage deciding the sampled queries exactly (precision / recall), *screen* the stage fitting "
        "the directions and projecting the reference set; *passed* the share of screened pairs that needed a "
        "float64 distance; *pilot* the share `'auto'` decided on (kept at ≤ 0.25%).",
        "",
        "| data | run | wall | screen P / R | membership P / R | passed P / R | pilot P / R | P | R | "
        "same as full rows |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for name, r in row["runs"].items():
            p, q = r["sides"]["precision"], r["sides"]["recall"]

            def share(s: dict, key: str) -> str:
                v = (s["screen"] or {}).get(key)
                return "-" if v is None else f"{100 * v:.3f}%"

            lines.append(
                f"| {row['data']} | {name} | {r['wall_s']:.1f} | {p['screen_s']:.1f} / {q['screen_s']:.1f} | "
                f"{p['membership_s']:.1f} / {q['membership_s']:.1f} | {share(p, 'share')} / {share(q, 'share')} | "
                f"{share(p, 'pilot_share')} / {share(q, 'pilot_share')} | {p['estimate']:.4f} | {q['estimate']:.4f} | "
                f"{'yes' if row['identical_estimates'] else 'NO'} |"
            )
    info = machine()
    lines += ["", f"Machine: {info.get('cpu')}, {info['cpu_count']} cores, torch {info['torch']}, {info['date']}."]
    tag = f"_{args.tag}" if args.tag else ""
    paths = save(
        f"screen_{args.n}_{args.dim}{tag}", {"args": vars(args), "machine": info, "rows": rows}, "\n".join(lines)
    )
    print("\n".join(lines))
    print("wrote", *paths)


if __name__ == "__main__":
    main()
