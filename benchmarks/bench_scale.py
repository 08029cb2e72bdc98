"""Scale: the LSUN-Horse-scale run (thesis Table 4.10 layout) and a scaling study with fitted exponents.

    lsun-horse-scale  synthetic real and fake sets of any n (default 1.5M × 4096, the LSUN-Horse scale)
                      generated in chunks on the device or into .npy memory maps (``--memmap DIR``,
                      ``--dtype float16``); time and peak memory per stage for exact P&R, eP&R
                      (radii exact / ann) and the sampled estimator
    scaling           time and peak memory vs n for every method; log-log plot; fitted exponent b of
                      ``time ∝ n^b`` per method
    report            the scaling report of rows from earlier scaling / lsun-horse-scale JSONs (one
                      series measured in pieces)
    memmap            exact P&R on memory-mapped sets (float16 by default): peak anonymous RSS,
                      i.e. beyond the memmaps' page cache

    # from the repository root, on a GPU machine (results name the device):
    python -m benchmarks.bench_scale lsun-horse-scale --device cuda
    python -m benchmarks.bench_scale lsun-horse-scale --device cuda --n 70000 --methods exact --tag 70k
    # on this CPU:
    python -m benchmarks.bench_scale scaling --sizes 10000 20000 40000 80000 --dim 512
    python -m benchmarks.bench_scale memmap --n 200000 --dim 512 --memmap /tmp/eprm-200k
    python -m benchmarks.bench_scale report --tag 4096_long_to_1.5M \
        --from benchmarks/results/scale_scaling_4096_long.json benchmarks/results/scale_lsun_1.5M_4096_long.json

Results: ``benchmarks/results/scale_<table>[_<tag>].{json,md,png}``, with the git revision measured. Every row of a
memmap run carries ``memmap_passes``: per set, the bytes the package asked for from its file (page-cache hits
included; ``Stage.mapped_read``) and the full passes they make, in total and per stage. ``--spectrum heavy``: the
heavy-tailed family of issue 31 (docs/scale-diagnosis.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import threading
import time
import warnings
from typing import Any, Callable, Optional

import numpy as np

from benchmarks.common import RESULTS, machine, save
from eprmetrics import AuditWarning, compute_epr, compute_pr
from eprmetrics.engine import resolve_device
from eprmetrics.synthetic import SPECTRA, SyntheticSpec, generate, write_npy

warnings.simplefilter("ignore", AuditWarning)

METHODS: dict[str, Callable[..., Any]] = {
    "exact": lambda r, f, o: compute_pr(r, f, density_coverage=False, **o),
    "hubness": lambda r, f, o: compute_epr(r, f, method="hubness", audit=False, **o),
    "hubness-ann": lambda r, f, o: compute_epr(r, f, method="hubness", radii="ann", audit=False, **o),
    "sampled": lambda r, f, o: compute_epr(r, f, method="sampled", **o),
}


def _anon_rss() -> int:
    """Anonymous resident memory (bytes): RSS without file-backed pages such as memmaps' page cache."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class AnonPeak:
    """Samples anonymous RSS every 50 ms in a thread: ``peak`` is the largest value, ``samples`` the
    (epoch seconds, bytes) timeline."""

    def __enter__(self) -> "AnonPeak":
        self.base = self.peak = _anon_rss()
        self.samples: list[tuple[float, int]] = [(time.time(), self.base)]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            v = _anon_rss()
            self.peak = max(self.peak, v)
            if time.time() - self.samples[-1][0] >= 0.5:
                self.samples.append((time.time(), v))

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _anon_rss())
        self.samples.append((time.time(), _anon_rss()))


def profiled_call(fn: Callable[[], Any], timeline: bool) -> tuple[Any, list[tuple[float, float]]]:
    """``fn()``, with memory-profiler's RSS timeline (``memory_usage``: MiB with timestamps, children
    included, as ``mprof run`` records it) when ``timeline`` and the package is installed."""
    if not timeline:
        return fn(), []
    try:
        from memory_profiler import memory_usage
    except ImportError:
        print("memory-profiler is not installed (pip install 'eprmetrics[bench]'): no memory timeline")
        return fn(), []
    mem, out = memory_usage((fn, (), {}), interval=0.5, timestamps=True, include_children=True, retval=True)
    return out, [(float(t), float(m)) for m, t in mem]


