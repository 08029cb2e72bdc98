"""Tile sizes from a memory budget, and the out-of-memory policy of the tiled passes.

A pass's workspace is its square tiles of fp32 distances and their reductions plus the two row blocks
they are made from (:func:`budget_for_tile`). :class:`TileBudget` turns a budget in bytes into tile
sides, re-reads an automatic budget from free CUDA memory at the start of every pass, and re-runs a pass
that ran out of CUDA memory alone, with smaller tiles (:meth:`TileBudget.run_pass`).
"""

from __future__ import annotations

import gc
import math
import warnings
from typing import Callable, Optional, TypeVar

import torch

from .device import default_memory_budget
from .distributed import World
from .scratch import Scratch

__all__ = ["budget_for_tile", "budget_tile", "tile_workspace", "balanced_block", "self_block", "TileBudget"]

T = TypeVar("T")

# Bytes of workspace per tile element: the fp32 tile, two bool masks and the
# reduction temporaries (top-K of a tile, broadcast thresholds).
BYTES_PER_ELEMENT = 12
BYTES_PER_BLOCK_ELEMENT = 24  # a row block and a column block, each fp32 plus a float64 staging copy
_MIN_TILE = 32
# No tile reaches 2^31 elements: CUDA's nonzero() refused such tensors before torch 2.6,
# and 32-bit indexing kernels stay on their fast path (46340² < 2^31 ≤ 46341²).
_MAX_TILE = math.isqrt(2**31 - 1)
# CUDA out-of-memory retries: each halves the tile side, so 8 go from the largest tile to ~180
# rows; an attempt that still fails is not short of tile memory.
_OOM_RETRIES = 8
# Below this many rows a GEMM tile loses efficiency (measured on 2 CPU cores:
# 110 GFLOP/s at 1250 rows, 180–200 at ≥ 5000), so symmetric passes split a set
# that fits one tile only when each half keeps at least this size.
EFFICIENT_TILE = 4096
SCAN_ROWS = 1024  # rows per block of the linear scans (mean, norms, float64 pair checks)
# The fewest columns a rectangular tile keeps when all of a pass's rows go in one block (rect_blocks): narrower
# tiles lose GEMM efficiency (see EFFICIENT_TILE).
_MIN_RECT_COLS = 1024


def budget_tile(memory_budget: int, dim: int) -> int:
    """The square tile side a budget gives: t² tile elements plus two t×d blocks (fp32, and a float64 staging
    copy) within ``memory_budget`` bytes, between the smallest and the largest tile."""
    e, f = BYTES_PER_ELEMENT, BYTES_PER_BLOCK_ELEMENT * dim
    t = (-f + math.sqrt(f * f + 4 * e * memory_budget)) / (2 * e)
    return max(min(int(t), _MAX_TILE), _MIN_TILE)


def tile_workspace(rows: int, cols: int, dim: int) -> int:
    """The budget model's bytes for one ``rows × cols`` tile and the two row blocks it is made from."""
    return BYTES_PER_ELEMENT * rows * cols + BYTES_PER_BLOCK_ELEMENT // 2 * dim * (rows + cols)


def budget_for_tile(tile: int, dim: int) -> int:
    """The smallest ``memory_budget`` giving square tiles of ``tile`` rows for ``dim`` features."""
    return tile_workspace(tile, tile, dim) + 1


