"""Sharing one call's tiled passes over ``torch.distributed`` ranks — only when the call asks for it.

A call (:func:`~eprmetrics.compute_pr`, :func:`~eprmetrics.compute_epr`, :func:`~eprmetrics.knn_graph`,
:meth:`~eprmetrics.Manifold.fit`, :func:`~eprmetrics.pr_curve`) computes on this process alone unless it
is given ``distributed=True`` (the default process group) or ``process_group=`` (a group of its own).
A process group the caller initialised for something else is never taken over: a rank that computes
alone does not block, and per-rank data give per-rank answers.

When asked, the call's :class:`World` (its group, this process's rank in it) is installed for the
duration of the call (a context variable: :meth:`World.current` is the call's world, a single process
outside any call), and every tiled pass takes its share of the tiles or row blocks:

* top-k passes: the per-rank running top-K lists are gathered and merged;
* ball passes: counts and "some ball holds it" flags are summed, ambiguous pairs gathered, realism
  maxima reduced with ``max``;
* ``ivf-gemm`` / ``ivf-pca``: list scans and rescoring are shared out (their k-means and embedding are
  computed on every rank, seeded); the other ANN backends build the same seeded graph on every rank.

Before any work the ranks agree on the whole plan (:meth:`World.join`, :meth:`World.settle`): the same
call with the same options (``memory_budget`` aside: every engine takes the smallest over ranks, on
every device), inputs of the same shapes, dtypes and data (a hash of up to 256 evenly spaced rows, then
the exact sum of every row's norm), the same planner choice. Any difference raises the same one-line
:class:`DistributedError` on every rank, naming what differs — never a blended number, an abort or a hang.
A rank that never joins is reported within ``distributed_timeout`` seconds (default 60) by the ranks
waiting for it; on NCCL the pending exchange then stays queued and NCCL's own watchdog (the process
group's timeout) ends the process. After that error the process group is not usable any more.

Passes stay deterministic: a tile's fp32 values do not depend on which rank computes it, and the
float64 re-checks that follow are run by every rank on the same (gathered) data, so every rank returns
the single-process result exactly.

Usage — a script run with ``torchrun --nproc_per_node 4 script.py``::

    import eprmetrics
    from eprmetrics import compute_pr
    world = eprmetrics.engine.init("auto")   # NCCL for CUDA (one GPU per rank), gloo for the CPU
    res = compute_pr(real, fake, distributed=True)   # the same data on every rank; the same result
    world.close()
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import numbers
import os
import time
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar, Union, cast

import torch

from ..defaults import DEFAULTS
from .agreement import DistributedError, check_agreement
from .device import autocast_off, float32_default, resolve_device

__all__ = ["World", "init"]

T = TypeVar("T")


def init(device: Union[str, torch.device, None] = "auto") -> "World":
    """Initialise the default process group from torchrun's environment when there is one
    (``WORLD_SIZE`` > 1), for the device the run uses (``device`` as for ``compute_pr``):
    NCCL when it is a CUDA device, after ``torch.cuda.set_device(LOCAL_RANK)`` (or the
    index ``cuda:N`` names) so that each rank has its GPU; gloo for the CPU, even on a
    machine with GPUs. Returns the default group's :class:`World` (for its rank and :meth:`World.close`).

    It does not make any call distributed: pass ``distributed=True`` to the calls that should share.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        if resolve_device(device).type == "cuda":
            named = None if device is None or device == "auto" else torch.device(device).index
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) if named is None else named)
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    if dist.is_available() and dist.is_initialized():
        return World.of_group(None)
    return World()


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < float(value) < math.inf):
        raise ValueError(
            f"distributed_timeout: expected a positive number of seconds, got {value!r}; e.g. distributed_timeout=60"
        )
    return float(value)


