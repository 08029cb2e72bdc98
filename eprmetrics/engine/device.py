"""Device policy: which device a run uses, how much memory its tiles may take, GEMM precision mode.

Every decision that differs between CPU and CUDA lives here, so it can be tested
on a CPU by simulating the CUDA calls it makes.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional, Union

import psutil
import torch

from ..defaults import CUDA_BUDGET_FRACTION, HOST_BUDGET_CAP, HOST_BUDGET_FRACTION

__all__ = ["resolve_device", "default_memory_budget", "matmul_precision", "autocast_off", "float32_default"]

_EXPECTED_DEVICE = "device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"


@contextlib.contextmanager
def autocast_off() -> Iterator[None]:
    """Autocast switched off on the CPU and CUDA inside (a host's region, e.g. Lightning's ``bf16-mixed`` around
    validation, would run the engine's GEMMs in bfloat16: other distances, graphs and decisions, or a dtype
    clash). Every entry point computes inside it; its own precision is ``precision=`` / ``gemm_precision``."""
    with contextlib.ExitStack() as stack:
        for kind in ("cpu", "cuda"):
            if torch.amp.is_autocast_available(kind):
                stack.enter_context(torch.autocast(kind, enabled=False))
        yield


@contextlib.contextmanager
def float32_default() -> Iterator[None]:
    """``torch.get_default_dtype()`` float32 inside. A host's ``torch.set_default_dtype(torch.float64)`` (e.g.
    Lightning's ``64-true``) would otherwise make the tensors created without a dtype float64: seeded draws
    (other samples, another estimate for one seed), ANN centroids that meet float32 rows (a dtype clash), a
    registry network built in float64. Touches nothing when the default is float32 already."""
    previous = torch.get_default_dtype()
    if previous == torch.float32:
        yield
        return
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """The one place a device is resolved: ``"auto"`` is CUDA when available, else CPU; a CUDA
    device without an index is ``cuda:{torch.cuda.current_device()}`` (the GPU torchrun's
    ``set_device`` chose, so that torch and faiss use the same one). Other device types are refused."""
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:  # ValueError: an index too large for torch
        raise ValueError(f"{_EXPECTED_DEVICE}, got {device!r}; pass one of these") from exc
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"{_EXPECTED_DEVICE}, got {device!r}; eprmetrics runs on CPUs and CUDA GPUs")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device: {device!r} requested but CUDA is not available on this machine; use device='cpu' or 'auto'"
            )
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def default_memory_budget(device: torch.device) -> int:
    """Workspace bytes for tiles: half of free CUDA memory, or 1/8 of free RAM capped at 1 GiB."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_BUDGET_FRACTION)
    return int(min(psutil.virtual_memory().available * HOST_BUDGET_FRACTION, HOST_BUDGET_CAP))


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """The GEMM modes the rounding bound assumes, for the duration; every flag is restored on exit.

    * fp32 GEMMs are full fp32 (IEEE), on CUDA and on the CPU (oneDNN), except with
      ``precision == "tf32"``, which lets cuBLAS use TF32 (the bound covers it);
    * bf16 GEMMs reduce in fp32: cuBLAS's ``allow_bf16_reduced_precision_reduction``
      (on by default, not covered by the bound) is turned off.
    """
    with _fp32_gemms(tf32=precision == "tf32"), _fp32_bf16_reductions():
        yield


def _fp32_precision_flags() -> Optional[tuple[Any, Any]]:
    """The per-backend fp32 GEMM modes of torch 2.9+, ``(cuBLAS, oneDNN)``, or None on an older torch.

    Once they are set, the legacy ``torch.get_float32_matmul_precision()`` raises (PyTorch
    refuses to mix the two APIs), so where they exist they are the ones saved and set.
    """
    cuda = torch.backends.cuda.matmul
    cpu = getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)
    if hasattr(cuda, "fp32_precision") and hasattr(cpu, "fp32_precision"):
        return cuda, cpu
    return None


@contextlib.contextmanager
def _fp32_gemms(tf32: bool) -> Iterator[None]:
    flags = _fp32_precision_flags()
    if flags is None:
        old = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(old)
        return
    cuda, cpu = flags
    saved = (cuda.fp32_precision, cpu.fp32_precision)
    try:
        legacy: Optional[str] = torch.get_float32_matmul_precision()
    except RuntimeError:  # set through the new API: the legacy value is unreadable (and not what GEMMs follow)
        legacy = None
    if legacy is not None:  # keep torch's own legacy readers (``allow_tf32``) consistent inside
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
    cuda.fp32_precision = "tf32" if tf32 else "ieee"
    cpu.fp32_precision = "ieee"  # TF32 is an NVIDIA mode: the engine never asks for it on a CPU
    try:
        yield
    finally:
        if legacy is not None:
            torch.set_float32_matmul_precision(legacy)
        cuda.fp32_precision, cpu.fp32_precision = saved


@contextlib.contextmanager
def _fp32_bf16_reductions() -> Iterator[None]:
    flags = torch.backends.cuda.matmul
    try:
        saved: Any = flags.allow_bf16_reduced_precision_reduction
    except AttributeError:  # a torch without the flag reduces bf16 GEMMs in fp32
        yield
        return
    if hasattr(flags, "allow_bf16_reduced_precision_reduction_split_k"):  # newer torch: (reduced, split-k)
        saved = (saved, flags.allow_bf16_reduced_precision_reduction_split_k)
    flags.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        flags.allow_bf16_reduced_precision_reduction = saved