def balanced_block(n: int, tile: int) -> int:
    """Rows per block for ``n`` rows with ``tile``-row tiles, balanced so that the blocks are equal."""
    return -(-n // -(-n // tile)) if n > 0 else tile


def self_block(n: int, tile: int) -> int:
    """Block size of a symmetric pass over ``n`` rows. Only blocks on and above the diagonal are
    computed, so a set that fits one tile is still split in two (3 of 4 blocks) when the halves are
    large enough to keep GEMMs efficient."""
    blocks = -(-n // tile)
    if blocks == 1 and n >= 2 * EFFICIENT_TILE:
        blocks = 2
    return -(-n // blocks)


class TileBudget:
    """Tile sides for ``dim``-dimensional sets from ``memory_budget`` bytes (the base of the tiled engine)."""

    dim: int
    device: torch.device
    world: World
    auto_budget: bool
    # The passes' reusable workspace: kept from pass to pass (the next pass's tiles and blocks fit the same
    # buffers; freed between passes, they came back fragmented and the heap grew), dropped by release()
    # and before an out-of-memory retry.
    scratch: Scratch

    def set_budget(self, memory_budget: int) -> None:
        """Tile sizes for a new workspace budget (bytes)."""
        if memory_budget <= 0:
            raise ValueError(f"memory_budget: expected a positive number of bytes, got {memory_budget}")
        self.memory_budget = int(memory_budget)
        self.tile = self._square_tile()
        # Linear scans (mean, norms) and float64 pair checks need no big blocks.
        self.scan_rows = max(1, min(self.tile, SCAN_ROWS))

    def agree_budget(self, memory_budget: int) -> None:
        """:meth:`set_budget` with the smallest ``memory_budget`` of the ranks sharing the passes, on every
        device: ranks that number the tiles differently would each skip tiles another computed."""
        if memory_budget <= 0:
            self.set_budget(memory_budget)  # the one message for a bad budget, before any collective
        self.set_budget(self.world.min_int(int(memory_budget), self.device) if self.world else memory_budget)

    def refresh_budget(self) -> None:
        """With an automatic budget on CUDA, size the tiles from the memory free now (the ANN indexes and
        graphs built since the last pass hold some); every rank takes the smallest, so that all number
        the tiles alike. Elsewhere the budget stays the one agreed when the engine was made
        (:meth:`agree_budget`)."""
        if not self.auto_budget or self.device.type != "cuda":
            return
        self.set_budget(max(self.world.min_int(default_memory_budget(self.device), self.device), 1))

    def run_pass(self, fn: Callable[[], T], restart: Optional[Callable[[], object]] = None) -> T:
        """One tiled pass ``fn()``, its tiles sized from the budget now (:meth:`refresh_budget`).

        On a CUDA out-of-memory error the failed attempt is released, the CUDA cache emptied, the tile
        side halved and this pass alone run again (``restart()`` first resets what the pass accumulates
        outside ``fn``): at most ``_OOM_RETRIES`` times, not below the smallest tile, and never across
        several ranks (they could not agree on the retry). The error then raised names ``memory_budget``.
        """
        self.refresh_budget()
        for retry in range(_OOM_RETRIES + 1):
            if retry and restart is not None:
                restart()
            try:
                return fn()
            except torch.cuda.OutOfMemoryError as exc:
                if self.tile <= _MIN_TILE or retry == _OOM_RETRIES or self.world:
                    raise torch.cuda.OutOfMemoryError(self._oom_message(retry, exc)) from exc
            # Out of the except block the error, its traceback and the failed attempt's frames
            # (and tensors) are dropped: only now can the cache give their memory back.
            old = self.tile
            self.scratch.clear()
            self._release_cuda_memory()
            self.set_budget(max(min(self.memory_budget, budget_for_tile(old, self.dim)) // 4, 1))
            warnings.warn(
                f"CUDA out of memory with {old}-row tiles: retrying this pass with {self.tile}-row tiles "
                f"(memory_budget={self.memory_budget} bytes)",
                RuntimeWarning,
                stacklevel=3,
            )
        raise AssertionError("unreachable: the last retry returns or raises")

    def release(self) -> None:
        """Give the passes' workspace back (the end of a call)."""
        self.scratch.clear()

    @staticmethod
    def _release_cuda_memory() -> None:
        if torch.cuda.is_available():
            gc.collect()  # frames in reference cycles hold tensors too
            torch.cuda.empty_cache()

    def _oom_message(self, retries: int, exc: BaseException) -> str:
        tried = f"after {retries} retries with smaller tiles" if retries else "with the smallest tiles"
        return (
            f"CUDA out of memory {tried} (last: {self.tile}-row tiles, memory_budget={self.memory_budget} "
            f"bytes): the tiles are not what fills the device; free GPU memory, pass a smaller "
            f"memory_budget or use device='cpu' ({exc})"
        )

    def _square_tile(self) -> int:
        return budget_tile(self.memory_budget, self.dim)

    def tile_for(self, n: int) -> int:
        """Rows per block for ``n`` rows: the budget's tile, balanced so blocks are equal."""
        return balanced_block(n, self.tile)

    def rect_blocks(self, rows: int, cols: int) -> tuple[int, int]:
        """Row and column block sizes of a rectangular pass (``rows`` against ``cols``, e.g. a few thousand
        sampled queries or true-radius owners against a whole set): every row in one block, with the columns
        the budget leaves (:func:`tile_workspace`), when that keeps at least ``_MIN_RECT_COLS`` of them, so that
        the set is read once instead of once per row block (issue 31: at 1.5M × 4096 every extra read of a
        float16 memmap is 12 GB); square tiles otherwise, and whenever ranks share the pass (they share it
        by row blocks)."""
        tr, tc = self.tile_for(rows), self.tile_for(cols)
        if rows <= tr or self.world:
            return tr, tc
        e, f = BYTES_PER_ELEMENT, BYTES_PER_BLOCK_ELEMENT // 2 * self.dim
        wide = (self.memory_budget - f * rows) // (e * rows + f)
        if wide < _MIN_RECT_COLS:
            return tr, tc
        return rows, balanced_block(cols, min(int(wide), _MAX_TILE * _MAX_TILE // rows))

    def self_tile(self, n: int) -> int:
        """Block size of a symmetric pass (:func:`self_block`)."""
        return self_block(n, self.tile)
