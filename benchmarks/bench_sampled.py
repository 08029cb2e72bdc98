"""Error against cost: exact P&R, eP&R (hubness), the sampled estimator and random reduced sampling.

Sub-commands (results in ``benchmarks/results/sampled_<table>[_<tag>].{json,md,png}``):

    speed     acceptance: exact compute_pr vs compute_epr(method="sampled") defaults vs hubness, same run
    coverage  the sampled estimator over many seeds: how often its intervals hold the exact value
    tradeoff  relative error vs time per method on the synthetic suite, scikit-learn's digits
              (ships offline) and ``--real/--fake`` features; an error-vs-time plot

From the repository root:

    python -m benchmarks.bench_sampled speed --n 50000 --dim 512
    python -m benchmarks.bench_sampled coverage --n 50000 --dim 512 --seeds 100
    python -m benchmarks.bench_sampled tradeoff --n 20000 --dim 512
    python -m benchmarks.bench_sampled speed --n 100000 --dim 2048 --device cuda --tag gpu
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from typing import Any, Optional

import numpy as np

from benchmarks.bench_epr import measured, rel_err
from benchmarks.common import RESULTS, gib, machine, save
from eprmetrics import AuditWarning, compute_epr, compute_pr
from eprmetrics.synthetic import SPECTRA, SyntheticSpec, generate

warnings.simplefilter("ignore", AuditWarning)  # the audit's verdict is recorded in the rows instead


def synthetic(
    n: int, dim: int, defect: str, strength: float, seed: int, spectrum: str = "low"
) -> tuple[np.ndarray, np.ndarray]:
    spec = SyntheticSpec(dim=dim, seed=seed, spectrum=spectrum)
    return generate(n, spec, stream=0).numpy(), generate(n, spec, stream=1, defect=defect, strength=strength).numpy()


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 handwritten digits (offline): real = even-indexed images; fake = odd-indexed
    images of classes 0–6 only (three modes dropped) with pixel noise σ = 1 (of 16)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.data.astype(np.float32), d.target
    real = x[0::2]
    fake = x[1::2][y[1::2] <= 6]
    fake = fake + np.random.default_rng(0).normal(0, 1.0, fake.shape).astype(np.float32)
    return np.ascontiguousarray(real), np.ascontiguousarray(fake)


def write(table: str, args: argparse.Namespace, rows: list[dict], md: list[str]) -> str:
    stem = f"sampled_{table}" + (f"_{args.tag}" if args.tag else "")
    md = md + ["", f"Machine: `{json.dumps(machine())}`", ""]
    j, m = save(stem, {"table": table, "args": vars(args), "machine": machine(), "rows": rows}, "\n".join(md))
    print("\n".join(md))
    print(f"wrote {j}, {m}")
    return os.path.join(RESULTS, stem + ".png")


def row(label: str, res: Any, seconds: float, rss: int, exact: Any) -> dict[str, Any]:
    out = {
        "method": label,
        "precision": res.precision,
        "recall": res.recall,
        "seconds": seconds,
        "rss_growth": rss,
        "p_error": rel_err(exact.precision, res.precision),
        "r_error": rel_err(exact.recall, res.recall),
        "backend": getattr(res, "backend", None),
    }
    if getattr(res, "precision_ci", None) is not None:
        out.update(
            precision_ci=list(res.precision_ci),
            recall_ci=list(res.recall_ci),
            p_covered=res.precision_ci[0] <= exact.precision <= res.precision_ci[1],
            r_covered=res.recall_ci[0] <= exact.recall <= res.recall_ci[1],
            sample_size={s: res.sampling[s].sample_size for s in ("precision", "recall")},
            half_width={s: res.sampling[s].half_width for s in ("precision", "recall")},
        )
    if getattr(res, "audit", None) is not None:
        out["audit_consistent"] = res.audit.consistent
        out["audit_ci"] = {"precision": list(res.audit.precision.interval), "recall": list(res.audit.recall.interval)}
    return out


def t_speed(args: argparse.Namespace) -> None:
    real, fake = synthetic(args.n, args.dim, args.defect, args.strength, args.seed)
    exact, te, me = measured(lambda: compute_pr(real, fake, k=args.k, density_coverage=False, device=args.device))
    rows = [row("exact compute_pr", exact, te, me, exact)]
    for label, kw in (
        ("sampled (defaults)", {"method": "sampled", "backend": "ivf-gemm"}),
        ("default (planner)", {}),
        ("hubness + audit (defaults)", {"method": "hubness"}),
        ("hubness, audit=False", {"method": "hubness", "audit": False}),
    ):
        res, t, m = measured(lambda kw=kw: compute_epr(real, fake, k=args.k, seed=args.seed, device=args.device, **kw))
        rows.append(row(label, res, t, m, exact))
        if label.startswith("sampled"):
            rows[-1]["stages"] = [s.to_dict() for s in res.stages]
    md = [
        f"# Sampled estimator speed — synthetic n={args.n} per set, d={args.dim}, "
        f"{args.defect}({args.strength}), k={args.k}",
        "",
        "| method | time s | speed-up vs exact | RSS growth GiB | P | R | P 95% CI | R 95% CI | P err | R err |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['method']} | {r['seconds']:.1f} | {te / r['seconds']:.2f}× | {gib(r['rss_growth'])} | "
            f"{r['precision']:.4f} | {r['recall']:.4f} | {_ci(r, 'precision_ci')} | {_ci(r, 'recall_ci')} | "
            f"{100 * r['p_error']:.2f}% | {100 * r['r_error']:.2f}% |"
        )
    s = rows[1]
    md += [
        "",
        f"Sampled: half-widths P {s['half_width']['precision']:.4f} / R {s['half_width']['recall']:.4f} "
        f"from {s['sample_size']['precision']} / {s['sample_size']['recall']} queries; exact value inside: "
        f"P {s['p_covered']}, R {s['r_covered']}.",
        "",
        "Sampled stages:",
        "",
        "| stage | s |",
        "|---|---|",
    ] + [f"| {st['name']} | {st['seconds']:.2f} |" for st in s["stages"]]
    write("speed", args, rows, md)


def _ci(r: dict, key: str) -> str:
    return "-" if key not in r else f"[{r[key][0]:.4f}, {r[key][1]:.4f}]"


def _wilson(x: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = x / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return c - h, c + h


def _reused_graph_runs(args: argparse.Namespace, real: np.ndarray, fake: np.ndarray, exact: Any) -> list[dict]:
    """Every seed's sample drawn over one pair of graphs (index trained once): the interval's coverage
    given the index, at the cost of the sampled queries alone. Decisions and computed radii are shared
    across seeds; each is exact (the brute-force equality tests), so reusing them changes no value."""
    from eprmetrics.engine import FeatureSet
    from eprmetrics.estimators.context import EngineOptions, RunContext
    from eprmetrics.estimators.sampled import SIDES, SampleRequest, sample_side, side_design
    from eprmetrics.neighbours import GraphRequest, build_graph

    size = int(args.sample_size) if args.sample_size >= 1 else float(args.sample_size)
    request = SampleRequest(size, 0.95)
    ctx = RunContext.build(FeatureSet(real, "real"), FeatureSet(fake, "fake"), EngineOptions(device=args.device))

    def runs(ctx: RunContext) -> list[dict]:
        graphs = {
            name: build_graph(
                ctx.engine, fs, ctx.prepared[name], GraphRequest(args.backend, "sampled", args.k, 0), ctx.prof, False
            )
            for name, fs in ctx.sets.items()
        }
        designs = {side: side_design(ctx, graphs, side, args.k, request) for side in SIDES}
        # a two-phase design draws its phase one from the seed: a new one (and its strata) for every seed
        two_phase = any(designs[side].phase is not None for side in SIDES)
        out = []
        for s in range(args.seeds):
            ctx.seed = 1000 + s
            if two_phase:
                designs = {side: side_design(ctx, graphs, side, args.k, request, designs[side]) for side in SIDES}
            t0 = time.perf_counter()
            est = {side[0]: sample_side(ctx, designs[side], side, request).estimate for side in SIDES}
            r = {"method": f"seed {ctx.seed}", "seconds": time.perf_counter() - t0, "backend": args.backend}
            for side, key, ex in (("precision", "p", exact.precision), ("recall", "r", exact.recall)):
                e = est[side]
                r.update({side: e.value, f"{side}_ci": list(e.interval), f"{key}_covered": e.contains(ex)})
            r["half_width"] = {side: e.half_width for side, e in est.items()}
            r["sample_size"] = {side: e.sample_size for side, e in est.items()}
            r["phase_one"] = {side: e.phase_one for side, e in est.items()}
            print(f"seed {s}: P {r['precision']:.4f} R {r['recall']:.4f} {r['p_covered']} {r['r_covered']}", flush=True)
            out.append(r)
        return out

    return ctx.run(runs)


def _phase_note(rows: list[dict]) -> str:
    """The two-phase design's phase one, where one was drawn (anew for every seed)."""
    phase = rows[0].get("phase_one") if rows else None
    if not phase or phase.get("precision") is None:
        return ""
    fakes, reals = phase["precision"], phase["recall"]
    return f"; two phases: a phase one of {fakes:,} fakes / {reals:,} reals, drawn anew each seed"


