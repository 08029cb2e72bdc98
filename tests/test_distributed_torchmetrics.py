"""torchmetrics PrecisionRecall under DDP (two gloo processes): the sampled estimate does not depend on how
the data were sharded, and ``sync_on_compute=False`` gives each process the answer on its own features.

The processes are forked (they start with torch, torchmetrics and eprmetrics imported; spawning re-imports
them, ~25 s); each runs :func:`_worker` and saves what it computed.
"""

import os
import time
import warnings

import pytest
import torch

pytest.importorskip("torchmetrics")

from eprmetrics.integrations.torchmetrics import PrecisionRecall  # noqa: E402

SEED = 3
WORLD = 2
SAMPLED = dict(method="sampled", sample_size=30, options={"seed": 5, "backend": "exact"})


def tiny_net() -> torch.nn.Module:
    gen = torch.Generator().manual_seed(SEED)
    lin = torch.nn.Linear(24, 16)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(16, 24, generator=gen))
        lin.bias.zero_()
    return lin


def data():
    gen = torch.Generator().manual_seed(11)
    return torch.randn(91, 24, generator=gen), torch.randn(71, 24, generator=gen) * 1.2 + 0.3


def metric(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return PrecisionRecall(feature=tiny_net(), **{**SAMPLED, **kwargs})


def computed(real, fake, **kwargs) -> dict:
    m = metric(**kwargs)
    for part in real.tensor_split(2):  # several updates, uneven batches
        m.update(part, real=True)
    m.update(fake, real=False)
    return {key: value.item() for key, value in m.compute().items()}


def shards(x: torch.Tensor, rank: int) -> dict:
    return {"contiguous": x.tensor_split(WORLD)[rank], "strided": x[rank::WORLD]}


def local_share(x: torch.Tensor, rank: int) -> torch.Tensor:
    """Unequal halves, for the processes that compute on their own features."""
    cut = len(x) // 3
    return x[:cut] if rank == 0 else x[cut:]


def _pair(rank: int) -> dict:
    """Two processes: both shard layouts gathered, then each on its own unequal share (no sync)."""
    real, fake = data()
    out = {layout: computed(shards(real, rank)[layout], shards(fake, rank)[layout]) for layout in shards(real, 0)}
    out["local"] = computed(local_share(real, rank), local_share(fake, rank), sync_on_compute=False)
    return out


def _trio(rank: int) -> dict:
    """Three processes: ranks 0 and 1 share the metric's own group (strided shards) while rank 2 computes
    alone; a compute over the default group would wait for rank 2, which never joins."""
    import torch.distributed as dist

    group = dist.new_group([0, 1])  # every rank takes part in creating it
    real, fake = data()
    if rank == 2:
        return {"alone": computed(real[::3], fake[::3], sync_on_compute=False)}
    options = {**SAMPLED["options"], "distributed_timeout": 30.0}
    return {"group": computed(real[rank::2], fake[rank::2], process_group=group, options=options)}


def _worker(rank: int, folder: str, world: int) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        torch.save(_pair(rank) if world == 2 else _trio(rank), os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def launch(folder, world: int) -> list:
    import torch.multiprocessing as mp

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    workers = mp.start_processes(_worker, args=(str(folder), world), nprocs=world, join=False, start_method=method)
    deadline = time.monotonic() + 300
    while not workers.join(timeout=2):
        if time.monotonic() > deadline:
            for p in workers.processes:
                p.kill()
            pytest.fail(f"the {world} DDP processes did not finish in 300 s")
    return [torch.load(folder / f"rank{rank}.pt") for rank in range(world)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return launch(tmp_path_factory.mktemp("ddp"), WORLD)


def test_sampled_estimate_is_the_same_for_strided_and_contiguous_shards(ranks):
    real, fake = data()
    single = computed(real, fake)
    assert single["precision_ci_low"] < single["precision_ci_high"]  # the sampled path ran
    for rank, got in enumerate(ranks):
        assert got["contiguous"] == single, rank
        assert got["strided"] == single, rank


def test_without_sync_on_compute_each_process_computes_on_its_own_features(ranks):
    real, fake = data()
    for rank, got in enumerate(ranks):
        assert got["local"] == computed(local_share(real, rank), local_share(fake, rank)), rank
    assert ranks[0]["local"] != ranks[1]["local"]


def test_the_metric_process_group_is_the_one_that_computes(tmp_path):
    real, fake = data()
    got = launch(tmp_path, 3)
    single = computed(real, fake, options={**SAMPLED["options"], "distributed_timeout": 30.0})
    assert got[0]["group"] == got[1]["group"] == single
    assert got[2]["alone"] == computed(real[::3], fake[::3])
