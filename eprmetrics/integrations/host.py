"""What a host framework's habits need from a feature network: autocast off, dtypes pinned, images checked.

Lightning and torchmetrics wrap calls in autocast (``bf16-mixed``), cast every sub-module (``64-true``,
``set_dtype``) and pass float images; none of these may change the features a metric keeps.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Callable

import torch
from torch import nn

from ..engine.device import autocast_off
from ..features.base import Extractor
from ..validation import fail

__all__ = [
    "FrozenExtractor",
    "device_only",
    "tensor_dtypes",
    "restore_dtypes",
    "run_custom",
    "check_images",
]


class FrozenExtractor(nn.Module):
    """A registry extractor as a sub-module: moved by ``.to()``, always in eval mode, never trained, float32."""

    def __init__(self, extractor: Extractor) -> None:
        super().__init__()
        # float32 even when built under torch.set_default_dtype(torch.float64): the features' reference precision
        self.net = extractor.module.float().requires_grad_(False)
        self.extractor = extractor

    def train(self, mode: bool = True) -> "FrozenExtractor":
        return super().train(False)  # a Lightning ``model.train()`` must not switch dropout on

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        param = next(self.net.parameters(), None)
        return self.extractor(imgs, imgs.device if param is None else param.device).clone()


def tensor_dtypes(module: nn.Module) -> dict[str, torch.dtype]:
    return {name: t.dtype for name, t in itertools.chain(module.named_parameters(), module.named_buffers())}


def device_only(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` (what ``Module._apply`` maps over tensors) reduced to its device move: a tensor it would cast to
    another dtype is moved, uncast, to the device ``fn`` chose. A network cast to bfloat16 and back would keep
    float32 weights rounded to bfloat16, silently other features."""

    def moved(t: torch.Tensor) -> torch.Tensor:
        out = fn(t)
        return out if out.dtype == t.dtype else t.to(device=out.device)

    return moved


def restore_dtypes(module: nn.Module, dtypes: Mapping[str, torch.dtype]) -> None:
    """Put every parameter and buffer of ``module`` back in the dtype it had when the metric was built."""
    for name, param in module.named_parameters():
        if name in dtypes and param.dtype != dtypes[name]:
            param.data = param.data.to(dtypes[name])
    for name, buf in list(module.named_buffers()):
        if name in dtypes and buf.dtype != dtypes[name]:
            owner, _, attr = name.rpartition(".")
            setattr(module.get_submodule(owner), attr, buf.to(dtypes[name]))


def run_custom(net: nn.Module, imgs: Any) -> Any:
    """A user network on ``imgs`` in its own dtype: autocast off, a floating input cast to its parameters'."""
    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), None)
    with autocast_off():
        if dtype is not None and isinstance(imgs, torch.Tensor) and imgs.is_floating_point():
            imgs = imgs.to(dtype)
        return net(imgs)


def described(imgs: Any) -> str:
    return (
        f"{imgs.dtype} tensor of shape {tuple(imgs.shape)}" if isinstance(imgs, torch.Tensor) else type(imgs).__name__
    )


def check_images(imgs: Any, normalize: bool) -> torch.Tensor:
    """uint8 N×3×H×W for a registry network (N×1×H×W repeated); with ``normalize``, floats in [0, 1]
    scaled the way torchmetrics' FID/KID do (``imgs * 255`` truncated to uint8)."""
    shape_ok = isinstance(imgs, torch.Tensor) and imgs.ndim == 4 and imgs.shape[1] in (1, 3)
    if normalize:
        if not shape_ok or not imgs.is_floating_point():
            raise fail("imgs", "float images N×3×H×W with values in [0, 1] (normalize=True)", described(imgs),
                       "pass floats in [0, 1], or uint8 images with normalize=False", show=False)  # fmt: skip
        low, high = (float(v) for v in torch.aminmax(imgs.detach().float()))
        if not (0.0 <= low and high <= 1.0):  # also false for NaN
            raise ValueError(
                f"imgs: expected float images with values in [0, 1] (normalize=True), got values in "
                f"[{low:g}, {high:g}]; rescale them to [0, 1] (e.g. (imgs + 1) / 2 for images in [-1, 1])"
            )
        # float32 for the half types (bf16 has 8 bits of mantissa); float32/float64 as torchmetrics computes them
        wide = imgs if imgs.dtype in (torch.float32, torch.float64) else imgs.float()
        imgs = (wide * 255).to(torch.uint8)
    elif not shape_ok or imgs.dtype != torch.uint8:
        raise fail("imgs", "uint8 images N×3×H×W with values 0–255", described(imgs),
                   "build the metric with normalize=True for floats in [0, 1], or convert them with "
                   "(imgs * 255).round().to(torch.uint8), or pass feature=nn.Module", show=False)  # fmt: skip
    return imgs.expand(-1, 3, -1, -1) if imgs.shape[1] == 1 else imgs
