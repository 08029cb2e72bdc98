"""What reduced-precision GEMMs (TF32, bf16) do to P&R decisions — trusted raw, and with eprmetrics' bound.

Two views, same synthetic sets:

* **raw**: P&R decided directly from distances computed with TF32-rounded (10-bit mantissa,
  emulated by rounding the inputs) or bf16 GEMM inputs, as a library that simply turns TF32 on
  would: flipped membership decisions and the P&R change against exact float64 decisions;
* **eprmetrics**: ``compute_pr(precision=...)``: same values as fp32 (the rounding bound widens),
  cost moves into float64 re-checks (count reported). On a CPU, TF32 does not exist and the engine
  stays fp32; bf16 runs (slowly) on the CPU.

From the repository root:

    python -m benchmarks.bench_precision --n 5000 --dim 512
    python -m benchmarks.bench_precision --n 20000 --dim 4096 --device cuda --tag gpu

Results: ``benchmarks/results/precision[_<tag>].{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmarks.common import machine, save
from eprmetrics import compute_pr
from eprmetrics.synthetic import make_pair


def round_mantissa(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round float32 values to ``bits`` explicit mantissa bits (round to nearest): TF32 = 10, bf16 = 7."""
    drop = 23 - bits
    i = x.float().contiguous().view(torch.int32)
    i = (i + (1 << (drop - 1))) & ~((1 << drop) - 1)
    return i.view(torch.float32)


def sqdist(a: torch.Tensor, b: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Squared distances with the norm expansion; GEMM inputs rounded to ``bits`` (None: fp32/float64 as given)."""
    ga, gb = (a, b) if bits is None else (round_mantissa(a, bits), round_mantissa(b, bits))
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * ga @ gb.T).clamp_min(0)


def decisions(real: torch.Tensor, fake: torch.Tensor, k: int, bits: int | None) -> tuple[np.ndarray, np.ndarray]:
    drr, dff, drf = sqdist(real, real, bits), sqdist(fake, fake, bits), sqdist(real, fake, bits)
    drr.fill_diagonal_(float("inf")), dff.fill_diagonal_(float("inf"))
    r_r = drr.kthvalue(k, 1).values
    r_f = dff.kthvalue(k, 1).values
    prec = (drf <= r_r[:, None]).any(0)
    rec = (drf <= r_f[None, :]).any(1)
    return prec.cpu().numpy(), rec.cpu().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    dev = torch.device(args.device)
    real, fake = make_pair(args.n, args.n, dim=args.dim, defect="truncation", strength=0.1, seed=0)
    center = real.double().mean(0)
    r64, f64 = (real.double() - center).to(dev), (fake.double() - center).to(dev)
    exact_p, exact_r = decisions(r64, f64, args.k, None)
    rows = []
    for name, bits in (("fp32", None), ("tf32 (emulated)", 10), ("bf16 (emulated)", 7)):
        p, r = decisions(r64.float(), f64.float(), args.k, bits)
        rows.append(
            {
                "view": "raw",
                "precision_mode": name,
                "P": float(p.mean()),
                "R": float(r.mean()),
                "flipped_precision_decisions": int((p != exact_p).sum()),
                "flipped_recall_decisions": int((r != exact_r).sum()),
            }
        )
    for mode in ("fp32", "tf32", "bf16"):
        t0 = time.perf_counter()
        res = compute_pr(real, fake, k=args.k, device=args.device, precision=mode, density_coverage=False)
        rows.append(
            {
                "view": "eprmetrics",
                "precision_mode": f"{mode} (ran as {res.gemm_precision})",
                "P": res.precision,
                "R": res.recall,
                "float64_rechecks": res.n_redecided,
                "seconds": time.perf_counter() - t0,
                "flipped_precision_decisions": int(round(abs(res.precision - exact_p.mean()) * args.n)),
                "flipped_recall_decisions": int(round(abs(res.recall - exact_r.mean()) * args.n)),
            }
        )
    md = [
        f"# GEMM precision and P&R decisions — synthetic n={args.n} per set, d={args.dim}, k={args.k}, "
        f"device {args.device}",
        "",
        f"Exact (float64): P {exact_p.mean():.4f}, R {exact_r.mean():.4f}.",
        "",
        "| view | GEMM | P | R | flipped P decisions | flipped R decisions | float64 re-checks | time s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['view']} | {r['precision_mode']} | {r['P']:.4f} | {r['R']:.4f} | "
            f"{r['flipped_precision_decisions']} | {r['flipped_recall_decisions']} | "
            f"{r.get('float64_rechecks', '-')} | {r['seconds']:.1f} |"
            if "seconds" in r
            else f"| {r['view']} | {r['precision_mode']} | {r['P']:.4f} | {r['R']:.4f} | "
            f"{r['flipped_precision_decisions']} | {r['flipped_recall_decisions']} | - | - |"
        )
    md.append("\nFor eprmetrics rows the flip columns are |value − exact|·n (0 means the same values as exact).")
    md += ["", f"Machine: `{json.dumps(machine())}`", ""]
    j, m = save(
        "precision" + (f"_{args.tag}" if args.tag else ""),
        {"args": vars(args), "machine": machine(), "rows": rows},
        "\n".join(md),
    )
    print("\n".join(md))
    print(f"wrote {j}, {m}")


if __name__ == "__main__":
    main()
