"""Command line: ``eprmetrics REAL FAKE``, ``eprmetrics demo`` and ``eprmetrics bench``.

Every error caused by the input ends as one line on stderr and exit status 2
(``--debug`` shows the traceback instead).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from typing import Optional, Sequence

from .defaults import DEFAULTS
from .result import format_bytes

__all__ = ["main"]

_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, ModuleNotFoundError, PermissionError, IsADirectoryError)


def _k_list(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or comma-separated ints, got {text!r}") from None
    return ks


def _bytes(text: str) -> int:
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("ib").rstrip("b")
    suffix = t[-1] if t and t[-1] in units else ""
    try:
        value = float(t[:-1] if suffix else t) * units[suffix]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bytes such as 512M or 2G, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return int(value)


def _sample_size(text: str):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of queries (int) or a target half-width "
                                         f"(float in (0, 1)), got {text!r}") from None


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=_k_list, default=(DEFAULTS["k"],), help="neighbourhood size(s), e.g. 3 or 3,5,10")
    p.add_argument("--strict", action="store_true", help="use < instead of ≤ for ball membership (prdc's rule)")
    p.add_argument("--device", default=DEFAULTS["device"], help="auto, cpu, cuda or cuda:N")
    p.add_argument("--memory-budget", type=_bytes, default=None, help="tile workspace, e.g. 512M, 4G")
    p.add_argument("--error-bound", choices=("probabilistic", "worst-case"), default=DEFAULTS["error_bound"],
                   help="fp32 rounding bound deciding which cases are re-checked in float64")
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default=DEFAULTS["precision"],
                   help="GEMM precision (tf32: CUDA only); decisions stay exact, more are re-checked in float64")
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eprmetrics",
        description="Precision & recall of generative models. `eprmetrics REAL FAKE` on image folders, zips or "
                    "feature files (eP&R by default, --exact for exact P&R); `eprmetrics demo`.",
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="P&R of two image sets or feature files (the default command)")
    run.add_argument("real", help="real images (folder or .zip) or features (.npy/.npz)")
    run.add_argument("fake", help="generated images (folder or .zip) or features (.npy/.npz)")
    run.add_argument("--exact", action="store_true", help="exact P&R instead of eP&R (hub estimate)")
    run.add_argument("--method", choices=("hubness", "sampled"), default=DEFAULTS["method"],
                     help="fast method: hubness (thesis eP&R, audited) or sampled (estimate with intervals)")
    run.add_argument("--sample-size", type=_sample_size, default=DEFAULTS["sample_size"],
                     help="sampled: queries per set (int) or target interval half-width (float, default 0.01)")
    run.add_argument("--confidence", type=float, default=DEFAULTS["confidence"], help="interval level (0.95)")
    run.add_argument("--no-audit", action="store_true", help="hubness: skip the sampled audit")
    run.add_argument("--t", type=int, default=DEFAULTS["t"], help="hub threshold on k-occurrence (eP&R)")
    run.add_argument("--backend", default=DEFAULTS["backend"], help="k-NN backend for hubs (eP&R), e.g. ivf-gemm")
    run.add_argument("--radii", choices=("exact", "ann"), default=DEFAULTS["radii"], help="hub radii source (eP&R)")
    run.add_argument("--realism", action="store_true", help="store per-sample realism scores in --json (--exact)")
    run.add_argument("--extractor", default=DEFAULTS["extractor"], choices=("vgg16", "inception"),
                     help="feature network for image inputs")
    run.add_argument("--weights", help="state-dict file for the extractor (offline)")
    run.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    run.add_argument("--workers", type=int, default=DEFAULTS["num_workers"], help="DataLoader worker processes")
    run.add_argument("--cache-dir", help="reuse/keep extracted features here")
    run.add_argument("--save-features", metavar="DIR", help="write real.npy and fake.npy features to DIR")
    run.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images with a warning")
    _add_common(run)
    demo = sub.add_parser("demo", help="synthetic real/fake pairs with controlled defects: exact P&R vs eP&R vs sampled")
    demo.add_argument("--n", type=int, default=5000, help="samples per set (default 5000)")
    demo.add_argument("--dim", type=int, default=2048, help="feature dimension (default 2048)")
    demo.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    demo.add_argument("--plot", default="demo-out/demo.png", help="PNG of P and R per defect ('' for none)")
    _add_common(demo)
    bench = sub.add_parser("bench", help="time exact P&R against eP&R variants on synthetic or given features")
    bench.add_argument("--real", help="real features (.npy/.npz); default: synthetic")
    bench.add_argument("--fake", help="generated features (.npy/.npz)")
    bench.add_argument("--n", type=int, default=10000, help="synthetic samples per set (default 10000)")
    bench.add_argument("--dim", type=int, default=2048, help="synthetic feature dimension (default 2048)")
    bench.add_argument("--t", type=int, default=DEFAULTS["t"])
    bench.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    _add_common(bench)
    return parser


def _run(args: argparse.Namespace) -> int:
    from .distributed import init

    world = init()  # under torchrun: every rank shares the tiled passes
    try:
        return _run_on(args, world.rank)
    finally:
        world.close()


def _run_on(args: argparse.Namespace, rank: int) -> int:
    from .api import compute_pr
    from .epr import compute_epr


    common = dict(strict=args.strict, device=args.device, memory_budget=args.memory_budget,
                  error_bound=args.error_bound, precision=args.precision, extractor=args.extractor, weights=args.weights,
                  batch_size=args.batch_size, num_workers=args.workers, cache_dir=args.cache_dir,
                  save_features=args.save_features, on_error="skip" if args.skip_bad_images else "raise",
                  progress=not args.quiet)
    if args.exact:
        res = compute_pr(args.real, args.fake, k=args.k, realism=args.realism, **common)
    else:
        k = args.k[0] if len(args.k) == 1 else args.k
        res = compute_epr(args.real, args.fake, method=args.method, k=k, t=args.t, backend=args.backend,
                          radii=args.radii, sample_size=args.sample_size, confidence=args.confidence,
                          audit=not args.no_audit, **common)
    if rank != 0:  # every rank holds the same result: rank 0 reports it
        return 0
    print(res)
    if res.method == "epr":
        print("eP&R is an estimate on hubs; its error depends on the data (see the audit line). "
              "--method sampled gives intervals, --exact the exact value.")
    if args.json:
        res.to_json(args.json)
    return 0


def _demo_plot(rows: list, path: str) -> None:
    """Precision and recall per defect, exact vs eP&R vs sampled, as a PNG (needs matplotlib: the ``bench`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is missing (pip install 'eprmetrics[bench]')")
        return
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    names = [f"{r['defect']}\n{r['strength']:g}" for r in rows]
    x = range(len(rows))
    for ax, key in zip(axes, ("precision", "recall")):
        ax.bar([i - 0.27 for i in x], [r["exact"][key] for r in rows], 0.27, label="exact")
        ax.bar(list(x), [r["epr"][key] for r in rows], 0.27, label="eP&R (hubness)")
        ci = [r["sampled"][f"{key}_ci"] for r in rows]
        ax.bar([i + 0.27 for i in x], [r["sampled"][key] for r in rows], 0.27, label="sampled (95% CI)",
               yerr=[[r["sampled"][key] - c[0] for r, c in zip(rows, ci)], [c[1] - r["sampled"][key] for r, c in zip(rows, ci)]])
        ax.set_xticks(list(x), names, fontsize=7)
        ax.set_title(key)
    axes[0].legend()
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}")


def _demo(args: argparse.Namespace) -> int:
    from .api import compute_pr
    from .epr import AuditWarning, compute_epr
    from .synthetic import make_pair

    if args.n < 2 or args.dim < 1:
        raise ValueError(f"--n and --dim: expected n ≥ 2 and dim ≥ 1, got n={args.n}, dim={args.dim}")
    cases = [("none", 0.0), ("mode_drop", 0.5), ("truncation", 0.2), ("outliers", 0.3), ("noise", 0.1)]
    k = args.k[0]
    print(f"eprmetrics demo: synthetic VGG-like features, n={args.n} per set, dim={args.dim}, k={k}, t=3")
    print(f"{'defect':<12} {'strength':>8} | {'exact P':>7} {'exact R':>7} {'time':>7} | "
          f"{'eP&R P':>7} {'eP&R R':>7} {'time':>7} {'P err':>6} {'R err':>6} {'audit':>6} | "
          f"{'sampled P':>15} {'sampled R':>15} {'time':>7} {'CI holds':>8}")
    rows, last = [], None
    for defect, strength in cases:
        real, fake = make_pair(args.n, args.n, dim=args.dim, defect=defect, strength=strength, seed=args.seed)
        opts = dict(k=k, strict=args.strict, device=args.device, memory_budget=args.memory_budget,
                    error_bound=args.error_bound, precision=args.precision, progress=not args.quiet)
        last = compute_pr(real, fake, **opts)
        with warnings.catch_warnings():  # the audit verdict is a column of the table
            warnings.simplefilter("ignore", AuditWarning)
            epr = compute_epr(real, fake, **opts)
        smp = compute_epr(real, fake, method="sampled", seed=args.seed, **opts)
        err = [abs(a - b) / a if a else float("nan") for a, b in ((last.precision, epr.precision), (last.recall, epr.recall))]
        hw = [(hi - lo) / 2 for lo, hi in (smp.precision_ci, smp.recall_ci)]
        holds = all(lo <= v <= hi for v, (lo, hi) in ((last.precision, smp.precision_ci), (last.recall, smp.recall_ci)))
        print(f"{defect:<12} {strength:>8.2f} | {last.precision:>7.4f} {last.recall:>7.4f} {last.seconds:>6.2f}s | "
              f"{epr.precision:>7.4f} {epr.recall:>7.4f} {epr.seconds:>6.2f}s {100 * err[0]:>5.1f}% {100 * err[1]:>5.1f}% "
              f"{'ok' if epr.audit['consistent'] else 'WARN':>6} | "
              f"{smp.precision:>7.4f}±{hw[0]:.4f} {smp.recall:>7.4f}±{hw[1]:.4f} {smp.seconds:>6.2f}s {str(holds):>8}")
        rows.append({"defect": defect, "strength": strength, "exact": last.to_dict(), "epr": epr.to_dict(),
                     "sampled": smp.to_dict()})
    print(f"\neP&R backend: {epr.backend} ({epr.backend_reason}); hubs: real {100 * epr.hubs['real']['fraction']:.1f}%, "
          f"fake {100 * epr.hubs['fake']['fraction']:.1f}%. eP&R is an estimate whose error depends on the data: "
          f"'audit' says whether it lies inside its sampled audit's 95% interval.")
    print("sampled = compute_epr(method='sampled'): unbiased, ± the 95% half-width; 'CI holds' = both intervals "
          "contain the exact values.")
    if args.plot:
        _demo_plot(rows, args.plot)
    print("\nStages of the last exact run:")
    print(last.stage_table())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (DataLoader workers wrap it in a traceback: keep its last line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return exc.__class__.__name__
    last = lines[-1]
    if len(lines) > 1 and "Traceback" in str(exc):
        return last.split(": ", 1)[1] if last.startswith(("ValueError: ", "FileNotFoundError: ")) else last
    return " ".join(lines)


def _bench(args: argparse.Namespace) -> int:
    """Exact P&R and eP&R (defaults, ANN radii) in one run: time, peak memory, relative error."""
    from .api import compute_pr
    from .epr import compute_epr
    from .synthetic import make_pair

    if bool(args.real) != bool(args.fake):
        raise ValueError("--real and --fake: give both feature files, or neither for synthetic features")
    if args.real:
        real, fake, what = args.real, args.fake, f"{args.real} vs {args.fake}"
    else:
        real, fake = make_pair(args.n, args.n, dim=args.dim, defect="truncation", strength=0.1, seed=args.seed)
        what = f"synthetic n={args.n} dim={args.dim} (truncation ψ=0.9)"
    k = args.k[0]
    opts = dict(strict=args.strict, device=args.device, memory_budget=args.memory_budget, error_bound=args.error_bound,
                precision=args.precision, progress=not args.quiet)
    exact = compute_pr(real, fake, k=k, density_coverage=False, **opts)
    runs = [("exact compute_pr", exact)]
    for label, extra in (("compute_epr", {}), ("compute_epr radii=ann", {"radii": "ann"}),
                         ("compute_epr sampled", {"method": "sampled"})):
        runs.append((label, compute_epr(real, fake, k=k, t=args.t, **extra, **opts)))
    print(f"eprmetrics bench: {what}, k={k}, t={args.t}, device={exact.device}")
    print(f"{'method':<22} {'backend':<10} {'time':>8} {'speed-up':>8} {'peak RSS':>10} {'P':>7} {'R':>7} {'P err':>6} {'R err':>6}")
    rows = []
    for label, r in runs:
        pe = abs(r.precision - exact.precision) / exact.precision if exact.precision else float("nan")
        re_ = abs(r.recall - exact.recall) / exact.recall if exact.recall else float("nan")
        print(f"{label:<22} {r.backend or '-':<10} {r.seconds:>7.2f}s {exact.seconds / r.seconds:>7.2f}× "
              f"{format_bytes(r.peak_rss):>10} {r.precision:>7.4f} {r.recall:>7.4f} {100 * pe:>5.1f}% {100 * re_:>5.1f}%")
        rows.append({"method": label, **r.to_dict()})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"run", "demo", "bench", "-h", "--help"}
    if argv and argv[0] not in commands:
        argv.insert(0, "run")  # `eprmetrics REAL FAKE` is `eprmetrics run REAL FAKE`
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return {"run": _run, "demo": _demo, "bench": _bench}[args.command](args)
    except _USER_ERRORS as exc:
        if args.debug:
            traceback.print_exc()
        print(f"eprmetrics: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eprmetrics: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
