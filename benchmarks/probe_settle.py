"""Diagnosis probe (issue 31): for 300 owners of the first n rows of a bench_scale memmap, the share of true
radii that the rounding bound against the set's largest norm leaves unsettled (one more full pass each) and the
share the per-owner bound (norms up to |a| + r) leaves.

    PYTHONPATH=. python benchmarks/probe_settle.py heavy 20000
"""

import sys

import numpy as np
import torch

from eprmetrics.engine import FeatureSet, TileEngine
from eprmetrics.neighbours.radii import Radii

sp, n = sys.argv[1], int(sys.argv[2])
x = np.load(f"/tmp/eprm-scale-h/real_50000_4096_float16_{sp}.npy", mmap_mode="r")[:n]
eng = TileEngine(4096, torch.device("cpu"), 1 << 29)
fs = FeatureSet(x, "real")
p = eng.prepare(fs, eng.center_of(fs))
own = torch.from_numpy(np.sort(np.random.default_rng(0).choice(n, 300, replace=False)))
r = Radii(eng, p, 3, owners=eng.subset(p, own), owner_ids=own)
K = r.idx.shape[1]
d2 = (
    eng.exact_sqdist_pairs(r.p, torch.arange(300).repeat_interleave(K), p, r.idx.reshape(-1)).view(-1, K).sort(1).values
)
rk = d2[:, 2]
vK = r.vals[:, -1].double()
norm_a = r.p.norm.double()
unsettled_now = vK - r.delta < rk
d_local = eng.c * (2 * norm_a + rk.sqrt() * 1.001 + 1e-6) ** 2
unsettled_local = vK - d_local < rk
nrm = p.norm.double()
print(
    sp,
    n,
    f"max_norm/median {float(p.max_norm / nrm.median()):.1f}",
    f"delta/r_k median {float((r.delta / rk).median()):.2e}",
    f"local delta/r_k median {float((d_local / rk).median()):.2e}",
    f"(vK - rk)/rk median {float(((vK - rk) / rk).median()):.2e}",
    f"unsettled now {float(unsettled_now.double().mean()):.3f}",
    f"with the per-owner bound {float(unsettled_local.double().mean()):.3f}",
)
