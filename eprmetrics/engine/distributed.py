"""Sharding the tiled passes over ``torch.distributed`` ranks (torchrun; NCCL on GPUs, gloo on CPUs).

When a default process group is initialised, every :class:`~eprmetrics.tiles.TileEngine`
pass computes only its share of the tiles and combines the partial results,
so every rank ends with the full, identical answer:

* top-k passes: the per-rank running top-K lists are gathered and merged;
* ball passes: counts and "some ball holds it" flags are summed, ambiguous
  pairs gathered, realism maxima reduced with ``max``.

Passes stay deterministic: a tile's fp32 values do not depend on which rank
computes it, and the float64 re-checks that follow are run by every rank on
the same (gathered) data. The ANN graph of the fast methods is not sharded (each
rank builds the same seeded graph).

Usage — a script run with ``torchrun --nproc_per_node 4 script.py``::

    import torch.distributed as dist
    from eprmetrics import compute_pr
    dist.init_process_group("nccl")          # or eprmetrics.engine.init(device): NCCL for CUDA, gloo for CPU
    res = compute_pr(real, fake)             # same result on every rank
"""

from __future__ import annotations

import os
from typing import Optional, Union, cast

import torch

from .device import resolve_device

__all__ = ["World", "init"]


def init(device: Union[str, torch.device, None] = "auto") -> "World":
    """Initialise the default process group from torchrun's environment when there is one
    (``WORLD_SIZE`` > 1), for the device the run uses (``device`` as for ``compute_pr``):
    NCCL when it is a CUDA device, after ``torch.cuda.set_device(LOCAL_RANK)`` (or the
    index ``cuda:N`` names) so that each rank has its GPU; gloo for the CPU, even on a
    machine with GPUs. Returns the current :class:`World`."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        if resolve_device(device).type == "cuda":
            named = None if device is None or device == "auto" else torch.device(device).index
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) if named is None else named)
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return World.current()


class World:
    """This process's rank among ``size`` (1 when torch.distributed is not initialised)."""

    def __init__(self, rank: int = 0, size: int = 1) -> None:
        self.rank, self.size = rank, size

    @classmethod
    def current(cls) -> "World":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def __bool__(self) -> bool:
        return self.size > 1

    def close(self) -> None:
        """Wait for every rank, then tear the process group down (a clean exit for gloo/NCCL)."""
        if self:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()

    def mine(self, i: int) -> bool:
        """Is work item ``i`` (a tile or a row block, numbered in a fixed order) this rank's?"""
        return i % self.size == self.rank

    # ------------------------------------------------------------ reductions
    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """In-place sum over ranks (bool tensors: logical or)."""
        if not self:
            return t
        import torch.distributed as dist

        if t.dtype == torch.bool:
            tmp = t.to(torch.int32)
            dist.all_reduce(tmp)
            t.copy_(tmp > 0)
        else:
            dist.all_reduce(t)
        return t

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        if self:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t

    def min_int(self, value: int, device: torch.device) -> int:
        """The smallest ``value`` over ranks (a tensor on ``device`` crosses: CUDA for NCCL)."""
        if not self:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def merge_topk(self, vals: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Merge every rank's running top-K (n × K smallest values, with indices) into the global one."""
        if not self:
            return vals, idx
        import torch.distributed as dist

        all_v = [torch.empty_like(vals) for _ in range(self.size)]
        all_i = [torch.empty_like(idx) for _ in range(self.size)]
        dist.all_gather(all_v, vals.contiguous())
        dist.all_gather(all_i, idx.contiguous())
        v, i = torch.cat(all_v, 1), torch.cat(all_i, 1)
        # Stable order (rank, position) among equal values: the same choice on every rank.
        best, pos = torch.sort(v, dim=1, stable=True)
        K = vals.shape[1]
        return best[:, :K].contiguous(), torch.gather(i, 1, pos[:, :K]).contiguous()

    def gather_pairs(self, pairs: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Concatenate every rank's ambiguous pairs; None if any rank gave up keeping them."""
        if not self:
            return pairs
        import torch.distributed as dist

        out: list[Optional[torch.Tensor]] = [None] * self.size
        dist.all_gather_object(out, None if pairs is None else pairs.cpu())
        if any(p is None for p in out):
            return None
        device = pairs.device if pairs is not None else torch.device("cpu")
        return torch.cat(cast(list[torch.Tensor], out)).to(device)
