"""Exact P&R benchmark: eprmetrics vs prdc vs the pure-GEMM floor, side by side in one run.

Each (dim, n) case writes a synthetic real/fake pair to ``.npy`` once; each
method then runs in its own fresh process that loads both arrays into RAM,
resets the peak-RSS mark and runs. Memory is reported as the peak RSS above
the RSS with the features loaded ("extra") and as the absolute peak.

The GEMM floor is the three n×n×d products P&R needs (real·realᵀ, fake·fakeᵀ,
real·fakeᵀ), each as one torch matmul, nothing else.

Usage (from the repository root):
    python -m benchmarks.bench_exact                  # CPU: n = 5k,10k,20k × d = 4096,2048
    python -m benchmarks.bench_exact --n 100000 --dims 4096 --methods eprmetrics --name exact_cpu_100k
    python -m benchmarks.bench_exact --device cuda --n 50000 70000 --dims 4096 --methods eprmetrics gemm \
        --name exact_gpu
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Optional

from benchmarks.common import gib, machine, run_worker, save
from eprmetrics.profiling import current_rss, read_rss, reset_peak_rss

METHODS = ("eprmetrics", "prdc", "gemm")


def worker(method: str, real_path: str, fake_path: str, k: int, device: str) -> dict:
    import numpy as np
    import torch

    real, fake = np.load(real_path), np.load(fake_path)
    out: dict = {}
    if method == "eprmetrics":
        from eprmetrics import compute_pr
    elif method == "prdc":
        import prdc
    rss_base = current_rss()
    peak_ok = reset_peak_rss()
    t0 = time.perf_counter()
    if method == "eprmetrics":
        res = compute_pr(real, fake, k=k, strict=True, device=device)
        out.update(
            precision=res.precision,
            recall=res.recall,
            density=res.density,
            coverage=res.coverage,
            tile=res.tile,
            n_redecided=res.n_redecided,
            device_peak=res.peak_device_memory,
            stages=[s.to_dict() for s in res.stages],
        )
    elif method == "prdc":
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            res = prdc.compute_prdc(real, fake, nearest_k=k)
        out.update({key: float(v) for key, v in res.items()})
    else:
        dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        x, y = torch.from_numpy(real).to(dev), torch.from_numpy(fake).to(dev)
        t0 = time.perf_counter()
        for a, b in ((x, x), (y, y), (x, y)):
            c = a @ b.T
            if dev.type == "cuda":
                torch.cuda.synchronize()
            del c
    out["seconds"] = time.perf_counter() - t0
    _, rss_peak = read_rss()
    if not peak_ok:
        rss_peak = None  # no resettable kernel mark: the peak would date from process start
    out.update(rss_base=rss_base, rss_peak=rss_peak, rss_extra=None if rss_peak is None else rss_peak - rss_base)
    return out


def ratio(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def sec(v: Optional[float]) -> str:
    return f"{v:.2f}" if v else "-"


def pr(e: dict, p: dict, key: str) -> str:
    """eprmetrics' value of ``key`` and prdc's beside it, where each ran."""
    if key in e and key in p:
        return f"{e[key]:.4f} / {p[key]:.4f}"
    return f"{e[key]:.4f}" if key in e else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[5000, 10000, 20000])
    ap.add_argument("--dims", type=int, nargs="+", default=[4096, 2048])
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--name", default="exact_cpu", help="result file stem under benchmarks/results/")
    ap.add_argument("--tmp", default=None, help="folder for the feature files (default: a temp dir)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--real"), ap.add_argument("--fake"), ap.add_argument("--method")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.method, args.real, args.fake, args.k, args.device)))
        return

    from eprmetrics.synthetic import SyntheticSpec, write_npy

    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for dim in args.dims:
            for n in args.n:
                spec = SyntheticSpec(dim=dim, seed=0)
                rp, fp = os.path.join(tmp, "real.npy"), os.path.join(tmp, "fake.npy")
                write_npy(rp, n, spec, stream=0)
                write_npy(fp, n, spec, stream=1, defect="truncation", strength=0.2)
                case = {"n": n, "dim": dim}
                for method in args.methods:
                    r = run_worker(
                        "bench_exact",
                        ["--method", method, "--real", rp, "--fake", fp, "--k", str(args.k), "--device", args.device],
                    )
                    case[method] = r
                    print(
                        f"d={dim:5d} n={n:7d} {method:10s} "
                        + (
                            f"{r['seconds']:8.2f} s  extra RSS {gib(r['rss_extra'])} GiB"
                            if "seconds" in r
                            else r["error"]
                        ),
                        flush=True,
                    )
                rows.append(case)

    md = [
        f"# Exact P&R: eprmetrics vs prdc vs GEMM floor ({args.device})",
        "",
        f"k = {args.k}; synthetic VGG-like features (real vs truncation ψ=0.8); one process per method; "
        "'extra' = peak RSS above the RSS with both feature arrays loaded.",
        "",
        "| d | n | eprmetrics s | prdc s | GEMM floor s | epr / floor | prdc / epr | epr extra GiB | prdc extra GiB | "
        "GEMM extra GiB | prdc / epr memory | P (epr / prdc) | R (epr / prdc) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        e, p, g = c.get("eprmetrics", {}), c.get("prdc", {}), c.get("gemm", {})
        es, ps, gs = e.get("seconds"), p.get("seconds"), g.get("seconds")
        md.append(
            f"| {c['dim']} | {c['n']} | {sec(es)} | {sec(ps)} | {sec(gs)} | {ratio(es, gs)} | "
            f"{ratio(ps, es)} | {gib(e.get('rss_extra'))} | {gib(p.get('rss_extra'))} | {gib(g.get('rss_extra'))} | "
            f"{ratio(p.get('rss_extra'), e.get('rss_extra'))} | {pr(e, p, 'precision')} | {pr(e, p, 'recall')} |"
        )
    md.append("")
    md.append(f"Machine: `{json.dumps(machine())}`")
    j, m = save(
        args.name, {"machine": machine(), "k": args.k, "device": args.device, "cases": rows}, "\n".join(md) + "\n"
    )
    print("\n".join(md))
    print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()
