"""Run by tests/test_distributed.py under torchrun: every rank computes and writes its results."""

import json
import sys
import warnings

import numpy as np

from eprmetrics import compute_epr, compute_pr
from eprmetrics.engine import init


def results(real, fake):
    budget = 1 << 16  # many tiles, so that every rank has work
    ex = compute_pr(real, fake, k=(3, 5), realism=True, memory_budget=budget)
    hub = compute_epr(real, fake, method="hubness", backend="exact", t=1, memory_budget=budget)
    smp = compute_epr(real, fake, method="sampled", backend="ivf-gemm", sample_size=300, memory_budget=budget)
    pca = compute_epr(  # lists and rescoring shared out across ranks
        real,
        fake,
        method="sampled",
        backend="ivf-pca",
        sample_size=300,
        memory_budget=budget,
        backend_options={"dims": 8},
    )
    low = _low_rank()  # the projection screen: its blocks of points shared out, the pairs gathered
    scr = compute_epr(*low, method="sampled", backend="ivf-pca", sample_size=300, memory_budget=budget, screen=True)
    wide = _wide()  # a two-phase design: the phase one's search shared out across ranks, as the graph's
    two = compute_epr(*wide, method="sampled", backend="ivf-pca", sample_size=20, memory_budget=budget)
    return {
        "two-phase": [
            two.precision,
            two.recall,
            *two.precision_ci,
            *two.recall_ci,
            two.sampling["precision"].phase_one,
            two.sampling["recall"].phase_one,
        ],
        "screened": [
            scr.precision,
            scr.recall,
            *scr.precision_ci,
            *scr.recall_ci,
            scr.sampling["precision"].screen["share"],
        ],
        "exact": [ex.precision, ex.recall, ex.density, ex.coverage, ex.per_k[5].precision, ex.per_k[5].recall],
        "realism": ex.realism.tolist(),
        "hubness": [hub.precision, hub.recall, hub.hubs["real"]["n_hubs"], hub.hubs["fake"]["n_hubs"]],
        "audit": [hub.audit["precision"]["estimate"], hub.audit["recall"]["estimate"]],
        "sampled": [smp.precision, smp.recall, *smp.precision_ci, *smp.recall_ci],
        "ivf-pca": [pca.precision, pca.recall, *pca.precision_ci, *pca.recall_ci, pca.sampling["recall"].strata],
    }


def _low_rank():
    rng = np.random.default_rng(8)
    basis = rng.normal(size=(6, 160))
    real = (rng.normal(size=(900, 6)) @ basis + 0.05 * rng.normal(size=(900, 160))).astype(np.float32)
    fake = (rng.normal(size=(800, 6)) @ basis * 0.9 + 0.05 * rng.normal(size=(800, 160))).astype(np.float32)
    return real, fake


def _wide():
    rng = np.random.default_rng(9)
    real = rng.normal(size=(2000, 24)).astype(np.float32)
    fake = (rng.normal(size=(1900, 24)) * 1.1 + 0.1).astype(np.float32)
    return real, fake


def data():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(700, 24)).astype(np.float32)
    fake = (rng.normal(size=(650, 24)) * 1.1 + 0.1).astype(np.float32)
    return real, fake


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    world = init()
    out = results(*data())
    out["world"] = [world.rank, world.size]
    with open(f"{sys.argv[1]}/rank{world.rank}.json", "w") as fh:
        json.dump(out, fh)
    world.close()