class World:
    """This process's ``rank`` among the ``size`` ranks of ``group`` sharing a call (``size`` 1: alone)."""

    def __init__(
        self, rank: int = 0, size: int = 1, group: Any = None, timeout: float = DEFAULTS["distributed_timeout"]
    ) -> None:
        self.rank, self.size, self.group, self.timeout = rank, size, group, timeout

    # ------------------------------------------------------------ which world
    @classmethod
    def current(cls) -> "World":
        """The world of the call in progress (a single process outside a distributed call)."""
        return _CURRENT.get(_ALONE)

    @classmethod
    def of(
        cls, distributed: Any = False, process_group: Any = None, timeout: Any = DEFAULTS["distributed_timeout"]
    ) -> "World":
        """The world a call asked for: alone, the default group (``distributed=True``) or ``process_group``
        (which implies ``distributed``). Each misuse raises one line naming the option."""
        import torch.distributed as dist

        if not isinstance(distributed, bool):
            raise ValueError(f"distributed: expected True or False, got {distributed!r}; e.g. distributed=True")
        seconds = _timeout(timeout)
        if process_group is None and not distributed:
            return World()
        usable = dist.is_available()
        outside = usable and process_group is dist.GroupMember.NON_GROUP_MEMBER  # new_group's answer to the left-out
        if process_group is not None and not outside and not (usable and isinstance(process_group, dist.ProcessGroup)):
            raise ValueError(
                f"process_group: expected a torch.distributed ProcessGroup (e.g. torch.distributed.new_group(...)) "
                f"or None, got {type(process_group).__name__}; pass the group the ranks share, or distributed=True "
                f"for the default group"
            )
        if not (usable and dist.is_initialized()):
            raise ValueError(
                "distributed: expected an initialised torch.distributed process group with distributed=True, got "
                "none; call torch.distributed.init_process_group(...) (or eprmetrics.engine.init()) on every rank "
                "first, or leave distributed=False to compute on this process alone"
            )
        if outside or (process_group is not None and dist.get_rank(process_group) < 0):
            raise ValueError(
                "process_group: expected a group this process belongs to, got one it is not a member of; call "
                "with the group's own ranks only, or without process_group"
            )
        return cls.of_group(process_group, seconds)

    @classmethod
    def of_group(cls, group: Any, timeout: float = DEFAULTS["distributed_timeout"]) -> "World":
        """The world of an initialised process ``group`` (None: the default group)."""
        import torch.distributed as dist

        return cls(dist.get_rank(group), dist.get_world_size(group), group, timeout)

    def __bool__(self) -> bool:
        return self.size > 1

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size})"

    @contextlib.contextmanager
    def joined(self, call: Mapping[str, str]) -> Iterator["World"]:
        """This world installed as :meth:`current` for a call (nested calls install their own), after the
        ranks checked that they all make this ``call`` (:func:`call_options`) within ``timeout``. Every entry
        point computes inside it, so the host's numerics are pinned there too: autocast off (:func:`autocast_off`),
        float32 as the default dtype (:func:`float32_default`)."""
        token = _CURRENT.set(self)
        try:
            with autocast_off(), float32_default():
                if self:
                    self.agree(dict(call), self.timeout)
                yield self
        finally:
            _CURRENT.reset(token)

    def close(self) -> None:
        """Wait for every rank, then tear the default process group down (a clean exit for gloo/NCCL)."""
        if self:
            import torch.distributed as dist

            dist.barrier(group=self.group)
            if self.group is None:
                dist.destroy_process_group()

    def mine(self, i: int) -> bool:
        """Is work item ``i`` (a tile or a row block, numbered in a fixed order) this rank's?"""
        return i % self.size == self.rank

    # ------------------------------------------------------------ agreement
    def exchange(self, payload: Mapping[str, Any], timeout: Optional[float] = None) -> list[dict[str, Any]]:
        """Every rank's ``payload`` (JSON values), in rank order; all ranks must call it. With ``timeout``,
        a rank still missing after that many seconds raises :class:`DistributedError` here."""
        if not self:
            return [dict(payload)]
        import torch.distributed as dist

        data = json.dumps(payload).encode()
        dev = self._comm_device()
        size = torch.tensor([len(data)], dtype=torch.int64, device=dev)
        sizes = [torch.zeros_like(size) for _ in range(self.size)]
        self._wait(dist.all_gather(sizes, size, group=self.group, async_op=True), timeout)
        lengths = [int(s.item()) for s in sizes]
        buf = torch.zeros(max(lengths), dtype=torch.uint8)
        buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        bufs = [torch.empty_like(buf, device=dev) for _ in range(self.size)]
        self._wait(dist.all_gather(bufs, buf.to(dev), group=self.group, async_op=True), timeout)
        return [json.loads(bytes(b[:n].cpu().numpy())) for b, n in zip(bufs, lengths)]

    def agree(self, payload: Mapping[str, Any], timeout: Optional[float] = None) -> list[dict[str, Any]]:
        """:meth:`exchange`, then one :class:`DistributedError` on every rank if any value differs."""
        got = self.exchange(payload, timeout)
        check_agreement(got)
        return got

    def settle(self, compute: Callable[[], T], describe: Callable[[T], Mapping[str, Any]]) -> T:
        """``compute()`` on every rank, then check that every rank's ``describe(result)`` is the same. An error
        raised by ``compute`` on some ranks is raised on all (the others name the rank and its message), so
        no rank waits for one that gave up."""
        if not self:
            return compute()
        try:
            value: Optional[T] = compute()
            payload, error = {"error": None, **describe(cast(T, value))}, None
        except Exception as exc:  # reported to the other ranks, then raised here as it was
            value, payload, error = None, {"error": f"{type(exc).__name__}: {exc}"}, exc
        got = self.exchange(payload)
        if error is not None:
            raise error
        failed = [(r, p["error"]) for r, p in enumerate(got) if p.get("error")]
        if failed:
            r, message = failed[0]
            raise DistributedError(f"distributed: rank {r} failed before the shared work: {message}")
        check_agreement(got)
        return cast(T, value)

    def first(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Rank 0's ``payload`` on every rank (a choice made from local measurements, taken by all)."""
        return self.exchange(payload)[0] if self else dict(payload)

    def _comm_device(self) -> torch.device:
        """Where the tensors of an exchange live: the current CUDA device for NCCL, else the host."""
        import torch.distributed as dist

        if str(dist.get_backend(self.group)) == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    @staticmethod
    def _wait(work: Any, timeout: Optional[float]) -> None:
        if timeout is not None:
            deadline, pause = time.monotonic() + timeout, 0.001
            while not work.is_completed():
                if time.monotonic() > deadline:
                    raise DistributedError(
                        f"distributed: not every rank of the process group joined this call within "
                        f"distributed_timeout={timeout:g} s; with distributed=True (or process_group=) every rank "
                        f"must make the same call — call without them to compute on this process alone (the "
                        f"process group is not usable after this error)"
                    )
                time.sleep(pause)
                pause = min(2 * pause, 0.05)
        work.wait()

    # ------------------------------------------------------------ reductions
    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """In-place sum over ranks (bool tensors: logical or)."""
        if not self:
            return t
        import torch.distributed as dist

        if t.dtype == torch.bool:
            tmp = t.to(torch.int32)
            dist.all_reduce(tmp, group=self.group)
            t.copy_(tmp > 0)
        else:
            dist.all_reduce(t, group=self.group)
        return t

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        if self:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return t

    def min_int(self, value: int, device: torch.device) -> int:
        """The smallest ``value`` over ranks (a tensor on ``device`` crosses: CUDA for NCCL)."""
        if not self:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN, group=self.group)
        return int(t.item())

    def merge_topk(self, vals: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Merge every rank's running top-K (n × K smallest values, with indices) into the global one."""
        if not self:
            return vals, idx
        import torch.distributed as dist

        all_v = [torch.empty_like(vals) for _ in range(self.size)]
        all_i = [torch.empty_like(idx) for _ in range(self.size)]
        dist.all_gather(all_v, vals.contiguous(), group=self.group)
        dist.all_gather(all_i, idx.contiguous(), group=self.group)
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
        dist.all_gather_object(out, None if pairs is None else pairs.cpu(), group=self.group)
        if any(p is None for p in out):
            return None
        device = pairs.device if pairs is not None else torch.device("cpu")
        return torch.cat(cast(list[torch.Tensor], out)).to(device)


_ALONE = World()
_CURRENT: contextvars.ContextVar[World] = contextvars.ContextVar("eprmetrics_world")