def make_sets(args: argparse.Namespace) -> tuple[Any, Any, str]:
    spec = SyntheticSpec(dim=args.dim, seed=args.seed, spectrum=args.spectrum)
    if args.memmap:
        os.makedirs(args.memmap, exist_ok=True)
        rows = max(args.rows_of or args.n, args.n)
        paths = [
            os.path.join(args.memmap, f"{name}_{rows}_{args.dim}_{args.dtype}_{args.spectrum}.npy")
            for name in ("real", "fake")
        ]
        for path, stream, defect in zip(paths, (0, 1), ("none", args.defect)):
            if not os.path.exists(path):
                t0 = time.perf_counter()
                write_npy(
                    path,
                    rows,
                    spec,
                    stream=stream,
                    defect=defect,
                    strength=args.strength,
                    dtype=args.dtype,
                    device=args.gen_device,
                )
                print(f"wrote {path} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rows > args.n:  # the first n rows of larger memmaps: the generator is chunk-invariant, so the same sets
            real, fake = (np.load(p, mmap_mode="r")[: args.n] for p in paths)
            return real, fake, f"the first {args.n:,} rows of {rows:,}-row memmaps ({args.dtype}) in {args.memmap}"
        return paths[0], paths[1], f"memmaps ({args.dtype}) in {args.memmap}"
    import torch

    dev = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    real = generate(args.n, spec, stream=0, device=dev, dtype=dtype)
    fake = generate(args.n, spec, stream=1, defect=args.defect, strength=args.strength, device=dev, dtype=dtype)
    return real, fake, f"generated on {dev} ({args.dtype})"


def memmap_passes(stages: list[dict[str, Any]], sets: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per memory-mapped set (a .npy path, or a memmap of the first rows of one): bytes the package asked for
    from its file over ``stages`` and the full passes they make (÷ the set's bytes); per stage too."""
    out = {}
    for name, path in sets.items():
        if isinstance(path, np.memmap) and path.filename:
            key, size = os.path.abspath(path.filename), path.nbytes
        elif isinstance(path, str):
            key, size = os.path.abspath(path), np.load(path, mmap_mode="r").nbytes
        else:
            continue
        per_stage = [(s.get("mapped_read") or {}).get(key, 0) for s in stages]
        out[name] = {"bytes": sum(per_stage), "passes": sum(per_stage) / size, "per_stage": per_stage}
    return out


def run_method(name: str, real: Any, fake: Any, args: argparse.Namespace) -> dict[str, Any]:
    gc.collect()
    opts = {"device": args.device, "seed": args.seed} if name != "exact" else {"device": args.device}
    with AnonPeak() as mem:
        t0 = time.perf_counter()
        res, rss_timeline = profiled_call(lambda: METHODS[name](real, fake, opts), getattr(args, "timeline", False))
        seconds = time.perf_counter() - t0
    out = {
        "method": name,
        "seconds": seconds,
        "precision": res.precision,
        "recall": res.recall,
        "anon_rss_growth": mem.peak - mem.base,
        "peak_rss": res.peak_rss,
        "peak_device": res.peak_device_memory,
        "device": res.device,
        "backend": res.backend,
        "plan": None
        if res.plan is None
        else {
            "path": res.plan.path,
            "backends": res.plan.backends,
            "predicted": res.plan.predicted,
            "revised": res.plan.revised,
            "actual": res.plan.actual,
        },
        "stages": [s.to_dict() for s in res.stages],
        "params": None if res.plan is None else res.plan.params,
        "rss_timeline_mib": rss_timeline,  # memory-profiler: (epoch s, MiB), page cache of the memmaps included
        "anon_timeline": mem.samples,  # (epoch s, bytes) anonymous RSS: beyond the page cache
    }
    out["memmap_passes"] = memmap_passes(out["stages"], {"real": real, "fake": fake})
    if res.precision_ci is not None:
        out.update(precision_ci=list(res.precision_ci), recall_ci=list(res.recall_ci))
        out["sampling"] = {side: dict(v) for side, v in res.sampling.items()}
    print(f"{name}: {seconds:.1f} s, P {res.precision:.4f}, R {res.recall:.4f}", flush=True)
    return out


def plot_timeline(row: dict[str, Any], path: str, title: str) -> None:
    """Stage timeline above the memory timeline (memory-profiler's RSS and the anonymous RSS), as
    ``mprof plot`` draws a run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    stages = row["stages"]
    t0 = min([s["started"] for s in stages] + [t for t, _ in row["anon_timeline"][:1]])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    for i, s in enumerate(stages):
        top.barh(i, s["seconds"] / 60, left=(s["started"] - t0) / 60, color=f"C{i % 10}")
        label = f" {s['name'][:48]} ({s['seconds']:.0f} s)"
        top.text((s["started"] - t0 + s["seconds"]) / 60, i, label, va="center", fontsize=6)
    top.set_yticks([]), top.set_title(title, fontsize=9)
    if row["rss_timeline_mib"]:
        xs = [(t - t0) / 60 for t, _ in row["rss_timeline_mib"]]
        mib = [m / 1024 for _, m in row["rss_timeline_mib"]]
        bottom.plot(xs, mib, label="RSS (memory-profiler; memmap pages included)")
    xs = [(t - t0) / 60 for t, _ in row["anon_timeline"]]
    bottom.plot(xs, [b / 2**30 for _, b in row["anon_timeline"]], label="anonymous RSS (beyond the page cache)")
    bottom.set_xlabel("minutes"), bottom.set_ylabel("GiB"), bottom.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def git_revision() -> str:
    """The revision of the code measured (``+dirty`` when the work tree differs from it)."""
    import subprocess

    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], capture_output=True, text=True, check=False).stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    return rev + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def _write(table: str, args: argparse.Namespace, payload: dict, md: list[str]) -> str:
    stem = f"scale_{table}" + (f"_{args.tag}" if args.tag else "")
    rev = payload.get("git_revision") or git_revision()
    md = md + ["", f"Machine: `{json.dumps(machine())}`; git revision `{rev}`", ""]
    payload = {"table": table, "args": vars(args), "machine": machine(), **payload, "git_revision": rev}
    j, m = save(stem, payload, "\n".join(md))
    print("\n".join(md))
    print(f"wrote {j}, {m}")
    return os.path.join(RESULTS, stem + ".png")


def _gib(x: Optional[int]) -> str:
    return "-" if x is None else f"{x / 2**30:.2f}"


def t_lsun(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    real, fake, how = make_sets(args)
    generation = time.perf_counter() - t0  # timed apart: 0 when the memmaps already existed
    rev, load = git_revision(), os.getloadavg()  # the code measured, taken before it runs
    rows = [run_method(m, real, fake, args) for m in args.methods]
    md = [
        f"# LSUN-Horse scale (thesis Table 4.10 layout) — n={args.n:,} per set, d={args.dim}, "
        f"{args.spectrum} spectrum, {how}",
        "",
        f"Data generation (timed apart, not in any figure below): {generation:.0f} s.",
        "",
        "| method | stage | time s | peak RSS GiB | read from storage GiB | asked from memmaps GiB (passes "
        "real/fake) | device peak GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        passes = r.get("memmap_passes") or {}
        for i, s in enumerate(r["stages"]):
            per = "/".join(
                f"{p['per_stage'][i] / p['bytes'] * p['passes']:.2f}" if p["bytes"] else "0" for p in passes.values()
            )
            md.append(
                f"| {r['method']} | {s['name']} | {s['seconds']:.1f} | {_gib(s.get('rss_peak'))} | "
                f"{_gib(s.get('storage_read'))} | {_gib(s.get('mapped_total'))} ({per or '-'}) | "
                f"{_gib(s.get('device_peak'))} |"
            )
        read = sum(s.get("storage_read") or 0 for s in r["stages"])
        asked = sum(s.get("mapped_total") or 0 for s in r["stages"])
        per = "/".join(f"{p['passes']:.2f}" for p in passes.values())
        md.append(
            f"| **{r['method']}** | **total** | **{r['seconds']:.1f}** | {_gib(r['peak_rss'])} | {_gib(read)} | "
            f"{_gib(asked)} ({per or '-'}) | {_gib(r['peak_device'])} |"
        )
    md += ["", "| method | P | R | interval | peak anonymous RSS growth GiB |", "|---|---|---|---|---|"]
    for r in rows:
        ci = (
            f"P [{r['precision_ci'][0]:.4f}, {r['precision_ci'][1]:.4f}] R [{r['recall_ci'][0]:.4f}, "
            f"{r['recall_ci'][1]:.4f}]"
            if "precision_ci" in r
            else "-"
        )
        md.append(f"| {r['method']} | {r['precision']:.4f} | {r['recall']:.4f} | {ci} | {_gib(r['anon_rss_growth'])} |")
    md.append("\nThesis Table 4.10 (LSUN-Horse, 1.5M per set, 2×V100): exact P&R 2 h 10 min, eP&R 64 min.")
    md.append(
        f"\nLoad average before / after: {load[0]:.2f} / {os.getloadavg()[0]:.2f} (a shared machine times slower)."
    )
    png = _write("lsun", args, {"rows": rows, "generation_s": generation, "git_revision": rev, "loadavg": load}, md)
    for r in rows:
        plot_timeline(r, png.replace(".png", f"_{r['method']}_timeline.png"), f"{r['method']}: {md[0][2:]}")


def fit_exponent(ns: list[int], ts: list[float]) -> float:
    """Least-squares slope of log t against log n."""
    x, y = np.log(np.asarray(ns, float)), np.log(np.asarray(ts, float))
    return float(np.polyfit(x, y, 1)[0])


LIMITS = {"exact": "max_exact", "hubness": "max_hubness", "hubness-ann": "max_hubness"}


def t_scaling(args: argparse.Namespace) -> None:
    rows = []
    for n in args.sizes:
        args.n = n
        real, fake, _ = make_sets(args)
        for m in args.methods:
            if n <= getattr(args, LIMITS.get(m, "n"), n):
                rows.append({"n": n, **run_method(m, real, fake, args)})
        del real, fake
        _scaling_report(args, rows)  # after every size: a long series leaves results as it goes


def _scaling_report(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    fits: dict[str, Optional[float]] = {}
    for m in args.methods:
        pts = [(r["n"], r["seconds"]) for r in rows if r["method"] == m and r["n"] >= args.fit_from]
        fits[m] = fit_exponent([p[0] for p in pts], [p[1] for p in pts]) if len(pts) > 1 else None

    def cell(m: str, n: int) -> str:
        got = [r for r in rows if r["n"] == n and r["method"] == m]
        if got:
            return f"{got[0]['seconds']:.1f}"
        done = sorted((r["n"], r["seconds"]) for r in rows if r["method"] == m)
        if m == "exact" and done:  # exact is quadratic: extrapolated from its largest measured size
            return f"~{done[-1][1] * (n / done[-1][0]) ** 2:.0f} (extrapolated, n²)"
        return "-"

    md = [
        f"# Scaling study — d={args.dim}, {args.spectrum} spectrum, synthetic {args.defect}({args.strength}), "
        f"device {args.device}",
        "",
        "| n per set | " + " | ".join(f"{m} s" for m in args.methods) + " |",
        "|---" * (len(args.methods) + 1) + "|",
    ]
    for n in sorted({r["n"] for r in rows}):
        md.append(f"| {n:,} | " + " | ".join(cell(m, n) for m in args.methods) + " |")
    md.append(
        f"| **fitted exponent b** (t ∝ n^b, n ≥ {args.fit_from:,}) | "
        + " | ".join("-" if fits[m] is None else f"**{fits[m]:.2f}**" for m in args.methods)
        + " |"
    )
    md += ["", "Sampled runs: P, R and their 95% intervals; the plan's graph backends.", ""]
    md += ["| n | P [interval] | R [interval] | backends | peak anonymous RSS growth GiB |", "|---|---|---|---|---|"]
    for r in rows:
        if r["method"] == "sampled":
            md.append(
                f"| {r['n']:,} | {r['precision']:.4f} [{r['precision_ci'][0]:.4f}, {r['precision_ci'][1]:.4f}] | "
                f"{r['recall']:.4f} [{r['recall_ci'][0]:.4f}, {r['recall_ci'][1]:.4f}] | "
                f"{(r.get('plan') or {}).get('backends')} | {_gib(r['anon_rss_growth'])} |"
            )
    sources = sorted({r["source"] for r in rows if "source" in r})
    if sources:
        md += ["", "Rows measured by earlier runs on the same machine kind: " + ", ".join(f"`{s}`" for s in sources)]
    png = _write("scaling", args, {"rows": rows, "exponents": fits}, md)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in args.methods:
        pts = [(r["n"], r["seconds"]) for r in rows if r["method"] == m]
        if not pts:
            continue
        label = m if fits[m] is None else f"{m} (b = {fits[m]:.2f})"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("n per set"), ax.set_ylabel("seconds"), ax.legend()
    ax.set_title(f"time vs n, d={args.dim}, {args.spectrum} spectrum ({machine().get('gpu') or 'CPU'})")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    print(f"wrote {png}")


def t_memmap(args: argparse.Namespace) -> None:
    if not args.memmap:
        raise SystemExit("memmap: give --memmap DIR (where the .npy sets are written)")
    real, fake, how = make_sets(args)
    size = 2 * os.path.getsize(real)
    rows = [run_method(m, real, fake, args) for m in args.methods]
    md = [
        f"# Memory-mapped inputs — n={args.n} per set, d={args.dim}, {how} ({size / 2**30:.2f} GiB on disk)",
        "",
        "| method | time s | peak anonymous RSS growth GiB (beyond page cache) | "
        "peak RSS GiB (incl. page cache) | P | R |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['method']} | {r['seconds']:.1f} | **{_gib(r['anon_rss_growth'])}** | {_gib(r['peak_rss'])} | "
            f"{r['precision']:.4f} | {r['recall']:.4f} |"
        )
    _write("memmap", args, {"rows": rows}, md)


def t_report(args: argparse.Namespace) -> None:
    """The scaling report of rows measured by earlier runs (``--from`` scaling or lsun-horse-scale JSONs of
    one data kind): a long series can be measured in pieces, e.g. the 1.5M point by the LSUN-scale run. A later
    file's row replaces an earlier one of the same n and method (a point measured again)."""
    if not args.sources:
        raise SystemExit("report: give --from FILE [FILE ...] (scale_scaling_*.json or scale_lsun_*.json)")
    by_point: dict[tuple[int, str], dict[str, Any]] = {}
    first: Optional[dict[str, Any]] = None
    for path in args.sources:
        try:
            with open(path) as fh:
                saved = json.load(fh)
            kind = {key: saved["args"][key] for key in ("dim", "spectrum", "defect", "strength", "dtype", "device")}
            measured, default_n = saved["rows"], saved["args"]["n"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SystemExit(
                f"report: {path}: expected a scale_scaling_*.json or scale_lsun_*.json result, could not read it "
                f"({type(err).__name__}: {err}); pass the JSON files bench_scale wrote"
            ) from None
        if first is None:
            first = kind
        elif kind != first:
            raise SystemExit(f"report: {path} measured {kind}, the first file {first}: one data kind per report")
        for r in measured:
            row = {"n": r.get("n", default_n), **r, "source": os.path.basename(path)}
            by_point[(row["n"], row["method"])] = row
    assert first is not None
    rows = list(by_point.values())
    for key, value in first.items():
        setattr(args, key, value)
    args.methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    rows.sort(key=lambda r: (r["n"], r["method"]))
    _scaling_report(args, rows)


def t_generate(args: argparse.Namespace) -> None:
    """Only write the memmaps (timed apart from every run)."""
    if not args.memmap:
        raise SystemExit("generate: give --memmap DIR (where the .npy sets are written)")
    make_sets(args)


TABLES = {
    "generate": t_generate,
    "lsun-horse-scale": t_lsun,
    "scaling": t_scaling,
    "report": t_report,
    "memmap": t_memmap,
}


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", choices=list(TABLES))
    ap.add_argument("--n", type=int, default=1_500_000)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 20000, 40000, 80000])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--gen-device", default="cpu", help="where memmap chunks are generated")
    ap.add_argument("--dtype", choices=("float32", "float16"), help="default: float16 for memmap, else float32")
    ap.add_argument("--memmap", help="write the sets as .npy memory maps in this folder (kept for reuse)")
    ap.add_argument(
        "--rows-of",
        type=int,
        help="with --memmap: the sets are the first n rows of memmaps of this many rows (written if missing); "
        "the generator is chunk-invariant, so they equal n-row sets: one 1.5M pair serves a whole scaling series",
    )
    ap.add_argument("--spectrum", default="low", choices=SPECTRA, help="synthetic spectrum (see SyntheticSpec)")
    ap.add_argument("--defect", default="truncation")
    ap.add_argument("--strength", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--max-exact", type=int, default=100_000, help="scaling: largest n run exactly (beyond: n²)")
    ap.add_argument("--max-hubness", type=int, default=200_000, help="scaling: largest n for the hub method")
    ap.add_argument("--fit-from", type=int, default=100_000, help="scaling: smallest n in the exponent fits")
    ap.add_argument("--timeline", action="store_true", help="record memory-profiler's memory timeline")
    ap.add_argument("--from", dest="sources", nargs="+", help="report: result JSONs whose rows make the series")
    args = ap.parse_args(argv)
    args.dtype = args.dtype or ("float16" if args.memmap else "float32")
    TABLES[args.table](args)


if __name__ == "__main__":
    main()
