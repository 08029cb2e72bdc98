"""What the hub method's audit costs, as a share of the run it audits (one run per configuration).

The audit (a sampled estimate with intervals riding along every ``method="hubness"`` result) reuses the
hub run's k-NN graphs and its hub-vs-all radii; this measures its stages against the rest of the same run,
a ratio inside one process, so it holds on a noisy machine.

Usage (from the repository root)::

    python -m benchmarks.bench_audit                          # 12k and 25k × 512, both spectra
    python -m benchmarks.bench_audit --n 50000 --dim 512 --name audit_50k
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from benchmarks.common import machine, save


def measure(n: int, dim: int, spectrum: str, seed: int) -> dict[str, Any]:
    from eprmetrics import AuditWarning, compute_epr
    from eprmetrics.synthetic import make_pair

    real, fake = make_pair(n, n, dim=dim, seed=seed, defect="truncation", strength=0.2, spectrum=spectrum)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AuditWarning)
        res = compute_epr(real, fake, method="hubness", seed=seed, progress=False)
    audit = sum(s.seconds for s in res.stages if s.name.startswith("audit"))
    assert res.audit is not None
    return {
        "n": n,
        "dim": dim,
        "spectrum": spectrum,
        "backend": res.backend,
        "audit_s": audit,
        "run_s": res.seconds - audit,
        "share": audit / (res.seconds - audit),
        "true_radii": {side: res.audit[side].true_radii_computed for side in ("precision", "recall")},
        "consistent": res.audit.consistent,
    }


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_audit", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[12000, 25000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--spectra", nargs="+", default=["low", "long"], choices=("low", "long"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="audit_cost")
    args = p.parse_args(argv)
    rows = []
    for n in args.n:
        for spectrum in args.spectra:
            rows.append(measure(n, args.dim, spectrum, args.seed))
            r = rows[-1]
            print(
                f"n={n} d={args.dim} {spectrum}: {r['backend']}, audit {r['audit_s']:.2f} s = "
                f"{100 * r['share']:.1f}% of the {r['run_s']:.2f} s run",
                flush=True,
            )
    info = machine()
    lines = [
        "# The hub method's audit: its cost as a share of the run it audits",
        "",
        f"Machine: {info.get('cpu')} ({info.get('cpu_count')} cores), {info.get('date')}; one run each.",
        "",
        "| n per set | d | spectrum | backend | audit | rest of the run | share | true radii computed (P / R) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['dim']} | {r['spectrum']} | {r['backend']} | {r['audit_s']:.2f} s | "
            f"{r['run_s']:.2f} s | {100 * r['share']:.1f}% | {r['true_radii']['precision']} / "
            f"{r['true_radii']['recall']} |"
        )
    md = "\n".join(lines) + "\n"
    save(args.name, {"machine": info, "args": vars(args), "rows": rows}, md)
    print(md)


if __name__ == "__main__":
    main(sys.argv[1:])