def t_coverage(args: argparse.Namespace) -> None:
    real, fake = synthetic(args.n, args.dim, args.defect, args.strength, args.seed, args.spectrum)
    exact = compute_pr(real, fake, k=args.k, density_coverage=False, device=args.device)
    rows = [] if not args.reuse_graphs else _reused_graph_runs(args, real, fake, exact)
    for s in range(0 if args.reuse_graphs else args.seeds):
        t0 = time.perf_counter()
        res = compute_epr(
            real,
            fake,
            k=args.k,
            method="sampled",
            backend=args.backend,  # the estimator itself, not the planner's choice
            seed=1000 + s,
            sample_size=int(args.sample_size) if args.sample_size >= 1 else float(args.sample_size),
            device=args.device,
        )
        rows.append(row(f"seed {1000 + s}", res, time.perf_counter() - t0, 0, exact))
        print(f"seed {s}: P {res.precision:.4f} {res.precision_ci} R {res.recall:.4f} {res.recall_ci}", flush=True)
    n = len(rows)
    summary = {
        "n_seeds": n,
        "exact_precision": exact.precision,
        "exact_recall": exact.recall,
        "exact_seconds": exact.seconds,
    }
    md = [
        f"# Sampled estimator coverage — synthetic n={args.n}, d={args.dim}, {args.spectrum} spectrum, "
        f"{args.defect}({args.strength}), backend {args.backend}, sample_size={args.sample_size}, {n} seeds "
        + ("(one index, the sample reseeded)" if args.reuse_graphs else "(index training and sampling reseeded)")
        + _phase_note(rows),
        "",
        f"Exact: P {exact.precision:.4f}, R {exact.recall:.4f} ({exact.seconds:.1f} s).",
        "",
        "| side | coverage of 95% CIs | Wilson 95% CI of coverage | mean half-width | "
        "mean estimate − exact (± 2 SE) | mean sample |",
        "|---|---|---|---|---|---|",
    ]
    for side, key, ex in (("precision", "p", exact.precision), ("recall", "r", exact.recall)):
        cov = sum(r[f"{key}_covered"] for r in rows)
        est = np.array([r[side] for r in rows])
        hw = np.mean([r["half_width"][side] for r in rows])
        bias, se = est.mean() - ex, est.std(ddof=1) / math.sqrt(n)
        lo, hi = _wilson(cov, n)
        summary[side] = {
            "coverage": cov / n,
            "wilson": [lo, hi],
            "mean_half_width": hw,
            "bias": bias,
            "bias_se": se,
            "mean_sample": float(np.mean([r["sample_size"][side] for r in rows])),
        }
        md.append(
            f"| {side} | {cov}/{n} = {cov / n:.3f} | [{lo:.3f}, {hi:.3f}] | {hw:.4f} | "
            f"{bias:+.5f} ± {2 * se:.5f} | {summary[side]['mean_sample']:.0f} |"
        )
    md.append(
        f"\nMean time per sampled run: {np.mean([r['seconds'] for r in rows]):.1f} s "
        f"(exact {exact.seconds:.1f} s; runs may share the machine with other work)."
    )
    rows.insert(0, {"summary": summary})
    write("coverage", args, rows, md)


