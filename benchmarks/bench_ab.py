"""One benchmark run from two revisions of the package, alternating, timings compared run by run.

"Did this change slow the CPU path?" needs the old and the new code timed side by side on the same
(noisy, shared) machine. This checks the base revision out into a temporary git worktree, then runs
``python -m benchmarks.<module> <args>`` from it and from the working tree in turn (A B, B A, A B, …),
each into its own results folder, and compares every ``seconds`` figure the two wrote into their
JSON, as a ratio new / base per round (medians quoted).

From the repository root:

    python -m benchmarks.bench_ab --base 64c1f98 --rounds 3 --name exact_10k_4096 -- \\
        bench_exact --n 10000 --dims 4096 --methods eprmetrics
    python -m benchmarks.bench_ab --base 64c1f98 --rounds 2 --name sampled_speed -- bench_sampled speed

Results: ``benchmarks/results/ab_<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

from benchmarks.common import REPO, machine, save

MIN_SECONDS = 0.5  # figures below this (in the base runs' median) are left out of the table: timer noise


def seconds_figures(node: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """``(path, value)`` of every numeric ``seconds`` field in a JSON tree; list items are named by their
    ``name``/``method`` field where they have one (stages, table rows), else by position."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "seconds" and isinstance(value, (int, float)):
                yield path or key, float(value)
            else:
                yield from seconds_figures(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            label = item.get("name") or item.get("method") if isinstance(item, dict) else None
            if isinstance(item, dict) and "n" in item and "dim" in item:
                label = f"{item['n']}x{item['dim']}"
            yield from seconds_figures(item, f"{path}[{label if label else i}]")


def run_once(tree: str, module: str, args: list[str], out: str) -> dict[str, float]:
    """Run the benchmark from ``tree`` with results into ``out``; its seconds figures and its wall time."""
    env = dict(os.environ, EPRM_BENCH_RESULTS=out, PYTHONPATH=tree)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=tree, env=env, check=True)
    figures = {"process wall": time.perf_counter() - t0}
    for path in sorted(glob.glob(os.path.join(out, "*.json"))):
        with open(path) as f:
            stem = os.path.splitext(os.path.basename(path))[0]
            figures.update({f"{stem}: {p}": v for p, v in seconds_figures(json.load(f))})
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the revision to compare against (a commit, tag or branch)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each side, alternating")
    ap.add_argument("--name", required=True, help="result file stem: results/ab_<name>")
    ap.add_argument("benchmark", nargs=argparse.REMAINDER, help="-- MODULE [ARGS]: a benchmarks.* module")
    a = ap.parse_args()
    bench = a.benchmark[1:] if a.benchmark[:1] == ["--"] else a.benchmark
    if not bench:
        ap.error("expected the benchmark after --, e.g. -- bench_exact --n 10000 --dims 4096")
    module, args = bench[0], bench[1:]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory(prefix="eprm-ab-") as tmp:
        base_tree = os.path.join(tmp, "base")
        subprocess.run(["git", "worktree", "add", "--detach", base_tree, a.base], cwd=REPO, check=True)
        try:
            runs: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
            for r in range(a.rounds):
                order = ("base", "new") if r % 2 == 0 else ("new", "base")
                for side in order:
                    out = os.path.join(tmp, f"{side}{r}")
                    print(f"round {r + 1}/{a.rounds}: {side}", flush=True)
                    runs[side].append(run_once(base_tree if side == "base" else REPO, module, args, out))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", base_tree], cwd=REPO, check=False)
    keys = [k for k in runs["base"][0] if all(k in run for run in runs["base"] + runs["new"])]
    rows = []
    for key in keys:
        base = [run[key] for run in runs["base"]]
        new = [run[key] for run in runs["new"]]
        if statistics.median(base) < MIN_SECONDS:
            continue
        ratios = [n / b for n, b in zip(new, base) if b > 0]
        rows.append(
            {
                "figure": key,
                "base_s": statistics.median(base),
                "new_s": statistics.median(new),
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
        )
    lines = [
        f"# A/B: `benchmarks.{module} {' '.join(args)}`",
        "",
        f"base `{a.base}` vs the working tree (HEAD `{head.strip()}`), {a.rounds} rounds alternating; "
        f"ratio = new / base per round (median, min–max); figures under {MIN_SECONDS} s left out.",
        "",
        "| figure | base (s) | new (s) | new / base | min–max |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['figure']} | {row['base_s']:.2f} | {row['new_s']:.2f} | {row['ratio_median']:.3f} "
            f"| {row['ratio_min']:.3f}–{row['ratio_max']:.3f} |"
        )
    md = "\n".join(lines) + "\n"
    print(md)
    save(
        f"ab_{a.name}",
        {"machine": machine(), "base": a.base, "head": head.strip(), "benchmark": bench, "rows": rows, "runs": runs},
        md,
    )


if __name__ == "__main__":
    main()
