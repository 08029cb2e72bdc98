"""The GEMM precision of the sampled path's exact decisions, fp32 against bf16, on the three synthetic families.

The planner runs the decisions (query scans, true-radius rows) in bf16 where it measures the device's bf16 GEMM
at least ``BF16_SPEEDUP`` times its fp32 one (``plan.params["decision_precision"]``). This benchmark forces each in
turn, alternating within one process on the same sets (same seed, same samples): the decisions must be identical
(P, R and intervals equal), and the time of the stages deciding the sampled queries is compared.

    python -m benchmarks.bench_decisions                      # 20k × 4096 per set, low / long / heavy
    python -m benchmarks.bench_decisions --n 50000 --rounds 2

Results: ``benchmarks/results/decisions_precision_<n>k.{json,md}`` with the git revision.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

from benchmarks.bench_scale import git_revision
from benchmarks.common import machine, save
from eprmetrics import AuditWarning, compute_epr
from eprmetrics.estimators import planner
from eprmetrics.synthetic import SyntheticSpec, generate


def _run(real: Any, fake: Any, speedup: float) -> dict[str, Any]:
    planner.BF16_SPEEDUP = speedup  # 0: bf16 whenever measured at all; inf: never
    t0 = time.perf_counter()
    res = compute_epr(real, fake, method="sampled", seed=0, device="cpu")
    wall = time.perf_counter() - t0
    decide = sum(s.seconds for s in res.stages if "exact membership of sampled" in s.name)
    return {
        "precision_used": res.plan.params.get("decision_precision"),
        "wall_s": wall,
        "decisions_s": decide,
        "estimate": [res.precision, res.recall, list(res.precision_ci), list(res.recall_ci)],
        "true_radii": {side: v["true_radii_computed"] for side, v in res.sampling.items()},
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--families", nargs="+", default=["low", "long", "heavy"])
    ap.add_argument("--rounds", type=int, default=1, help="alternating fp32 / bf16 runs per family (fastest kept)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", AuditWarning)
    default = planner.BF16_SPEEDUP
    rows = []
    for family in args.families:
        spec = SyntheticSpec(dim=args.dim, seed=0, spectrum=family)
        real = generate(args.n, spec, stream=0).half().numpy()
        fake = generate(args.n, spec, stream=1, defect="truncation", strength=0.1).half().numpy()
        best: dict[str, dict[str, Any]] = {}
        for _ in range(args.rounds):
            for label, speedup in (("fp32", float("inf")), ("bf16", 0.0)):
                r = _run(real, fake, speedup)
                if label not in best or r["decisions_s"] < best[label]["decisions_s"]:
                    best[label] = r
        planner.BF16_SPEEDUP = default
        a, b = best["fp32"], best["bf16"]
        row = {
            "family": family,
            "fp32": a,
            "bf16": b,
            "same_estimates": a["estimate"] == b["estimate"],
            "decisions_ratio": a["decisions_s"] / max(b["decisions_s"], 1e-9),
        }
        rows.append(row)
        print(
            f"{family}: decisions fp32 {a['decisions_s']:.1f} s, bf16 {b['decisions_s']:.1f} s "
            f"({row['decisions_ratio']:.2f}x), whole call {a['wall_s']:.1f} / {b['wall_s']:.1f} s, "
            f"same estimates: {row['same_estimates']}",
            flush=True,
        )
    rev = git_revision()
    md = [
        f"# Sampled decisions: fp32 against bf16 GEMMs — {args.n:,} × {args.dim} per set, float16 inputs",
        "",
        "Default `compute_epr(method='sampled', seed=0)`; the decisions' precision forced in turn, alternating in one "
        f"process ({args.rounds} round(s), fastest kept). *decisions*: the stages deciding the sampled queries "
        "exactly (both sides).",
        "",
        "| family | decisions fp32 s | decisions bf16 s | ratio | whole call fp32 / bf16 s | true radii P / R | "
        "P | R | same estimates and intervals |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, b = r["fp32"], r["bf16"]
        md.append(
            f"| {r['family']} | {a['decisions_s']:.1f} | {b['decisions_s']:.1f} | {r['decisions_ratio']:.2f}× | "
            f"{a['wall_s']:.1f} / {b['wall_s']:.1f} | {b['true_radii']['precision']} / {b['true_radii']['recall']} | "
            f"{b['estimate'][0]:.4f} | {b['estimate'][1]:.4f} | {r['same_estimates']} |"
        )
    md += ["", f"Machine: `{machine()}`; git revision `{rev}`."]
    save(
        f"decisions_precision_{args.n // 1000}k",
        {"args": vars(args), "rows": rows, "machine": machine(), "git_revision": rev},
        "\n".join(md),
    )
    print("\n".join(md))


if __name__ == "__main__":
    main()
