"""The reusable workspace of a tiled pass: one buffer per role, allocated once per pass.

A pass makes thousands of equally shaped temporaries (row blocks, distance tiles, ball-test masks).
Allocated afresh for every tile, those below glibc's mmap threshold (up to 32 MiB) land on the heap
and stay resident after they are freed, so a call's resident memory depended on the allocator's
history (the same call peaked at 0.17 GiB in one run, 0.40 GiB in the next) rather than on its
budget; on CUDA they churn the caching allocator. A :class:`Scratch` hands out views of one buffer
per role instead, grown when a larger view is asked for, kept from pass to pass (buffers freed between
passes came back fragmented, and the heap grew by a tile at each pass) and dropped at the end of a call.
"""

from __future__ import annotations

import math

import torch

__all__ = ["Scratch"]


class Scratch:
    """Buffers by name: :meth:`get` returns a view of the named buffer with the requested shape.

    A view stays valid until the next :meth:`get` of the same name (which may reuse or replace the
    buffer) or :meth:`clear`; callers hold at most one live view per name.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        numel = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != dtype or buf.device != device:
            self._buffers.pop(name, None)  # the old buffer goes before the new one is made
            buf = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[name] = buf
        return buf[:numel].view(shape)

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())

    def clear(self) -> None:
        self._buffers.clear()
