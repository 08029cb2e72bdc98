"""Default ``compute_epr()`` (planner: exact or sampled) against exact ``compute_pr``, one process per call.

For each configuration (n per set × d × data kind) a fresh process builds the data and times
``compute_pr(density_coverage=False)``, another a default ``compute_epr()``; the ratio of the two, whether
the default's intervals hold the exact value, the path the planner took, and its predicted total against
the measured one are reported.

Data kinds: ``low`` (the synthetic generator: low intrinsic dimension), ``long`` (its long-spectrum
option, like real embeddings), ``digits`` (scikit-learn's handwritten digits, 1,797 real images of 8×8
pixels; halves as real and fake, features = pixels through a fixed random ReLU layer to d dimensions).

Usage (from the repository root)::

    python -m benchmarks.bench_planner                          # the acceptance grid (both spectra + digits)
    python -m benchmarks.bench_planner --n 5000 12000 --dims 512 --kinds low --name planner_smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

from benchmarks.common import machine, run_worker, save
from eprmetrics.synthetic import SPECTRA

DEFAULT_N = [5000, 12000, 20000, 50000]
DEFAULT_DIMS = [512, 1024, 4096]
LARGEST_AT_512_ONLY = 50000


def _digits(dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float32) / 16.0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    w = rng.normal(size=(x.shape[1], dim)).astype(np.float32) / np.sqrt(x.shape[1])
    feats = np.maximum(x[order] @ w, 0.0)
    half = len(feats) // 2
    return feats[:half], feats[half:]


def _data(kind: str, n: int, dim: int, seed: int) -> tuple[Any, Any]:
    if kind == "digits":
        return _digits(dim, seed)
    from eprmetrics.synthetic import make_pair

    return make_pair(n, n, dim=dim, defect="truncation", strength=0.2, seed=seed, spectrum=kind)


def _worker(args: argparse.Namespace) -> None:
    from eprmetrics import compute_epr, compute_pr

    real, fake = _data(args.kind, args.n, args.dim, args.seed)
    start = time.perf_counter()
    if args.method == "exact":
        res = compute_pr(real, fake, density_coverage=False, progress=False)
    else:
        res = compute_epr(real, fake, seed=args.seed, progress=False)
    wall = time.perf_counter() - start
    out: dict[str, Any] = {
        "precision": res.precision,
        "recall": res.recall,
        "wall": wall,
        "seconds": res.seconds,
        "n_real": res.n_real,
        "n_fake": res.n_fake,
    }
    if res.plan is not None:
        if not res.plan.predicted:  # exact taken without a measurement: predict after the timed call, for the report
            import torch

            from eprmetrics.estimators import planner

            rates = planner.calibrate(torch.device("cpu"), res.dim)
            res.plan.predicted = planner.exact_cost(res.n_real, res.n_fake, res.dim, rates)
            out["predicted_after_the_call"] = True
        out.update(
            path=res.plan.path,
            reason=res.plan.reason,
            predicted=res.plan.predicted,
            predicted_total=res.plan.predicted_total,
            actual=res.plan.actual,
            backend=res.backend,
            precision_ci=res.precision_ci,
            recall_ci=res.recall_ci,
            alternative=res.plan.alternative,
        )
    print(json.dumps(out))


def _configs(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    out = []
    for kind in args.kinds:
        if kind == "digits":
            out += [("digits", 1797, d) for d in args.dims]
            continue
        for n in args.n:
            for d in args.dims:
                if n >= LARGEST_AT_512_ONLY and d != 512:
                    continue
                out.append((kind, n, d))
    return out


def _holds(exact: dict[str, Any], fast: dict[str, Any]) -> bool:
    (plo, phi), (rlo, rhi) = fast["precision_ci"], fast["recall_ci"]
    return plo <= exact["precision"] <= phi and rlo <= exact["recall"] <= rhi


def _row(kind: str, n: int, d: int, seed: int, repeat: int) -> dict[str, Any]:
    """``repeat`` alternating (exact, default) pairs of processes; the run of median wall time stands for each."""
    common = ["--kind", kind, "--n", str(n), "--dim", str(d), "--seed", str(seed)]
    exact_runs, fast_runs = [], []
    for _ in range(repeat):
        exact_runs.append(run_worker("bench_planner", ["--method", "exact", *common]))
        fast_runs.append(run_worker("bench_planner", ["--method", "default", *common]))
    row: dict[str, Any] = {"kind": kind, "n": n, "dim": d, "exact": exact_runs[0], "default": fast_runs[0]}
    if all("error" not in r for r in exact_runs + fast_runs):
        exact, fast = _median_run(exact_runs), _median_run(fast_runs)
        walls = [r["wall"] for r in exact_runs]
        row.update(
            exact=exact,
            default=fast,
            ratio=fast["wall"] / exact["wall"],
            holds=all(_holds(exact, f) for f in fast_runs),
            prediction_ratio=statistics.median(f["predicted_total"] / f["seconds"] for f in fast_runs),
            repeat=repeat,
            exact_spread=max(walls) / min(walls),  # the noise of identical work, for reading the ratio
            exact_runs=exact_runs,
            default_runs=fast_runs,
        )
    return row


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]


def _markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        "# Default compute_epr() (planner) vs exact compute_pr",
        "",
        f"Machine: {info.get('cpu')} ({info.get('cpu_count')} cores), torch {info.get('torch')}, {info.get('date')}. "
        "One fresh process per call; wall time of the call (data generation excluded); with several runs,"
        " exact and default alternate and the median of each is shown (exact's spread: its slowest run over"
        " its fastest, the noise of identical work).",
        "",
        "| data | n per set | d | runs | exact | default | default / exact | exact's spread | path | holds exact "
        "| predicted / measured |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "ratio" not in r:
            lines.append(
                f"| {r['kind']} | {r['n']} | {r['dim']} | error: {r['exact'].get('error') or r['default'].get('error')}"
            )
            continue
        e, f = r["exact"], r["default"]
        lines.append(
            f"| {r['kind']} | {r['n']:,} | {r['dim']} | {r['repeat']} | {e['wall']:.2f} s | {f['wall']:.2f} s | "
            f"{r['ratio']:.2f} | {r['exact_spread']:.2f} | {f['path']} | {'yes' if r['holds'] else 'NO'} | "
            f"{r['prediction_ratio']:.2f} |"
        )
    ok = [r for r in rows if "ratio" in r]
    preds = [r["prediction_ratio"] for r in ok]
    worst = max((r["ratio"] for r in ok), default=float("nan"))
    big = [r["ratio"] for r in ok if r["n"] >= 20000]
    lines += [
        "",
        f"Configurations: {len(ok)}; intervals (or exact answer) hold the exact value in "
        f"{sum(r['holds'] for r in ok)} of {len(ok)}; worst default/exact time ratio {worst:.2f}; "
        f"from 20k per set: best {min(big, default=float('nan')):.2f}, worst {max(big, default=float('nan')):.2f}; "
        f"planner's predicted/measured total between {min(preds, default=float('nan')):.2f}"
        f" and {max(preds, default=float('nan')):.2f}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_planner", description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", choices=("exact", "default"), help=argparse.SUPPRESS)
    p.add_argument("--kind", help=argparse.SUPPRESS)
    p.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, nargs="+", default=DEFAULT_N)
    p.add_argument("--dims", type=int, nargs="+", default=DEFAULT_DIMS)
    p.add_argument("--kinds", nargs="+", default=["low", "long", "digits"], choices=(*SPECTRA, "digits"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="planner")
    p.add_argument("--repeat", type=int, default=3, help="runs of each call for sets up to --repeat-up-to")
    p.add_argument(
        "--repeat-up-to", type=int, default=12000, help="larger sets are run once (their ratios are far from 1)"
    )
    args = p.parse_args(argv)
    if args.worker:
        args.n = args.n[0] if isinstance(args.n, list) else args.n
        _worker(args)
        return
    info, rows = machine(), []
    for kind, n, d in _configs(args):
        rows.append(_row(kind, n, d, args.seed, args.repeat if n <= args.repeat_up_to else 1))
        r = rows[-1]
        print(
            f"{kind:>6} n={n:>6} d={d:>5}: "
            + (
                f"exact {r['exact']['wall']:.2f} s, default {r['default']['wall']:.2f} s "
                f"({r['ratio']:.2f}×, {r['default']['path']}, holds={r['holds']}, predicted/measured "
                f"{r['prediction_ratio']:.2f})"
                if "ratio" in r
                else f"error {r}"
            ),
            flush=True,
        )
        md = _markdown(rows, info)
        save(args.name, {"machine": info, "args": vars(args), "rows": rows}, md)
    print(_markdown(rows, info))


if __name__ == "__main__":
    main(sys.argv[1:])
