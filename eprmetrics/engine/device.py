"""Device policy: which device a run uses, how much memory its tiles may take, GEMM precision mode.

Every decision that differs between CPU and CUDA lives here, so it can be tested
on a CPU by simulating the CUDA calls it makes.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Union

import psutil
import torch

from ..defaults import CUDA_BUDGET_FRACTION, HOST_BUDGET_CAP, HOST_BUDGET_FRACTION

__all__ = ["resolve_device", "default_memory_budget", "matmul_precision"]


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """The one place ``device="auto"`` is resolved: CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}; pass one of these"
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device: {device!r} requested but CUDA is not available on this machine; use device='cpu' or 'auto'"
        )
    return resolved


def default_memory_budget(device: torch.device) -> int:
    """Workspace bytes for tiles: half of free CUDA memory, or 1/8 of free RAM capped at 1 GiB."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_BUDGET_FRACTION)
    return int(min(psutil.virtual_memory().available * HOST_BUDGET_FRACTION, HOST_BUDGET_CAP))


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """fp32 GEMMs for the duration; TF32 only when ``precision == "tf32"`` (the rounding bound covers it)."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)
