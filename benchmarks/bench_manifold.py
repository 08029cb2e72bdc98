"""A ψ sweep against one real set: a reference manifold fitted once vs independent calls.

For each truncation ψ ∈ {0.1, …, 1.0} a fake set is drawn with the synthetic generator's truncation
defect (``z ← z̄ + ψ (z − z̄)``). Each point is computed twice, side by side in one process and in
alternating order: ``compute_pr(real, fake_ψ)`` (the real self pass every time) and
``compute_pr(manifold, fake_ψ)`` after one ``Manifold.fit(real)``. The values must be identical;
the table reports the times and the ratio of the totals (the fit included). ``--method sampled``
sweeps ``compute_epr`` the same way (fresh and reused estimates differ — different graphs stratify
differently — and both are checked against the exact values of the exact sweep).

    python -m benchmarks.bench_manifold --n 50000 --dim 512 --spectrum long
    python -m benchmarks.bench_manifold --n 20000 --dim 512 --spectrum low
    python -m benchmarks.bench_manifold --digits

Writes ``benchmarks/results/manifold_sweep_<tag>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Optional

import numpy as np

from benchmarks.common import RESULTS, machine, save
from eprmetrics import Manifold, compute_epr, compute_pr
from eprmetrics.synthetic import SyntheticSpec, generate

PSIS = tuple(round(0.1 * i, 1) for i in range(1, 11))


def _digits(seed: int) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """scikit-learn's digits (1,797 × 64): half as real; the other half pulled towards its mean by ψ."""
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    real, rest = x[order[: len(x) // 2]], x[order[len(x) // 2 :]]
    mean = rest.mean(0)
    return real, {psi: (mean + psi * (rest - mean)).astype(np.float32) for psi in PSIS}


def _synthetic(n: int, dim: int, spectrum: str, seed: int) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    spec = SyntheticSpec(dim=dim, seed=seed, spectrum=spectrum)
    real = generate(n, spec).numpy()
    fakes = {psi: generate(n, spec, defect="truncation", strength=1.0 - psi, stream=1).numpy() for psi in PSIS}
    return real, fakes


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _sweep(real: np.ndarray, fakes: dict[float, np.ndarray], method: str, k: int) -> dict[str, Any]:
    """Both ways, alternating which goes first so that the machine's drift falls on both."""

    def call(ref: Any, fake: np.ndarray) -> Any:
        if method == "exact":
            return compute_pr(ref, fake, k=k)
        return compute_epr(ref, fake, k=k, seed=0)

    manifold, fit_s = _timed(lambda: Manifold.fit(real, k=k))
    rows = []
    for i, (psi, fake) in enumerate(fakes.items()):
        runs = {}
        for way in ("fresh", "manifold") if i % 2 == 0 else ("manifold", "fresh"):
            ref = real if way == "fresh" else manifold
            runs[way] = _timed(lambda ref=ref, fake=fake: call(ref, fake))
        (fresh, t_fresh), (reused, t_reused) = runs["fresh"], runs["manifold"]
        row: dict[str, Any] = {"psi": psi, "fresh_s": t_fresh, "manifold_s": t_reused}
        for way, res in (("fresh", fresh), ("manifold", reused)):
            row[f"{way}_precision"], row[f"{way}_recall"] = res.precision, res.recall
            if res.precision_ci is not None:
                row[f"{way}_precision_ci"], row[f"{way}_recall_ci"] = list(res.precision_ci), list(res.recall_ci)
                row[f"{way}_path"] = res.plan.path
        row["identical"] = (fresh.precision, fresh.recall) == (reused.precision, reused.recall)
        for way, res in (("fresh", fresh), ("manifold", reused)):
            row[f"{way}_stages"] = {s.name: round(s.seconds, 3) for s in res.stages}
        rows.append(row)
        print(
            f"ψ={psi:.1f}: fresh {t_fresh:7.2f} s  manifold {t_reused:7.2f} s  "
            f"P {reused.precision:.4f} R {reused.recall:.4f}  identical={row['identical']}",
            flush=True,
        )
    fresh_total = sum(r["fresh_s"] for r in rows)
    reused_total = fit_s + sum(r["manifold_s"] for r in rows)
    return {
        "method": method,
        "fit_s": fit_s,
        "fresh_total_s": fresh_total,
        "manifold_total_s": reused_total,
        "speedup": fresh_total / reused_total,
        "rows": rows,
    }


def _held(sampled: dict[str, Any], exact: dict[str, Any]) -> dict[str, int]:
    """How many of the sampled intervals hold the exact value, per way."""
    truth = {r["psi"]: (r["fresh_precision"], r["fresh_recall"]) for r in exact["rows"]}
    held = {"fresh": 0, "manifold": 0, "intervals": 0}
    for r in sampled["rows"]:
        p, rc = truth[r["psi"]]
        for way in ("fresh", "manifold"):
            lo, hi = r[f"{way}_precision_ci"]
            lo_r, hi_r = r[f"{way}_recall_ci"]
            held[way] += int(lo <= p <= hi) + int(lo_r <= rc <= hi_r)
        held["intervals"] += 2
    return held


def _markdown(tag: str, runs: list[dict[str, Any]], info: dict[str, Any]) -> str:
    md = [f"# ψ sweep against one real set: reference manifold vs independent calls ({tag})", ""]
    md += [f"Machine: {info.get('cpu')}, {info['cpu_count']} cores, torch {info['torch']}, {info['date']}.", ""]
    for run in runs:
        md += [f"## {run['method']}", ""]
        md += [
            f"Manifold fit {run['fit_s']:.2f} s. Totals (10 points): independent {run['fresh_total_s']:.1f} s, "
            f"manifold {run['manifold_total_s']:.1f} s (fit included): **{run['speedup']:.2f}×**.",
            "",
        ]
        if "held" in run:
            h = run["held"]
            md += [
                f"Intervals holding the exact value: independent {h['fresh']}/{h['intervals']}, "
                f"manifold {h['manifold']}/{h['intervals']}.",
                "",
            ]
        md += ["| ψ | independent s | manifold s | precision | recall | identical |", "|---|---|---|---|---|---|"]
        for r in run["rows"]:
            md.append(
                f"| {r['psi']:.1f} | {r['fresh_s']:.2f} | {r['manifold_s']:.2f} | {r['manifold_precision']:.4f} | "
                f"{r['manifold_recall']:.4f} | {'yes' if r['identical'] else 'no'} |"
            )
        md.append("")
    return "\n".join(md)


def _plot(path: str, runs: list[dict[str, Any]], tag: str) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    exact = runs[0]["rows"]
    psi = [r["psi"] for r in exact]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(psi, [r["manifold_precision"] for r in exact], "o-", label="precision")
    axes[0].plot(psi, [r["manifold_recall"] for r in exact], "s-", label="recall")
    axes[0].set(xlabel="truncation ψ", ylabel="value", title=f"exact P&R vs ψ ({tag})")
    axes[0].legend()
    width = 0.035
    for i, run in enumerate(runs):
        off = (i - (len(runs) - 1) / 2) * 2 * width
        axes[1].bar([p + off - width / 2 for p in psi], [r["fresh_s"] for r in run["rows"]], width,
                    label=f"{run['method']}: independent calls")  # fmt: skip
        axes[1].bar([p + off + width / 2 for p in psi], [r["manifold_s"] for r in run["rows"]], width,
                    label=f"{run['method']}: with the manifold ({run['speedup']:.2f}× in total)")  # fmt: skip
    axes[1].set(xlabel="truncation ψ", ylabel="seconds per point", title="time per point (fit not shown)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--spectrum", choices=("low", "long"), default="long")
    ap.add_argument("--digits", action="store_true", help="scikit-learn's digits instead of synthetic data")
    ap.add_argument("--method", choices=("exact", "sampled", "both"), default="both")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.digits:
        tag, (real, fakes) = "digits", _digits(args.seed)
    else:
        tag = f"{args.n // 1000}k_{args.dim}_{args.spectrum}"
        real, fakes = _synthetic(args.n, args.dim, args.spectrum, args.seed)
    runs = [_sweep(real, fakes, "exact", args.k)]
    _write(tag, real, args.k, runs)  # kept even if the sampled sweep is stopped
    if args.method in ("sampled", "both"):
        runs.append(_sweep(real, fakes, "sampled", args.k))
        runs[1]["held"] = _held(runs[1], runs[0])
        _write(tag, real, args.k, runs)


def _write(tag: str, real: np.ndarray, k: int, runs: list[dict[str, Any]]) -> None:
    info = machine()
    payload = {"tag": tag, "n_real": len(real), "dim": real.shape[1], "k": k, "machine": info, "runs": runs}
    j, m = save(f"manifold_sweep_{tag}", payload, _markdown(tag, runs, info))
    png = _plot(f"{RESULTS}/manifold_sweep_{tag}.png", runs, tag)
    for run in runs:
        print(f"{run['method']}: independent {run['fresh_total_s']:.1f} s, manifold {run['manifold_total_s']:.1f} s "
              f"→ {run['speedup']:.2f}×")  # fmt: skip
    print(j, m, png or "(no plot: matplotlib missing)", flush=True)


if __name__ == "__main__":
    main()
