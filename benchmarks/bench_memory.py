"""Peak memory of a call against the memory model, one fresh process per call (CPU, resident set size).

For each configuration a worker builds the data, resets the kernel's peak-RSS mark and runs
``compute_pr`` (density and coverage on) or the sampled path (``compute_epr(method="sampled")``) with
a fixed ``memory_budget``. Reported: the measured peak RSS above the RSS with the data loaded, the
model's prediction of that peak (:func:`eprmetrics.estimators.memory.predicted_peak`), their ratio,
and the stage where the peak was reached.

Usage (from the repository root)::

    python -m benchmarks.bench_memory                    # the grid: 2 spectra x 2 sizes x 2 dims x 2 budgets
    python -m benchmarks.bench_memory --n 20000 --dims 512 --budgets 256 --name memory_smoke
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import statistics
import sys
from typing import Any

from benchmarks.common import gib, machine, run_worker, save
from eprmetrics.synthetic import SPECTRA

DEFAULT_N = [20000, 50000]
DEFAULT_DIMS = [512, 2048]
DEFAULT_BUDGETS_MIB = [256, 1024]


def _worker(args: argparse.Namespace) -> None:
    import numpy as np

    from eprmetrics import compute_epr, compute_pr
    from eprmetrics.estimators.memory import predicted_peak
    from eprmetrics.profiling import current_rss, read_rss, reset_peak_rss
    from eprmetrics.synthetic import make_pair

    real, fake = make_pair(args.n, args.n, dim=args.dim, defect="truncation", strength=0.2, seed=0, spectrum=args.kind)
    real, fake = np.ascontiguousarray(real), np.ascontiguousarray(fake)
    budget = args.budget << 20
    # The base is the memory in use: heap memory freed while the data was made would otherwise be counted in
    # the base and then silently reused by the call (measured: the same call's peak 0.07-0.18 GiB above it).
    gc.collect()
    if hasattr(ctypes.CDLL(None), "malloc_trim"):
        ctypes.CDLL(None).malloc_trim(0)
    base = current_rss()
    if not reset_peak_rss():
        print(json.dumps({"error": "no resettable peak-RSS mark on this system"}))
        return
    if args.method == "exact":
        res = compute_pr(real, fake, memory_budget=budget, device="cpu", progress=False)
    else:
        res = compute_epr(real, fake, method="sampled", memory_budget=budget, device="cpu", progress=False, seed=0)
    _, peak = read_rss()
    assert peak is not None
    stage = max(res.stages, key=lambda s: s.rss_peak)
    model = predicted_peak(res, budget)
    out: dict[str, Any] = {
        "measured": peak - base,
        "predicted": model["total"],
        "model": model,
        "ratio": model["total"] / max(peak - base, 1),
        "peak_stage": stage.name,
        "tile": res.tile,
        "backend": res.backend,
        "seconds": res.seconds,
        "sampling": {
            side: {"sample_size": v.sample_size, "true_radii_computed": v.true_radii_computed}
            for side, v in (res.sampling or {}).items()
        },
    }
    print(json.dumps(out))


def _repeated(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's runs: the median run (by measured peak), with every run's peak kept."""
    ok = [r for r in runs if "measured" in r]
    if not ok:
        return runs[0]
    peaks = [r["measured"] for r in ok]
    median = min(ok, key=lambda r: abs(r["measured"] - statistics.median(peaks)))
    return {**median, "runs": peaks, "spread": max(peaks) / max(min(peaks), 1)}


def _markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        "# Peak memory against the memory model",
        "",
        f"Machine: {info.get('cpu')} ({info.get('cpu_count')} cores), torch {info.get('torch')}, {info.get('date')}. "
        "CPU; one fresh process per call; peak resident set above the RSS with the data loaded and the heap "
        "trimmed (kernel mark); the median of the runs.",
        "",
        "| path | data | n per set | d | budget | tile | measured | runs max/min | predicted | predicted / measured "
        "| peak stage |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            head = f"| {r['method']} | {r['kind']} | {r['n']:,} | {r['dim']} | {r['budget']} MiB"
            lines.append(f"{head} | error: {r['error']} |")
            continue
        lines.append(
            f"| {r['method']} | {r['kind']} | {r['n']:,} | {r['dim']} | {r['budget']} MiB | {r['tile']} | "
            f"{gib(r['measured'])} GiB | {r.get('spread', 1.0):.2f} | {gib(r['predicted'])} GiB | {r['ratio']:.2f} "
            f"| {r['peak_stage']} |"
        )
    ok = [r["ratio"] for r in rows if "ratio" in r]
    if ok:
        lines += ["", f"predicted / measured between {min(ok):.2f} and {max(ok):.2f} over {len(ok)} calls.", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", choices=("exact", "sampled"), help=argparse.SUPPRESS)
    p.add_argument("--kind", help=argparse.SUPPRESS)
    p.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    p.add_argument("--budget", type=int, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, nargs="+", default=DEFAULT_N)
    p.add_argument("--dims", type=int, nargs="+", default=DEFAULT_DIMS)
    p.add_argument("--budgets", type=int, nargs="+", default=DEFAULT_BUDGETS_MIB, help="MiB")
    p.add_argument("--kinds", nargs="+", default=["low", "long"], choices=SPECTRA)
    p.add_argument("--methods", nargs="+", default=["exact", "sampled"], choices=("exact", "sampled"))
    p.add_argument("--name", default="memory")
    p.add_argument("--repeat", type=int, default=1, help="fresh processes per configuration (the median is shown)")
    args = p.parse_args(argv)
    if args.worker:
        args.n = args.n[0]
        _worker(args)
        return
    info, rows = machine(), []
    for method in args.methods:
        for kind in args.kinds:
            for n in args.n:
                for d in args.dims:
                    for b in args.budgets:
                        common = ["--kind", kind, "--n", str(n), "--dim", str(d), "--budget", str(b)]
                        r = _repeated(
                            [run_worker("bench_memory", ["--method", method, *common]) for _ in range(args.repeat)]
                        )
                        rows.append({"method": method, "kind": kind, "n": n, "dim": d, "budget": b, **r})
                        print(
                            f"{method:>7} {kind:>4} n={n:>6} d={d:>5} budget={b:>5} MiB: "
                            + (
                                f"measured {gib(r['measured'])} GiB, predicted {gib(r['predicted'])} GiB "
                                f"({r['ratio']:.2f}), peak in {r['peak_stage']}"
                                if "ratio" in r
                                else f"error {r.get('error')}"
                            ),
                            flush=True,
                        )
                        save(args.name, {"machine": info, "args": vars(args), "rows": rows}, _markdown(rows, info))
    print(_markdown(rows, info))


if __name__ == "__main__":
    main(sys.argv[1:])
