"""eP&R benchmark suite: the thesis's Chapter 4 tables, on synthetic or user-supplied features.

One entry point, one sub-command per table (``all`` runs every one):

    speed   acceptance timings: compute_epr (defaults, radii="ann") vs exact compute_pr, same run
    ann     Table 4.3: per backend hub-label accuracy, hub Jaccard, recall@k, build/search time, memory
    errors  Table 4.1: eP&R vs exact for several defect types (relative error)
    stages  Table 4.2: per-stage time and peak memory, exact vs eP&R
    k       Table 4.5: k = 3..10
    t       Table 4.6: t = 1..10 (hub %, P, R, error)
    reduced Table 4.7: random reduced sampling with eP&R's sample count vs eP&R
    tiles   Table 4.8: tile size (memory budget) vs time

Features: synthetic (``--n``, ``--dim``, ``--defect``) or ``--real R.npy --fake F.npy``.
Every table is printed and written to ``benchmarks/results/epr_<table>[_<tag>].{json,md,png}``.

From the repository root:

    python -m benchmarks.bench_epr speed --n 20000 --dim 4096
    python -m benchmarks.bench_epr speed --n 100000 --dim 512 --tag 100k
    python -m benchmarks.bench_epr all --n 10000 --dim 2048
    python -m benchmarks.bench_epr stages --n 20000 --dim 4096 --device cuda --tag gpu
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from typing import Any, Callable, Optional

import numpy as np

from benchmarks.common import RESULTS, gib, machine, save
from eprmetrics import compute_epr, compute_pr
from eprmetrics.engine import budget_for_tile
from eprmetrics.neighbours import available_backends, hub_mask, k_occurrence, knn_graph
from eprmetrics.profiling import current_rss, read_rss, reset_peak_rss
from eprmetrics.synthetic import SyntheticSpec, generate

ANN_BACKENDS = ["ivf-gemm", "faiss-ivf", "faiss-ivfpq", "faiss-ivfsq", "faiss-lsh", "faiss-hnsw", "hnswlib", "scann"]


def rel_err(x: float, x_hat: float) -> float:
    return abs(x - x_hat) / abs(x) if x else float("nan")


def measured(fn: Callable[[], Any]) -> tuple[Any, float, Optional[int]]:
    """(result, seconds, peak RSS growth) of one call; growth None where the peak-RSS mark cannot be reset."""
    gc.collect()
    base = current_rss()
    peak_ok = reset_peak_rss()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    _, peak = read_rss()
    return out, seconds, max(peak - base, 0) if peak_ok and peak is not None else None


def load(args: argparse.Namespace, defect: Optional[str] = None, strength: Optional[float] = None):
    if args.real:
        return np.load(args.real, mmap_mode="r"), np.load(args.fake, mmap_mode="r"), "user"
    spec = SyntheticSpec(dim=args.dim, seed=args.seed)
    d, s = defect or args.defect, args.strength if strength is None else strength
    real = generate(args.n, spec, stream=0).numpy()
    fake = generate(args.n, spec, stream=1, defect=d, strength=s).numpy()
    return real, fake, f"synthetic n={args.n} d={args.dim} {d}({s})"


def write(
    table: str, args: argparse.Namespace, rows: list[dict], md: list[str], plot: Optional[Callable] = None
) -> None:
    stem = f"epr_{table}" + (f"_{args.tag}" if args.tag else "")
    md = md + ["", f"Machine: `{json.dumps(machine())}`", ""]
    j, m = save(
        stem,
        {
            "table": table,
            "args": {k: v for k, v in vars(args).items() if k != "func"},
            "machine": machine(),
            "rows": rows,
        },
        "\n".join(md),
    )
    print("\n".join(md))
    print(f"wrote {j}, {m}")
    if plot is not None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib missing (pip install 'eprmetrics[bench]'): no plot")
            return
        fig, ax = plt.subplots(figsize=(6, 4))
        plot(ax)
        fig.tight_layout()
        fig.savefig(os.path.join(RESULTS, stem + ".png"), dpi=120)
        plt.close(fig)


# --------------------------------------------------------------------------- tables
def t_speed(args: argparse.Namespace) -> None:
    real, fake, what = load(args)
    exact, te, me = measured(lambda: compute_pr(real, fake, k=args.k, density_coverage=False, device=args.device))
    rows = [
        {
            "method": "exact compute_pr",
            "seconds": te,
            "rss_growth": me,
            "precision": exact.precision,
            "recall": exact.recall,
        }
    ]
    variants = [("compute_epr defaults", {}), ('compute_epr radii="ann"', {"radii": "ann"})]
    for name in args.speed_backends.split(","):
        variants += [
            (f'compute_epr backend="{name}"', {"backend": name}),
            (f'compute_epr backend="{name}", radii="ann"', {"backend": name, "radii": "ann"}),
        ]
    for label, kw in variants:
        if kw.get("backend", "exact") not in available_backends():
            continue
        if kw.get("backend") == "exact" and kw.get("radii") == "ann":
            continue  # the exact graph's radii are the exact radii
        res, ts, ms = measured(
            lambda kw=kw: compute_epr(
                real, fake, method="hubness", k=args.k, t=args.t, seed=args.seed, device=args.device, **kw
            )
        )
        rows.append(
            {
                "method": label,
                "backend": res.backend,
                "radii": res.radii,
                "seconds": ts,
                "rss_growth": ms,
                "speedup": te / ts,
                "precision": res.precision,
                "recall": res.recall,
                "p_error": rel_err(exact.precision, res.precision),
                "r_error": rel_err(exact.recall, res.recall),
                "hub_fraction_real": res.hubs["real"].fraction,
                "stages": [s.to_dict() for s in res.stages],
            }
        )
    md = [
        f"# eP&R speed vs exact P&R — {what}, k={args.k}, t={args.t}",
        "",
        "| method | backend | radii | time s | speed-up vs exact | P | R | P error | R error | peak RSS growth GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['method']} | {r.get('backend', '-')} | {r.get('radii', '-')} | {r['seconds']:.2f} | "
            f"{r.get('speedup', 1.0):.2f}× | {r['precision']:.4f} | {r['recall']:.4f} | "
            f"{100 * r.get('p_error', 0):.1f}% | {100 * r.get('r_error', 0):.1f}% | {gib(r['rss_growth'])} |"
        )
    write(
        "speed",
        args,
        rows,
        md,
        plot=lambda ax: (ax.barh([r["method"] for r in rows], [r["seconds"] for r in rows]), ax.set_xlabel("seconds")),
    )


def t_ann(args: argparse.Namespace) -> None:
    real, _, what = load(args)
    x = np.ascontiguousarray(real, dtype=np.float32)
    (ref_d, ref_i), te, me = measured(lambda: knn_graph(x, args.k, backend="exact", device=args.device))
    ref_hubs = hub_mask(k_occurrence(ref_i, len(x)), args.t)
    rows = [{"backend": "exact", "seconds": te, "rss_growth": me, "recall": 1.0, "label_acc": 1.0, "jaccard": 1.0}]
    for name in [b for b in ANN_BACKENDS if b in available_backends()]:
        stats: dict = {}
        (d, i), ts, ms = measured(
            lambda name=name, stats=stats: knn_graph(
                x, args.k, backend=name, seed=args.seed, device=args.device, stats=stats
            )
        )
        hubs = hub_mask(k_occurrence(i, len(x)), args.t)
        recall = float(np.mean((i[:, :, None] == ref_i[:, None, :]).any(2)))
        rows.append(
            {
                "backend": name,
                "seconds": ts,
                "build_s": stats["build_s"],
                "search_s": stats["search_s"],
                "rss_growth": ms,
                "recall": recall,
                "label_acc": float(np.mean(hubs == ref_hubs)),
                "jaccard": float((hubs & ref_hubs).sum() / max((hubs | ref_hubs).sum(), 1)),
                "params": stats["params"],
            }
        )
    md = [
        f"# Table 4.3: hub identification by ANN backend — {what}, k={args.k}, t={args.t}",
        "",
        "| backend | hub-label accuracy | hub Jaccard | recall@k | build s | search s | total s | "
        "peak RSS growth GiB | params |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['backend']} | {100 * r['label_acc']:.2f}% | {r['jaccard']:.4f} | {r['recall']:.4f} | "
            f"{r.get('build_s', 0):.2f} | {r.get('search_s', r['seconds']):.2f} | {r['seconds']:.2f} | "
            f"{gib(r['rss_growth'])} | {json.dumps(r.get('params', {}))} |"
        )
    write(
        "ann",
        args,
        rows,
        md,
        plot=lambda ax: (
            ax.scatter([r["seconds"] for r in rows], [100 * r["label_acc"] for r in rows]),
            [ax.annotate(r["backend"], (r["seconds"], 100 * r["label_acc"])) for r in rows],
            ax.set_xlabel("build + search s"),
            ax.set_ylabel("hub-label accuracy %"),
        ),
    )


_EXACT_CACHE: dict = {}


def _exact(real, fake, k: int, device: str = "auto"):
    """Exact P&R, computed once per (data, k, device) across the rows of a table."""
    key = (id(real), id(fake), k, device)
    if key not in _EXACT_CACHE:
        _EXACT_CACHE.clear()
        _EXACT_CACHE[key] = compute_pr(real, fake, k=k, density_coverage=False, device=device)
    return _EXACT_CACHE[key]


def _compare(args: argparse.Namespace, real, fake, **kw) -> dict:
    exact = _exact(real, fake, kw.get("k", args.k), args.device)
    res = compute_epr(
        real,
        fake,
        method="hubness",
        k=kw.get("k", args.k),
        t=kw.get("t", args.t),
        seed=args.seed,
        backend=args.backend,
        radii=kw.get("radii", "exact"),
        device=args.device,
    )
    return {
        "exact_p": exact.precision,
        "exact_r": exact.recall,
        "epr_p": res.precision,
        "epr_r": res.recall,
        "p_error": rel_err(exact.precision, res.precision),
        "r_error": rel_err(exact.recall, res.recall),
        "exact_s": exact.seconds,
        "epr_s": res.seconds,
        "hub_fraction": res.hubs["real"].fraction,
        "backend": res.backend,
    }


def _table(title: str, key: str, rows: list[dict]) -> list[str]:
    md = [
        title,
        "",
        f"| {key} | exact P | eP&R P | P error | exact R | eP&R R | R error | hubs % | exact s | eP&R s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r[key]} | {r['exact_p']:.4f} | {r['epr_p']:.4f} | {100 * r['p_error']:.1f}% | {r['exact_r']:.4f} | "
            f"{r['epr_r']:.4f} | {100 * r['r_error']:.1f}% | {100 * r['hub_fraction']:.1f} | {r['exact_s']:.2f} | "
            f"{r['epr_s']:.2f} |"
        )
    return md


def _error_plot(key: str, rows: list[dict]) -> Callable:
    def plot(ax):
        xs = [str(r[key]) for r in rows]
        ax.plot(xs, [100 * r["p_error"] for r in rows], "o-", label="precision")
        ax.plot(xs, [100 * r["r_error"] for r in rows], "s-", label="recall")
        ax.set_xlabel(key), ax.set_ylabel("relative error %"), ax.legend()

    return plot


def t_errors(args: argparse.Namespace) -> None:
    rows = []
    for defect, strength in (("none", 0.0), ("mode_drop", 0.5), ("truncation", 0.3), ("outliers", 0.2), ("noise", 0.1)):
        real, fake, what = load(args, defect, strength)
        rows.append({"defect": f"{defect}({strength})", **_compare(args, real, fake)})
        if args.real:
            break
    md = _table(
        f"# Table 4.1: eP&R vs exact P&R by defect — n={args.n}, d={args.dim}, k={args.k}, t={args.t}", "defect", rows
    )
    write("errors", args, rows, md, plot=_error_plot("defect", rows))


def t_stages(args: argparse.Namespace) -> None:
    real, fake, what = load(args)
    exact = compute_pr(real, fake, k=args.k, density_coverage=False, device=args.device)
    res = compute_epr(
        real, fake, method="hubness", k=args.k, t=args.t, seed=args.seed, backend=args.backend, device=args.device
    )
    rows = [{"method": "exact", **s.to_dict()} for s in exact.stages] + [
        {"method": "eP&R", **s.to_dict()} for s in res.stages
    ]
    md = [
        f"# Table 4.2: per-stage time and peak memory — {what}; eP&R backend {res.backend}",
        "",
        "| method | stage | time s | peak RSS GiB | RSS growth GiB |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['method']} | {r['name']} | {r['seconds']:.2f} | {r['rss_peak'] / 2**30:.2f} | "
            f"{r['rss_growth'] / 2**30:.2f} |"
        )
    md.append(f"| exact | **total** | {exact.seconds:.2f} | {exact.peak_rss / 2**30:.2f} | |")
    md.append(f"| eP&R | **total** | {res.seconds:.2f} | {res.peak_rss / 2**30:.2f} | |")

    def plot(ax):
        for method in ("exact", "eP&R"):
            left = 0.0
            for r in (r for r in rows if r["method"] == method):
                ax.barh(method, r["seconds"], left=left, label=f"{method}: {r['name']}")
                left += r["seconds"]
        ax.set_xlabel("seconds"), ax.legend(fontsize=6, loc="lower right")

    write("stages", args, rows, md, plot=plot)


def t_k(args: argparse.Namespace) -> None:
    real, fake, _ = load(args)
    rows = [{"k": k, **_compare(args, real, fake, k=k)} for k in (3, 5, 7, 9, 10)]
    write(
        "k",
        args,
        rows,
        _table(f"# Table 4.5: choice of k — n={args.n}, d={args.dim}, t={args.t}", "k", rows),
        plot=_error_plot("k", rows),
    )


def t_t(args: argparse.Namespace) -> None:
    real, fake, _ = load(args)
    rows = []
    for t in range(1, 11):
        try:
            rows.append({"t": t, **_compare(args, real, fake, t=t)})
        except ValueError as exc:
            print(f"t={t}: {exc}")
    write(
        "t",
        args,
        rows,
        _table(f"# Table 4.6: hub threshold t — n={args.n}, d={args.dim}, k={args.k}", "t", rows),
        plot=_error_plot("t", rows),
    )


def t_reduced(args: argparse.Namespace) -> None:
    real, fake, _ = load(args)
    exact = compute_pr(real, fake, k=args.k, density_coverage=False, device=args.device)
    res = compute_epr(
        real, fake, method="hubness", k=args.k, t=args.t, seed=args.seed, backend=args.backend, device=args.device
    )
    n_r, n_f = res.hubs["real"].n_hubs, res.hubs["fake"].n_hubs
    rng = np.random.default_rng(args.seed)
    rows = []
    for rep in range(args.repeats):
        r_idx, f_idx = (
            np.sort(rng.choice(len(real), n_r, replace=False)),
            np.sort(rng.choice(len(fake), n_f, replace=False)),
        )
        rs = compute_pr(real[r_idx], fake[f_idx], k=args.k, density_coverage=False, device=args.device)
        rows.append(
            {
                "method": f"reduced sampling #{rep + 1}",
                "n_real": n_r,
                "n_fake": n_f,
                "precision": rs.precision,
                "recall": rs.recall,
                "seconds": rs.seconds,
                "p_error": rel_err(exact.precision, rs.precision),
                "r_error": rel_err(exact.recall, rs.recall),
            }
        )
    rows.append(
        {
            "method": "eP&R",
            "n_real": n_r,
            "n_fake": n_f,
            "precision": res.precision,
            "recall": res.recall,
            "seconds": res.seconds,
            "p_error": rel_err(exact.precision, res.precision),
            "r_error": rel_err(exact.recall, res.recall),
        }
    )
    rows.append(
        {
            "method": "exact (all samples)",
            "n_real": len(real),
            "n_fake": len(fake),
            "precision": exact.precision,
            "recall": exact.recall,
            "seconds": exact.seconds,
            "p_error": 0.0,
            "r_error": 0.0,
        }
    )
    md = [
        f"# Table 4.7: random reduced sampling vs eP&R at the same sample count — n={args.n}, d={args.dim}",
        "",
        "| method | n real | n fake | P | R | P error | R error | time s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['method']} | {r['n_real']} | {r['n_fake']} | {r['precision']:.4f} | {r['recall']:.4f} | "
            f"{100 * r['p_error']:.1f}% | {100 * r['r_error']:.1f}% | {r['seconds']:.2f} |"
        )
    write(
        "reduced",
        args,
        rows,
        md,
        plot=lambda ax: (
            ax.scatter([100 * r["p_error"] for r in rows], [100 * r["r_error"] for r in rows]),
            [ax.annotate(r["method"], (100 * r["p_error"], 100 * r["r_error"]), fontsize=7) for r in rows],
            ax.set_xlabel("precision error %"),
            ax.set_ylabel("recall error %"),
        ),
    )


def t_tiles(args: argparse.Namespace) -> None:
    real, fake, _ = load(args)
    rows = []
    for tile in (512, 1024, 2048, 4096, 8192):
        budget = budget_for_tile(tile, real.shape[1])
        (e, te, me) = measured(
            lambda budget=budget: compute_pr(
                real, fake, k=args.k, memory_budget=budget, density_coverage=False, device=args.device
            )
        )
        (p, tp, mp) = measured(
            lambda budget=budget: compute_epr(
                real,
                fake,
                method="hubness",
                k=args.k,
                t=args.t,
                seed=args.seed,
                backend=args.backend,
                memory_budget=budget,
                device=args.device,
            )
        )
        rows.append({"tile": tile, "budget": budget, "exact_s": te, "exact_rss": me, "epr_s": tp, "epr_rss": mp})
    md = [
        f"# Table 4.8: tile size vs time — n={args.n}, d={args.dim}",
        "",
        "| tile rows | budget MiB | exact s | exact RSS growth GiB | eP&R s | eP&R RSS growth GiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['tile']} | {r['budget'] / 2**20:.0f} | {r['exact_s']:.2f} | {gib(r['exact_rss'])} | "
            f"{r['epr_s']:.2f} | {gib(r['epr_rss'])} |"
        )
    write(
        "tiles",
        args,
        rows,
        md,
        plot=lambda ax: (
            ax.plot([r["tile"] for r in rows], [r["exact_s"] for r in rows], "o-", label="exact"),
            ax.plot([r["tile"] for r in rows], [r["epr_s"] for r in rows], "s-", label="eP&R"),
            ax.set_xscale("log"),
            ax.set_xlabel("tile rows"),
            ax.set_ylabel("s"),
            ax.legend(),
        ),
    )


TABLES = {
    "speed": t_speed,
    "ann": t_ann,
    "errors": t_errors,
    "stages": t_stages,
    "k": t_k,
    "t": t_t,
    "reduced": t_reduced,
    "tiles": t_tiles,
}


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", choices=[*TABLES, "all"])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--defect", default="truncation")
    ap.add_argument("--strength", type=float, default=0.1)
    ap.add_argument("--real"), ap.add_argument("--fake")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--t", type=int, default=3)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto (every exact, eP&R and k-NN graph call)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tag", default="", help="suffix for the result files")
    ap.add_argument(
        "--speed-backends",
        default="exact,faiss-hnsw,faiss-ivf",
        help="backends timed explicitly by the speed table (comma-separated)",
    )
    args = ap.parse_args(argv)
    if bool(args.real) != bool(args.fake):
        ap.error("--real and --fake go together")
    for name in TABLES if args.table == "all" else [args.table]:
        TABLES[name](args)


if __name__ == "__main__":
    main()
