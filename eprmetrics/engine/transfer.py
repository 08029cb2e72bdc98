"""Rows on their way to the device: whole sets kept there when they fit, blocks streamed ahead otherwise.

Three rules, the same code on every device (on a CPU each is a no-op or a plain copy):

* rows cross to the device in the dtype they are stored in and are converted there (a float16 memmap
  travels as float16, a float64 re-check as the input's own bytes, not as 4× as many);
* from host memory to CUDA a block goes through pinned memory, asynchronously (:func:`to_device`);
* on CUDA, two sets that fit in a share of the free memory (:data:`RESIDENT_FRACTION`) are uploaded
  once, before the first pass (:func:`fits_on_device`); every pass and every float64 re-check then
  reads device memory. Sets that do not fit are streamed, the next block read while the current one
  is used (:func:`prefetched`).
"""

from __future__ import annotations

import concurrent.futures
from contextlib import nullcontext
from typing import Callable, Iterator, Optional, Sequence, TypeVar, Union

import numpy as np
import torch

from ..defaults import RESIDENT_FRACTION

__all__ = ["RESIDENT_FRACTION", "storage_dtype", "stored_bytes", "fits_on_device", "to_device", "prefetched"]

T = TypeVar("T")

_NUMPY_DTYPES = {
    np.dtype(np.float16): torch.float16,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.float64): torch.float64,
}


def storage_dtype(data: Union[np.ndarray, torch.Tensor]) -> torch.dtype:
    """The dtype a set keeps on the device: its own floating dtype (float16, bfloat16, float32, float64);
    integers become float64 (exact up to 2^53, as the host path reads them)."""
    if isinstance(data, torch.Tensor):
        return data.dtype if data.is_floating_point() else torch.float64
    return _NUMPY_DTYPES.get(data.dtype, torch.float64)


def stored_bytes(data: Union[np.ndarray, torch.Tensor]) -> int:
    """Bytes of ``data`` held in :func:`storage_dtype`."""
    n, d = int(data.shape[0]), int(data.shape[1])
    return n * d * storage_dtype(data).itemsize


def fits_on_device(nbytes: int, device: torch.device, reserve: int = 0) -> bool:
    """Should sets of ``nbytes`` live on ``device`` for the whole call? On CUDA when they take at most
    :data:`RESIDENT_FRACTION` of the free memory once ``reserve`` (a caller's fixed tile budget) is set
    aside; never on a CPU, where the caller's arrays (memmaps included) already are where passes read."""
    if device.type != "cuda" or nbytes <= 0:
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= (free - reserve) * RESIDENT_FRACTION


def to_device(rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``rows`` on ``device`` in their own dtype: from host memory to CUDA through pinned memory,
    asynchronously (torch's pinned-memory cache keeps the staging buffer until the copy is done);
    unchanged where they already are."""
    if rows.device == device:
        return rows
    if device.type == "cuda" and rows.device.type == "cpu":
        return rows.pin_memory().to(device, non_blocking=True)
    return rows.to(device)


def prefetched(
    fetch: Callable[[int], T], keys: Sequence[int], ahead: bool, device: Optional[torch.device] = None
) -> Iterator[tuple[int, T]]:
    """``(key, fetch(key))`` for every key in order. With ``ahead``, ``fetch`` of the next key runs in a
    background thread while the caller works on the current one (reading a memmap and copying to the
    device release the GIL), so the device does not wait for the disk between tiles. The thread takes the
    caller's inference mode and, on CUDA, ``device`` as its current device (both are per thread: a thread
    on the default GPU 0 would open a context there for its pinned copies)."""
    if not ahead or len(keys) < 2:
        for key in keys:
            yield key, fetch(key)
        return
    inference = torch.is_inference_mode_enabled()  # thread-local: the worker takes the caller's mode

    def run(key: int) -> T:
        on_device = torch.cuda.device(device) if device is not None and device.type == "cuda" else nullcontext()
        with torch.inference_mode(inference), on_device:
            return fetch(key)

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="eprmetrics-prefetch") as pool:
        pending = pool.submit(run, keys[0])
        for i, key in enumerate(keys):
            current = pending.result()
            if i + 1 < len(keys):
                pending = pool.submit(run, keys[i + 1])
            yield key, current
