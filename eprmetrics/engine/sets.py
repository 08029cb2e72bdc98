"""Feature sets as the engine sees them: the caller's array (never copied whole) and its prepared form.

A :class:`FeatureSet` keeps the caller's array as it is (a memory map stays a
memory map, float64 stays float64) and hands out row blocks on demand, so the
tiled engine never needs a second full copy and borderline decisions can be
re-made from the original values. :class:`Prepared` adds the shared centre and
the norms every tile needs.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
from typing import Any, Optional, Union, cast

import numpy as np
import torch

from ..profiling import note_read
from .scratch import Scratch
from .transfer import storage_dtype, to_device

__all__ = ["FeatureSet", "FeatureSubset", "Prepared", "read_rows"]


def _file_position(data: np.memmap) -> Optional[int]:
    """Byte position in ``data.filename`` of the first element of a row-contiguous memory map (a view of
    one included), or None when it cannot be read by position (no file, strided, not a plain mapping)."""
    buf = getattr(data, "_mmap", None)
    if buf is None or not data.filename or data.ndim == 0 or not data.flags.c_contiguous:
        return None
    base = np.frombuffer(buf, dtype=np.uint8).ctypes.data  # where numpy mapped the file
    mapped_from = data.offset - data.offset % mmap.ALLOCATIONGRANULARITY  # the mapping's first file byte
    return int(data.ctypes.data - base + mapped_from)


def read_rows(data: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``data`` as a writable array. A memory map is read by position in one
    sequential system call (readahead at disk speed, no page-fault per 4 KiB page); anything else is
    sliced (a copy only if read-only)."""
    stop = min(stop, data.shape[0])
    pos = _file_position(data) if isinstance(data, np.memmap) else None
    if pos is None or stop <= start:
        rows = data[start:stop]
        note_read(data, rows.nbytes)  # counted where ``data`` maps a file (see profiling.note_read)
        return np.array(rows) if not rows.flags.writeable else rows
    mm = cast(np.memmap, data)
    out = np.empty((stop - start,) + data.shape[1:], dtype=data.dtype)
    row_bytes = out.itemsize * int(np.prod(data.shape[1:], dtype=np.int64))
    view = memoryview(cast(Any, out)).cast("B")
    fd = os.open(str(mm.filename), os.O_RDONLY)
    try:
        done = 0
        while done < view.nbytes:  # preadv may return less than asked
            got = os.preadv(fd, [view[done:]], pos + start * row_bytes + done)
            if got <= 0:
                raise OSError(f"{mm.filename}: the file ended before row {stop}")
            done += got
    finally:
        os.close(fd)
    note_read(data, view.nbytes)
    return out


def _is_numpy_int(data: object) -> bool:
    return isinstance(data, np.ndarray) and data.dtype.kind in "iub"