def _methods(args: argparse.Namespace, real: np.ndarray, fake: np.ndarray, exact: Any) -> list[dict]:
    """Every method on one dataset; stochastic ones repeated over seeds (mean |error| and mean time)."""
    out = []
    dev = args.device
    n = min(len(real), len(fake))
    sizes = [s for s in (250, 1000, 4000) if s < n] + [0.01]
    for label, fn, stochastic in (
        [
            (
                "hubness (eP&R)",
                lambda s: compute_epr(real, fake, method="hubness", k=args.k, seed=s, audit=False, device=dev),
                False,
            )
        ]
        + [
            (
                f"sampled {s}",
                (
                    lambda s_, size=s: compute_epr(
                        real,
                        fake,
                        k=args.k,
                        method="sampled",
                        backend="ivf-gemm",
                        seed=s_,
                        sample_size=size,
                        device=dev,
                    )
                ),
                True,
            )
            for s in sizes
        ]
        + [
            (f"reduced {m}/set", (lambda s_, m=m: _reduced(real, fake, m, args.k, s_, dev)), True)
            for m in (1000, 4000)
            if m < n
        ]
    ):
        reps = []
        for s in range(args.repeats if stochastic else 1):
            res, t, mem = measured(lambda fn=fn, s=s: fn(s))
            reps.append(row(label, res, t, mem, exact))
        agg = dict(reps[0])
        for key in ("seconds", "p_error", "r_error"):
            agg[key] = float(np.mean([r[key] for r in reps]))
        agg["repeats"] = len(reps)
        if "p_covered" in reps[0]:
            agg["p_covered"] = sum(r["p_covered"] for r in reps) / len(reps)
            agg["r_covered"] = sum(r["r_covered"] for r in reps) / len(reps)
        out.append(agg)
    return out


