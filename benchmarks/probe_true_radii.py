"""Diagnosis probe (issue 31): the default sampled compute_epr on the first n rows of the bench_scale memmaps
(``/tmp/eprm-scale-h/{real,fake}_50000_4096_float16_<spectrum>.npy``, written by ``bench_scale generate``),
printing passes over each memmap per stage, the sampling counters, and every true-radius batch (owners asked,
owners computed, screen used, seconds) and every second "redo" pass of Radii.

    PYTHONPATH=. python benchmarks/probe_true_radii.py heavy 20000 [fp32|bf16]
    PROBE_DIR=/work/data PROBE_ROWS=1500000 PYTHONPATH=. python benchmarks/probe_true_radii.py heavy 100000

Output: printed only (the logs kept are benchmarks/results/scale_diag_probe_20k_4096_*.log).
"""

import os
import sys
import time
import warnings

import numpy as np
import torch

from eprmetrics import AuditWarning, compute_epr
from eprmetrics.neighbours.radii import Radii
from eprmetrics.neighbours.upper import UpperRadii

warnings.simplefilter("ignore", AuditWarning)
sp, n = sys.argv[1], int(sys.argv[2])
log = []
orig_true2 = UpperRadii.true2


def true2(self, owners):
    todo = owners[torch.isnan(self._true2[owners])].unique()
    t = time.time()
    out = orig_true2(self, owners)
    log.append(("true2", int(owners.numel()), int(todo.numel()), self.screen is not None, round(time.time() - t, 2)))
    return out


UpperRadii.true2 = true2
orig_redo = Radii._redo


def redo(self, rows, thr):
    log.append(("redo", int(rows.numel())))
    return orig_redo(self, rows, thr)


Radii._redo = redo
# The first n rows of larger memmaps are the n-row sets (the generator is chunk-invariant).
folder, rows = os.environ.get("PROBE_DIR", "/tmp/eprm-scale-h"), os.environ.get("PROBE_ROWS", "50000")
precision = sys.argv[3] if len(sys.argv) > 3 else "fp32"
real = np.load(f"{folder}/real_{rows}_4096_float16_{sp}.npy", mmap_mode="r")[:n]
fake = np.load(f"{folder}/fake_{rows}_4096_float16_{sp}.npy", mmap_mode="r")[:n]
t = time.time()
res = compute_epr(real, fake, method="sampled", seed=0, device="cpu", precision=precision)
print(sp, n, f"{time.time() - t:.1f}s", res.precision, res.recall, res.plan.path, res.plan.backends, res.plan.params)
print("passes", res.plan.passes)
for side, s in res.sampling.items():
    print(
        side,
        {
            k: s[k]
            for k in (
                "sample_size",
                "phase_one",
                "strata",
                "true_radii_computed",
                "candidates",
                "scans",
                "screen",
                "approximate_membership",
                "half_width",
            )
        },
    )
for st in res.stages:
    print(f"  {st.seconds:7.1f}s {st.mapped_total / real.nbytes:6.2f} set-sizes  {st.name}")
calls = [e for e in log if e[0] == "true2"]
print(
    "true2 calls",
    len(calls),
    "owners computed",
    sum(e[2] for e in calls),
    "calls with work",
    sum(1 for e in calls if e[2]),
    "screen",
    sum(1 for e in calls if e[3]),
)
print("redo calls", sum(1 for e in log if e[0] == "redo"), "rows", sum(e[1] for e in log if e[0] == "redo"))
print([e for e in calls if e[2]][:40])