class FeatureSet:
    """An n×d matrix of features with a name (``"real"`` or ``"fake"``).

    Args:
        data: 2-D numpy array (memory maps welcome) or torch tensor.
        name: the argument name used in error messages.
    """

    def __init__(self, data: Union[np.ndarray, torch.Tensor], name: str, scale: float = 1.0) -> None:
        self.data = data
        self.name = name
        # A power of two every row is multiplied by on the way out (exact in binary floating point):
        # set by the input checks when values are so large or small that fp32 squares would overflow or
        # underflow. P&R is scale-invariant, so x and x·2^e give identical results.
        self.scale = scale

    def _scaled(self, rows: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Rows moved to ``device`` in their stored dtype, then converted (and scaled) there."""
        rows = to_device(rows, device)
        if self.scale == 1.0:
            return rows.to(dtype)
        return (rows.to(torch.float64) * self.scale).to(dtype)

    def is_on(self, device: torch.device) -> bool:
        """Are the rows a tensor on ``device`` already (nothing to copy per block)?"""
        return isinstance(self.data, torch.Tensor) and self.data.device == device

    def on_device(self, device: torch.device, chunk_bytes: int = 1 << 26) -> "FeatureSet":
        """This set with all its rows in one tensor on ``device``, in their stored dtype (float16 stays
        float16, integers become float64), uploaded in blocks of ``chunk_bytes`` through pinned memory;
        itself when the rows are there already. Values, name and scale are unchanged."""
        if self.is_on(device):
            return self
        dtype = storage_dtype(self.data)
        out = torch.empty((self.n, self.dim), dtype=dtype, device=device)
        step = max(1, chunk_bytes // max(1, self.dim * dtype.itemsize))
        for s in range(0, self.n, step):
            out[s : s + step].copy_(to_device(self._rows(s, s + step), device))
        return FeatureSet(out, self.name, self.scale)

    def _rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` as a tensor where they are (host or device), unscaled."""
        if isinstance(self.data, np.ndarray):
            # torch refuses read-only memory: memmaps are read into a buffer, other arrays borrowed.
            block = read_rows(self.data, start, stop)
            if block.dtype.kind in "iub":  # integers (a memmap stays one): exact in float64, block by block
                block = block.astype(np.float64)
            return torch.from_numpy(np.ascontiguousarray(block))
        return self.data[start:stop]

    @property
    def n(self) -> int:
        return int(self.data.shape[0])

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])

    @property
    def is_float64(self) -> bool:
        """Centred in float64 before the one rounding to fp32: float64 inputs, and integers (read as float64)."""
        return self.data.dtype in (np.float64, torch.float64) or _is_numpy_int(self.data)

    def block(self, start: int, stop: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Rows ``start:stop`` as a tensor of ``dtype`` on ``device``."""
        return self._scaled(self._rows(start, stop), device, dtype)

    def take(
        self,
        index: torch.Tensor,
        device: torch.device,
        dtype: torch.dtype = torch.float64,
        scratch: Optional[Scratch] = None,
        name: str = "take",
    ) -> torch.Tensor:
        """Rows at ``index`` (1-D int64) as ``dtype`` on ``device``; with ``scratch``, gathered and converted in
        its buffers ``name`` (valid until they are asked for again): no fresh temporaries per call."""
        rows = self._gathered(index, scratch, name)
        if scratch is None or (self.scale != 1.0 and dtype != torch.float64):
            return self._scaled(rows, device, dtype)
        out = scratch.get(name, tuple(rows.shape), dtype, device).copy_(to_device(rows, device))
        return out if self.scale == 1.0 else out.mul_(self.scale)

    def _gathered(self, index: torch.Tensor, scratch: Optional[Scratch], name: str) -> torch.Tensor:
        """Rows at ``index`` where they are stored (host or device), unscaled, integers as float64; in the
        buffer ``name:stored`` of ``scratch`` when given."""
        data = self.data
        shape = (int(index.numel()), self.dim)
        if isinstance(data, np.ndarray):
            idx = index.cpu().numpy()
            note_read(data, idx.size * self.dim * data.itemsize)
            if scratch is None:
                picked = np.asarray(data[idx])
                return torch.from_numpy(picked.astype(np.float64) if picked.dtype.kind in "iub" else picked)
            stored = scratch.get(f"{name}:stored", shape, storage_dtype(data), torch.device("cpu"))
            if data.dtype.kind in "iub":  # integers: converted to float64 on the way in
                stored.numpy()[...] = data[idx]
            else:  # mode="clip": numpy's default "raise" would gather into a temporary first
                np.take(data, idx, axis=0, out=stored.numpy(), mode="clip")
            return stored
        if scratch is None:
            return data[index.to(data.device)]
        out = scratch.get(f"{name}:stored", shape, data.dtype, data.device)
        return torch.index_select(data, 0, index.to(data.device), out=out)

    def numpy_rows(self, keep_float16: bool = False, chunk: int = 65536) -> np.ndarray:
        """All rows as a C-contiguous float32 numpy array (scaled), for libraries that need one.

        ``keep_float16``: a float16 array (a memmap stays a memmap) passes through as it is, for
        backends that store fp16 and read in batches. bfloat16 tensors are converted (numpy has no bf16).
        """
        data = self.data
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu()
            data = (data.float() if data.dtype == torch.bfloat16 else data).numpy()
        data = np.asarray(data)  # a memmap stays a view of its file
        if self.scale == 1.0:
            if keep_float16 and data.dtype == np.float16:
                return data  # its reader counts what it reads
            if data.dtype != np.float32 or not data.flags.c_contiguous:
                note_read(data, data.nbytes)  # converted: one whole pass
            return np.ascontiguousarray(data, dtype=np.float32)
        out = np.empty(data.shape, dtype=np.float32)
        note_read(data, data.nbytes)
        for start in range(0, data.shape[0], chunk):  # in chunks: never a whole float64 copy
            out[start : start + chunk] = np.asarray(data[start : start + chunk], dtype=np.float64) * self.scale
        return out

    def __repr__(self) -> str:
        return f"FeatureSet({self.name!r}, n={self.n}, dim={self.dim}, dtype={self.data.dtype})"


class FeatureSubset(FeatureSet):
    """Rows ``index`` of another :class:`FeatureSet`, without copying them (e.g. its hubs)."""

    def __init__(self, base: FeatureSet, index: torch.Tensor) -> None:
        super().__init__(base.data, base.name, base.scale)
        self.base, self.index = base, index

    @property
    def n(self) -> int:
        return int(self.index.numel())

    def block(self, start: int, stop: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return self.base.take(self.index[start:stop], device, dtype)

    def take(
        self,
        index: torch.Tensor,
        device: torch.device,
        dtype: torch.dtype = torch.float64,
        scratch: Optional[Scratch] = None,
        name: str = "take",
    ) -> torch.Tensor:
        return self.base.take(self.index[index.to(self.index.device)], device, dtype, scratch, name)

    def is_on(self, device: torch.device) -> bool:
        return self.base.is_on(device)

    def on_device(self, device: torch.device, chunk_bytes: int = 1 << 26) -> "FeatureSet":
        return FeatureSubset(self.base.on_device(device, chunk_bytes), self.index)


@dataclasses.dataclass
class Prepared:
    """A feature set ready for tiling: its source, the shared centre and fp32 norms."""

    source: FeatureSet
    center: torch.Tensor  # (d,) in the compute dtype of the source
    sqnorm: torch.Tensor  # (n,) float32, ‖x − centre‖² rounded once from float64
    norm: torch.Tensor  # (n,) float64, ‖x − centre‖ of the fp32 rows
    _keys: "dict[str, Optional[tuple[torch.Tensor, torch.Tensor]]]" = dataclasses.field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def n(self) -> int:
        return self.source.n

    def row_keys(self, device: torch.device) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """Exact integer keys of the rows' values (:func:`row_keys`) and the row order that sorts them (equal
        keys in ascending index), computed once per set and device; None where :func:`row_keys` gives none."""
        if str(device) not in self._keys:
            keys = row_keys(self.source, device)
            self._keys[str(device)] = None if keys is None else (keys, keys.argsort(stable=True))
        return self._keys[str(device)]

    @property
    def max_norm(self) -> float:
        return float(self.norm.max())


_KEY_PRIME = 2_147_483_647  # 2^31 − 1: 32-bit halves times factors below it stay exact in int64


def row_keys(source: FeatureSet, device: torch.device, elements: int = 1 << 22) -> Optional[torch.Tensor]:
    """An integer key per row from the bits of its float64 values (−0 as 0): rows with equal values have
    equal keys (modular sums of integer products: exact, whatever the order of summation).

    None when a nonzero value is below 2^-400: two distinct rows could then be at float64 distance 0
    (their squared differences underflow), and equal values would not be the same thing as distance 0.
    """
    gen = torch.Generator().manual_seed(0x5EED)
    factors = torch.randint(1, _KEY_PRIME, (2, source.dim), generator=gen, dtype=torch.int64).to(device)
    keys = torch.empty(source.n, dtype=torch.int64, device=device)
    chunk = max(1, elements // source.dim)  # rows per block: a few 32 MiB temporaries
    for s in range(0, source.n, chunk):
        rows = source.block(s, min(s + chunk, source.n), device, torch.float64) + 0.0
        tiny = rows.abs()
        if bool(((tiny > 0) & (tiny < 2.0**-400)).any()):
            return None
        bits = rows.view(torch.int64)
        low, high = bits & 0xFFFFFFFF, (bits >> 32) & 0xFFFFFFFF
        a = ((low * factors[0]) % _KEY_PRIME).sum(1) % _KEY_PRIME
        b = ((high * factors[1]) % _KEY_PRIME).sum(1) % _KEY_PRIME
        keys[s : s + chunk] = a * _KEY_PRIME + b
    return keys
