"""Run by tests/test_distributed.py under torchrun: every rank computes and writes its results.

``python dist_worker.py OUT_DIR`` — every call with ``distributed=True``, rank 0 with a 64 KiB budget and rank 1
with 256 KiB (the smallest is agreed), equal to one process with 64 KiB; ``python dist_worker.py OUT_DIR
scenarios`` — the calls that must stay local, and the misuses that must end in one error on every rank
(:func:`scenarios`); ``python dist_worker.py OUT_DIR group`` on three ranks — two share over their own group
(:func:`in_group`).
"""

import json
import os
import sys
import time
import warnings

import numpy as np

from eprmetrics import Manifold, compute_epr, compute_pr, knn_graph, pr_curve
from eprmetrics.engine import init

BUDGET = 1 << 16  # many tiles, so that every rank has work


def results(real, fake, budget=BUDGET, distributed=False):
    shared = dict(memory_budget=budget, distributed=distributed)
    ex = compute_pr(real, fake, k=(3, 5), realism=True, **shared)
    hub = compute_epr(real, fake, method="hubness", backend="exact", t=1, **shared)
    smp = compute_epr(real, fake, method="sampled", backend="ivf-gemm", sample_size=300, **shared)
    pca = compute_epr(  # lists and rescoring shared out across ranks
        real,
        fake,
        method="sampled",
        backend="ivf-pca",
        sample_size=300,
        backend_options={"dims": 8},
        **shared,
    )
    low = _low_rank()  # the projection screen: its blocks of points shared out, the pairs gathered
    scr = compute_epr(*low, method="sampled", backend="ivf-pca", sample_size=300, screen=True, **shared)
    wide = _wide()  # a two-phase design: the phase one's search shared out across ranks, as the graph's
    two = compute_epr(*wide, method="sampled", backend="ivf-pca", sample_size=20, **shared)
    graphs = {  # knn_graph: the exact self pass and the two ANN backends that share their scans
        name: knn_graph(real, 4, backend=name, distributed=distributed, options=opts)
        for name, opts in (("exact", {"memory_budget": BUDGET}), ("ivf-gemm", None), ("ivf-pca", {"dims": 8}))
    }
    curve = pr_curve(real, {"a": fake, "b": fake[:300]}, k=3, **shared)  # Manifold.fit, then a call per fake
    manifold = Manifold.fit(real, k=(3, 5), **shared)
    return {
        "knn_graph": {name: [d.tolist(), i.tolist()] for name, (d, i) in graphs.items()},
        "pr_curve": [curve.precision, curve.recall, curve.manifold.radii(3).tolist()],
        "manifold": manifold.radii(5).tolist(),
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


def data(seed=7):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(700, 24)).astype(np.float32)
    fake = (rng.normal(size=(650, 24)) * 1.1 + 0.1).astype(np.float32)
    return real, fake


def halves(rank):
    """Unequal shares of the data, rank by rank: what each process of a DDP run holds without a gather."""
    real, fake = data()
    return (real[:400], fake[:250]) if rank == 0 else (real[400:], fake[250:])


def local(real, fake):
    """Calls without ``distributed``: each process computes alone, its own answer."""
    ex = compute_pr(real, fake, k=3, memory_budget=BUDGET)
    pca = compute_epr(real, fake, backend="ivf-pca", sample_size=100, backend_options={"dims": 8})
    _, idx = knn_graph(real, 3, backend="ivf-gemm")
    return [ex.precision, ex.recall, pca.precision, pca.recall, idx.tolist()]


def subset(real, fake, **shared):
    """What ranks 0 and 1 of three compute together over their own group."""
    ex = compute_pr(real, fake, k=3, **shared)
    pca = compute_epr(real, fake, backend="ivf-pca", sample_size=300, backend_options={"dims": 8}, **shared)
    shared.pop("memory_budget", None)
    _, idx = knn_graph(real, 4, backend="ivf-gemm", **shared)
    return [ex.precision, ex.recall, pca.precision, pca.recall, idx.tolist()]


def in_group(world):
    """Three ranks: 0 and 1 share calls over a group of their own (budgets differ), 2 computes alone meanwhile
    and is refused the group it is not in."""
    import torch.distributed as dist

    group = dist.new_group([0, 1])  # every rank makes it; rank 2 gets the non-member marker
    real, fake = data()
    if world.rank < 2:
        out = {"group": subset(real, fake, process_group=group, memory_budget=BUDGET * (1 + 3 * world.rank))}
    else:
        out = {"alone": local(*halves(0)), "outside": _error(lambda: compute_pr(real, fake, process_group=group))}
    dist.barrier()
    return out


def _error(call):
    """``"Type: message"`` of what ``call()`` raised, and the seconds it took."""
    start = time.monotonic()
    try:
        call()
    except Exception as exc:
        return [f"{type(exc).__name__}: {exc}", time.monotonic() - start]
    return ["no error", time.monotonic() - start]


def scenarios(world, folder):
    import torch.distributed as dist

    rank, (real, fake) = world.rank, data()
    out = {"local": local(*halves(rank))}  # a process group is initialised, but no call asks to share it
    if rank == 0:  # rank 0 computes alone while rank 1 waits at a barrier: nobody blocks
        out["rank0_only"] = local(real, fake)
    dist.barrier()
    quick = dict(distributed=True, distributed_timeout=20)
    other = data(seed=70 + rank)  # the same shapes, other data on each rank
    out["data"] = _error(lambda: compute_pr(*other, **quick))
    out["shape"] = _error(lambda: compute_pr(real[: 700 - 100 * rank], fake, **quick))
    out["seed"] = _error(lambda: compute_epr(real, fake, backend="ivf-pca", seed=rank, **quick))
    bad = fake.copy()
    bad[3, 2] = np.nan if rank == 1 else bad[3, 2]  # only rank 1's input is bad
    out["input"] = _error(lambda: compute_pr(real, bad, **quick))
    out["graph"] = _error(lambda: knn_graph(other[0], 3, backend="exact", **quick))
    # After those errors the group still serves a shared call, which equals one process.
    out["after"] = compute_pr(real, fake, k=3, **quick).precision
    # Last (the group is not usable after it): rank 0 asks to share a call rank 1 never makes.
    done = os.path.join(folder, "lone.done")
    if rank == 0:
        out["lone"] = _error(lambda: compute_pr(real, fake, distributed=True, distributed_timeout=3))
        open(done, "w").close()
    else:
        stop = time.monotonic() + 120
        while not os.path.exists(done) and time.monotonic() < stop:
            time.sleep(0.05)
    return out


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    world = init()
    mode = sys.argv[2] if len(sys.argv) > 2 else "equal"
    if mode == "scenarios":
        out = scenarios(world, sys.argv[1])
    elif mode == "group":
        out = in_group(world)
    else:  # ranks with different budgets: the smallest, BUDGET, is agreed
        out = results(*data(), budget=BUDGET * (1 + 3 * world.rank), distributed=True)
    out["world"] = [world.rank, world.size]
    with open(f"{sys.argv[1]}/rank{world.rank}.json", "w") as fh:
        json.dump(out, fh)
    if mode == "scenarios":  # the lone call left the group unusable: leave without its closing barrier
        sys.stdout.flush()
        os._exit(0)
    world.close()