def _reduced(real: np.ndarray, fake: np.ndarray, m: int, k: int, seed: int, device: str = "auto") -> Any:
    """Thesis Table 4.7's baseline: exact P&R of m random samples per set (radii shrink with m: biased)."""
    rng = np.random.default_rng(seed)
    r = np.sort(rng.choice(len(real), m, replace=False))
    f = np.sort(rng.choice(len(fake), m, replace=False))
    return compute_pr(real[r], fake[f], k=k, density_coverage=False, device=device)


def t_tradeoff(args: argparse.Namespace) -> None:
    datasets = []
    if args.real:
        datasets.append(("user features", np.load(args.real, mmap_mode="r"), np.load(args.fake, mmap_mode="r")))
    else:
        for defect, strength in (("none", 0.0), ("mode_drop", 0.5), ("truncation", 0.2), ("outliers", 0.3)):
            datasets.append(
                (
                    f"synthetic {defect}({strength}) n={args.n} d={args.dim}",
                    *synthetic(args.n, args.dim, defect, strength, args.seed),
                )
            )
        datasets.append(("sklearn digits (real 899 / fake 633, 64-d pixels)", *digits()))
    rows = []
    md = [
        f"# Error vs cost — k={args.k}; stochastic methods: mean over {args.repeats} seeds",
        "",
        "| data | method | time s | speed-up | P err | R err | CI holds exact (P/R) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, real, fake in datasets:
        exact, te, me = measured(
            lambda real=real, fake=fake: compute_pr(real, fake, k=args.k, density_coverage=False, device=args.device)
        )
        rows.append({"data": name, **row("exact", exact, te, me, exact)})
        for r in _methods(args, real, fake, exact):
            rows.append({"data": name, **r})
        for r in rows:
            if r["data"] != name:
                continue
            cov = f"{r['p_covered']:.2f} / {r['r_covered']:.2f}" if "p_covered" in r else "-"
            md.append(
                f"| {name} | {r['method']} | {r['seconds']:.2f} | {te / r['seconds']:.2f}× | "
                f"{100 * r['p_error']:.2f}% | {100 * r['r_error']:.2f}% | {cov} |"
            )
        print(md[-1], flush=True)
    png = write("tradeoff", args, rows, md)
    _plot(rows, png)


def _plot(rows: list[dict], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    families = {"exact": "k", "hubness": "tab:red", "sampled": "tab:blue", "reduced": "tab:green"}
    for fam, colour in families.items():
        pts = [r for r in rows if r["method"].startswith(fam) and fam != "exact"]
        if pts:
            exact_t = {r["data"]: r["seconds"] for r in rows if r["method"] == "exact"}
            ax.scatter(
                [r["seconds"] / exact_t[r["data"]] for r in pts],
                [max(100 * (r["p_error"] + r["r_error"]) / 2, 1e-3) for r in pts],
                c=colour,
                label=fam,
                s=18,
            )
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("time relative to exact P&R"), ax.set_ylabel("mean relative error of P and R (%)")
    ax.set_title("error vs cost (each point: one method on one dataset)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


TABLES = {"speed": t_speed, "coverage": t_coverage, "tradeoff": t_tradeoff}


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", choices=list(TABLES))
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--defect", default="truncation")
    ap.add_argument("--strength", type=float, default=0.1)
    ap.add_argument("--real"), ap.add_argument("--fake")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto (every exact and estimator call)")
    ap.add_argument("--seeds", type=int, default=100, help="coverage: number of seeds")
    ap.add_argument("--backend", default="ivf-gemm", help="coverage: the sampled estimator's graph backend")
    ap.add_argument("--spectrum", default="low", choices=SPECTRA, help="synthetic spectrum")
    ap.add_argument("--reuse-graphs", action="store_true", help="coverage: train the index once, reseed the sample")
    ap.add_argument("--sample-size", type=float, default=0.01, help="coverage: target half-width or count")
    ap.add_argument("--repeats", type=int, default=5, help="tradeoff: seeds per stochastic method")
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    if bool(args.real) != bool(args.fake):
        ap.error("--real and --fake go together")
    TABLES[args.table](args)


if __name__ == "__main__":
    main()
